package event

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reader reads the streams a Publisher writes.
type Reader struct {
	rc   redis.UniversalClient
	opts Options
}

// NewReader returns a Reader of the streams named by opts.
func NewReader(rc redis.UniversalClient, opts Options) (*Reader, error) {
	if rc == nil {
		return nil, errors.New("event: nil redis client")
	}
	return &Reader{rc: rc, opts: opts.withDefaults()}, nil
}

// Zero is the position before every event.
const Zero = "0-0"

// Last returns the id of the newest event of the shared stream (taskID "")
// or of a task's own stream; Zero when it holds none.
func (r *Reader) Last(ctx context.Context, taskID string) (string, error) {
	key := r.opts.AllKey()
	if taskID != "" {
		key = r.opts.TaskKey(taskID)
	}
	msgs, err := r.rc.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil {
		return "", err
	}
	if len(msgs) == 0 {
		return Zero, nil
	}
	return msgs[0].ID, nil
}

// Read waits up to block for events of the shared stream after id and
// returns up to count of them (none when block passed).
func (r *Reader) Read(ctx context.Context, after string, count int64, block time.Duration) ([]Entry, error) {
	res, err := r.rc.XRead(ctx, &redis.XReadArgs{Streams: []string{r.opts.AllKey(), after}, Count: count, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, s := range res {
		out = appendEntries(out, s.Messages)
	}
	return out, nil
}

// ErrGone says the events after a position are no longer all held: the
// history was trimmed past it, expired, or holds more than the caller's limit.
var ErrGone = errors.New("event: history no longer holds the position")

// Since returns the events after position after, in order: of a task's own
// stream, or of the shared stream when taskID is "". It returns ErrGone unless
// every event after it is still held, and when there are more than limit. A
// task's history that expired (no event for Options.HistoryTTL) and started
// again is taken as whole.
func (r *Reader) Since(ctx context.Context, taskID, after string, limit int64) ([]Entry, error) {
	pos, ok := ParseID(after)
	if !ok {
		return nil, ErrGone
	}
	key := r.opts.AllKey()
	if taskID != "" {
		key = r.opts.TaskKey(taskID)
	}
	info, err := r.rc.XInfoStream(ctx, key).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return nil, ErrGone
		}
		return nil, err
	}
	// Trimming removes the oldest entries: the history is whole after a
	// position at or past its first entry, or when nothing was ever removed.
	if first, ok := ParseID(info.FirstEntry.ID); ok && pos.Compare(first) < 0 && info.EntriesAdded > info.Length {
		return nil, ErrGone
	}
	msgs, err := r.rc.XRangeN(ctx, key, "("+pos.String(), "+", limit+1).Result()
	if err != nil {
		return nil, err
	}
	if int64(len(msgs)) > limit {
		return nil, ErrGone
	}
	return appendEntries(nil, msgs), nil
}

// appendEntries decodes msgs; entries that do not decode are skipped.
func appendEntries(out []Entry, msgs []redis.XMessage) []Entry {
	for _, m := range msgs {
		if e, err := decode(m.ID, m.Values); err == nil {
			out = append(out, e)
		}
	}
	return out
}

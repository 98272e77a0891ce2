package event_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestPublishAndRead: events published in one call come back from the shared
// stream in order, with the same ids in the task's own stream, and the
// counters count them.
func TestPublishAndRead(t *testing.T) {
	t.Parallel()
	rd := testenv.NewRedis(t)
	reg := prometheus.NewRegistry()
	opts := event.Options{Prefix: "test:events"}
	pub, err := event.NewPublisher(rd.Client, zaptest.NewLogger(t), reg, opts)
	require.NoError(t, err)
	rdr, err := event.NewReader(rd.Client, opts)
	require.NoError(t, err)
	ctx := context.Background()

	start, err := rdr.Last(ctx, "")
	require.NoError(t, err)
	require.Equal(t, event.Zero, start)

	line := &event.Log{TS: time.Now().UTC().Truncate(time.Microsecond), Level: "info", Message: "hello", Attempt: 1,
		Fields: json.RawMessage(`{"n":1}`)}
	pub.Publish(event.Task("task_a", 2, "running"), event.Event{Kind: event.KindLog, TaskID: "task_a", Log: line},
		event.Task("task_b", 1, "pending"), event.Task("task_a", 3, "completed"))
	var got []event.Entry
	require.Eventually(t, func() bool {
		es, err := rdr.Read(ctx, start, 100, 10*time.Millisecond)
		require.NoError(t, err)
		got = append(got, es...)
		if len(es) > 0 {
			start = es[len(es)-1].ID
		}
		return len(got) >= 4
	}, 5*time.Second, 10*time.Millisecond)
	require.Len(t, got, 4)
	require.Equal(t, event.KindTask, got[0].Kind)
	require.Equal(t, int64(2), got[0].Version)
	require.Equal(t, "running", got[0].Status)
	require.Equal(t, event.KindLog, got[1].Kind)
	require.Equal(t, "hello", got[1].Log.Message)
	require.JSONEq(t, `{"n":1}`, string(got[1].Log.Fields))
	require.True(t, got[1].Log.TS.Equal(line.TS))
	require.Equal(t, "task_b", got[2].TaskID)
	require.Equal(t, "completed", got[3].Status)
	require.False(t, got[0].Published.IsZero())
	for i := 1; i < len(got); i++ {
		require.True(t, event.After(got[i].ID, got[i-1].ID))
	}

	// The task's own history: its three events, same ids.
	hist, err := rdr.Since(ctx, "task_a", event.Zero, 10)
	require.NoError(t, err)
	require.Len(t, hist, 3)
	require.Equal(t, []string{got[0].ID, got[1].ID, got[3].ID}, []string{hist[0].ID, hist[1].ID, hist[2].ID})
	// From the middle: what follows.
	hist, err = rdr.Since(ctx, "task_a", got[1].ID, 10)
	require.NoError(t, err)
	require.Len(t, hist, 1)
	require.Equal(t, got[3].ID, hist[0].ID)
	// More than the limit, an unknown task and a bad id are gone.
	_, err = rdr.Since(ctx, "task_a", event.Zero, 2)
	require.ErrorIs(t, err, event.ErrGone)
	_, err = rdr.Since(ctx, "task_nobody", event.Zero, 10)
	require.ErrorIs(t, err, event.ErrGone)
	_, err = rdr.Since(ctx, "task_a", "not-an-id", 10)
	require.ErrorIs(t, err, event.ErrGone)
	last, err := rdr.Last(ctx, "task_a")
	require.NoError(t, err)
	require.Equal(t, got[3].ID, last)

	require.Equal(t, 3.0, testutil.ToFloat64(mustCounter(t, reg, "taskforge_events_published_total", "task")))
	ttl, err := rd.Client.PTTL(ctx, opts.TaskKey("task_a")).Result()
	require.NoError(t, err)
	require.Greater(t, ttl, time.Duration(0), "a task's history expires")
	pub.Close(ctx)
}

// TestPublishManyInFewCalls: hundreds of events queued at once reach Redis in
// a few script calls of many events each, in order, every one in the shared
// stream and under the same id in its task's history, also after Redis forgot
// the script.
func TestPublishManyInFewCalls(t *testing.T) {
	t.Parallel()
	rd := testenv.NewRedis(t)
	ctx := context.Background()
	require.NoError(t, rd.Client.ScriptFlush(ctx).Err())
	rc := redis.NewClient(&redis.Options{Addr: rd.Addr, DB: rd.DB})
	t.Cleanup(func() { _ = rc.Close() })
	calls := &scriptCalls{}
	rc.AddHook(calls)
	reg := prometheus.NewRegistry()
	opts := event.Options{Prefix: "test:many"}
	pub, err := event.NewPublisher(rc, zaptest.NewLogger(t), reg, opts)
	require.NoError(t, err)
	rdr, err := event.NewReader(rc, opts)
	require.NoError(t, err)

	const n = 250
	tasks := []string{"task_x", "task_y", "task_z"}
	var evs []event.Event
	for i := range n {
		evs = append(evs, event.Task(tasks[i%len(tasks)], int64(i+1), "running"))
	}
	pub.Publish(evs...)
	pub.Close(ctx)

	got, err := rdr.Read(ctx, event.Zero, 1000, 10*time.Millisecond)
	require.NoError(t, err)
	require.Len(t, got, n)
	byTask := map[string][]string{}
	for i, e := range got {
		require.Equal(t, int64(i+1), e.Version, "in the order published")
		require.Equal(t, tasks[i%len(tasks)], e.TaskID)
		byTask[e.TaskID] = append(byTask[e.TaskID], e.ID)
	}
	for _, id := range tasks {
		hist, err := rdr.Since(ctx, id, event.Zero, 1000)
		require.NoError(t, err)
		var ids []string
		for _, e := range hist {
			ids = append(ids, e.ID)
		}
		require.Equal(t, byTask[id], ids, "the history of %s", id)
		ttl, err := rc.PTTL(ctx, opts.TaskKey(id)).Result()
		require.NoError(t, err)
		require.Greater(t, ttl, time.Duration(0), "the history of %s expires", id)
	}
	require.Equal(t, float64(n), testutil.ToFloat64(mustCounter(t, reg, "taskforge_events_published_total", "task")))
	// 250 events: three calls of at most 100 (one pipeline), sent again once
	// after the script was loaded.
	require.LessOrEqual(t, calls.evalsha.Load(), int64(6), "script calls for %d events", n)
}

// scriptCalls counts the EVALSHA commands a client sends.
type scriptCalls struct{ evalsha atomic.Int64 }

func (c *scriptCalls) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *scriptCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(cmd)
		return next(ctx, cmd)
	}
}

func (c *scriptCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return next(ctx, cmds)
	}
}

func (c *scriptCalls) count(cmd redis.Cmder) {
	if cmd.Name() == "evalsha" {
		c.evalsha.Add(1)
	}
}

// TestSinceAfterTrim: a position the trimmed history no longer reaches is
// gone; a later one is still whole.
func TestSinceAfterTrim(t *testing.T) {
	t.Parallel()
	rd := testenv.NewRedis(t)
	ctx := context.Background()
	opts := event.Options{Prefix: "test:trim", History: 5}
	rdr, err := event.NewReader(rd.Client, opts)
	require.NoError(t, err)
	// Exact trimming, to hold the test to a known cut.
	var ids []string
	for i := range 20 {
		id, err := rd.Client.XAdd(ctx, &redis.XAddArgs{Stream: opts.TaskKey("task_t"),
			Values: []any{"k", "task", "t", "task_t", "v", fmt.Sprint(i + 1), "s", "running", "p", "0"}}).Result()
		require.NoError(t, err)
		ids = append(ids, id)
	}
	require.NoError(t, rd.Client.XTrimMaxLen(ctx, opts.TaskKey("task_t"), 5).Err())
	_, err = rdr.Since(ctx, "task_t", ids[2], 100)
	require.ErrorIs(t, err, event.ErrGone)
	got, err := rdr.Since(ctx, "task_t", ids[15], 100)
	require.NoError(t, err)
	require.Len(t, got, 4)
	require.Equal(t, ids[16], got[0].ID)
}

func TestIDOrder(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a, b  string
		after bool
	}{
		{"2-0", "1-5", true}, {"1-5", "1-4", true}, {"1-4", "1-4", false}, {"1-4", "2-0", false},
		{"10-0", "9-9", true}, {"x", "0-0", false}, {"1", "0-9", true},
	} {
		require.Equal(t, c.after, event.After(c.a, c.b), fmt.Sprintf("%s after %s", c.a, c.b))
	}
}

func mustCounter(t *testing.T, reg *prometheus.Registry, name, label string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					c := prometheus.NewCounter(prometheus.CounterOpts{Name: "copy"})
					c.Add(m.GetCounter().GetValue())
					return c
				}
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return nil
}

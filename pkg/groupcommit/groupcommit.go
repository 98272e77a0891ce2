// Package groupcommit batches concurrent writes into shared round trips: each
// caller hands over one item and waits for its own result, while a few
// goroutines each take one waiting item, drain whatever else waits (up to a
// maximum) and commit them together with one call. Under load, batches form
// by themselves; an item handed to an idle committer is written alone, with
// no added latency.
//
// The task service's row inserter and the audit writer use it. The worker's
// state writer does not: one of its flushes mixes six kinds of statements
// (checks, starts, progress, log lines, outcomes, and starts folded into
// their outcomes) in one round trip and one transaction, ordered per task,
// retried as a whole while PostgreSQL is away, and flushed on a timer for
// progress; a committer of one kind of item would cost a round trip per kind.
package groupcommit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// ErrClosed is the error of an item handed over after Close.
var ErrClosed = errors.New("groupcommit: closed")

// Defaults of Options.
const (
	DefaultWorkers = 2
	DefaultMax     = 256
	DefaultTimeout = 10 * time.Second
)

// Options size a Committer.
type Options struct {
	// Workers is the number of goroutines committing at once. If zero, 2.
	Workers int
	// Max caps the items of one commit. If zero, 256.
	Max int
	// Linger is how long a goroutine that found items already waiting (or
	// another goroutine committing) waits for more before it commits: fewer,
	// larger commits cost the database less per item. Zero never waits.
	Linger time.Duration
	// Timeout bounds a commit none of whose items has a deadline (and any
	// commit). If zero, 10 seconds.
	Timeout time.Duration
}

// Commit writes items with one call and returns one result per item, in
// order, or an error that is every item's.
type Commit[T, R any] func(ctx context.Context, items []T) ([]R, error)

// Committer hands items to its goroutines and their results back.
type Committer[T, R any] struct {
	opts   Options
	commit Commit[T, R]
	in     chan *request[T, R]
	busy   atomic.Int32

	mu      sync.RWMutex
	closed  bool
	workers sync.WaitGroup
}

type request[T, R any] struct {
	ctx  context.Context
	item T
	done chan result[R]
}

type result[R any] struct {
	r   R
	err error
}

// New starts a Committer that writes with commit. Close stops it.
func New[T, R any](opts Options, commit Commit[T, R]) *Committer[T, R] {
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.Max <= 0 {
		opts.Max = DefaultMax
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	c := &Committer[T, R]{opts: opts, commit: commit, in: make(chan *request[T, R], opts.Max*opts.Workers)}
	c.workers.Add(opts.Workers)
	for range opts.Workers {
		go c.run()
	}
	return c
}

// Do hands item over and waits for its result until ctx ends. An item whose
// caller stopped waiting may still be committed.
func (c *Committer[T, R]) Do(ctx context.Context, item T) (R, error) {
	var zero R
	req := &request[T, R]{ctx: ctx, item: item, done: make(chan result[R], 1)}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return zero, ErrClosed
	}
	select {
	case c.in <- req:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.mu.RUnlock()
		return zero, ctx.Err()
	}
	select {
	case res := <-req.done:
		return res.r, res.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// Waiting is the number of items handed over and not yet taken by a commit.
func (c *Committer[T, R]) Waiting() int { return len(c.in) }

// Close refuses new items, commits those already handed over, and returns
// when its goroutines have stopped. It may be called more than once.
func (c *Committer[T, R]) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.in)
	}
	c.mu.Unlock()
	c.workers.Wait()
}

func (c *Committer[T, R]) run() {
	defer c.workers.Done()
	batch := make([]*request[T, R], 0, c.opts.Max)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for first := range c.in {
		batch = append(batch[:0], first)
		open := c.drain(&batch)
		if open && c.opts.Linger > 0 && (len(batch) > 1 || c.busy.Load() > 0) {
			linger.Reset(c.opts.Linger)
		gather:
			for len(batch) < c.opts.Max {
				select {
				case r, ok := <-c.in:
					if !ok {
						break gather
					}
					batch = append(batch, r)
				case <-linger.C:
					break gather
				}
			}
			linger.Stop()
		}
		c.busy.Add(1)
		c.write(batch)
		c.busy.Add(-1)
	}
}

// drain adds the items already waiting to batch; it reports false when the
// input is closed.
func (c *Committer[T, R]) drain(batch *[]*request[T, R]) bool {
	for len(*batch) < c.opts.Max {
		select {
		case r, ok := <-c.in:
			if !ok {
				return false
			}
			*batch = append(*batch, r)
		default:
			return true
		}
	}
	return true
}

// write commits the items of batch whose callers still wait, under the latest
// of their deadlines (within Timeout), and answers each.
func (c *Committer[T, R]) write(batch []*request[T, R]) {
	live := make([]*request[T, R], 0, len(batch))
	deadline := time.Time{}
	limit := time.Now().Add(c.opts.Timeout)
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- result[R]{err: err}
			continue
		}
		live = append(live, r)
		d, ok := r.ctx.Deadline()
		if !ok || d.After(limit) {
			d = limit
		}
		if d.After(deadline) {
			deadline = d
		}
	}
	if len(live) == 0 {
		return
	}
	items := make([]T, len(live))
	for i, r := range live {
		items[i] = r.item
	}
	// The batch's work is traced (when the first waiting caller's context
	// holds a span) under that caller's span; the others' spans have none of
	// it. No other value of a caller's context reaches the commit.
	base := context.Background()
	if sc := trace.SpanContextFromContext(live[0].ctx); sc.IsValid() {
		base = trace.ContextWithSpanContext(base, sc)
	}
	ctx, cancel := context.WithDeadline(base, deadline)
	defer cancel()
	results, err := c.commit(ctx, items)
	if err == nil && len(results) != len(items) {
		err = errors.New("groupcommit: commit returned a result count unlike its item count")
	}
	for i, r := range live {
		if err != nil {
			r.done <- result[R]{err: err}
			continue
		}
		r.done <- result[R]{r: results[i]}
	}
}

package workflow

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/store"
)

// DefaultSweep is how often Run looks for workflows left due (a crash
// between a step's end and its workflow's advance, or an advance that
// failed) unless told otherwise.
const DefaultSweep = 5 * time.Second

// sweepAge is how old a wakeup must be before a sweep serves it: younger ones
// are being served by the notification they sent.
const sweepAge = time.Second

// Run advances workflows until ctx ends: each workflow a notification on
// Channel names, at once, and every sweep interval those whose wakeups are
// older than a second. Running it in several processes is safe: an advance
// locks its workflow, and the second finds nothing to do. PostgreSQL being
// down is logged and retried, never returned.
func (s *Service) Run(ctx context.Context, sweep time.Duration) error {
	if sweep <= 0 {
		sweep = DefaultSweep
	}
	var last time.Time
	pass := func(ctx context.Context, ids []string) time.Duration {
		slices.Sort(ids)
		s.advanceAll(ctx, slices.Compact(ids), "workflow advance failed; the sweep retries it")
		if time.Since(last) >= sweep {
			s.Sweep(ctx)
			last = time.Now()
		}
		return max(time.Until(last.Add(sweep)), 10*time.Millisecond)
	}
	for ctx.Err() == nil {
		err := store.Listen(ctx, s.db, Channel, pass)
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("workflow listener stopped; sweeping until it is back", zap.Error(err))
		pass(ctx, nil)
		select {
		case <-ctx.Done():
		case <-time.After(sweep):
		}
	}
	return nil
}

// Sweep advances every workflow with a wakeup older than a second and
// returns how many it advanced.
func (s *Service) Sweep(ctx context.Context) int {
	var ids []string
	err := s.db.WithContext(ctx).Raw(`SELECT DISTINCT workflow_id FROM workflow_wakeups WHERE queued_at < ? LIMIT 500`,
		time.Now().Add(-sweepAge)).Scan(&ids).Error
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("workflow sweep failed", zap.Error(err))
		}
		return 0
	}
	n := s.advanceAll(ctx, ids, "workflow advance failed; the next sweep retries it")
	if n > 0 {
		s.log.Info("workflows advanced by the sweep", zap.Int("count", n))
	}
	return n
}

// advancers bounds the advances that run at once: each waits mostly on
// round trips (and its step creations join the task service's batches), so
// a burst of ended steps is served in parallel rather than one by one.
const advancers = 16

// advanceAll advances the workflows ids, advancers at a time, logging each
// failure with msg, and returns how many it advanced.
func (s *Service) advanceAll(ctx context.Context, ids []string, msg string) int {
	var wg sync.WaitGroup
	var ok atomic.Int64
	sem := make(chan struct{}, advancers)
	for _, id := range ids {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.Advance(ctx, id, ""); err != nil {
				if ctx.Err() == nil {
					s.log.Warn(msg, zap.String("workflow_id", id), zap.Error(err))
				}
				return
			}
			ok.Add(1)
		}()
	}
	wg.Wait()
	return int(ok.Load())
}

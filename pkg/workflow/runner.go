package workflow

import (
	"context"
	"slices"
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
		for _, id := range slices.Compact(ids) {
			if err := s.Advance(ctx, id, ""); err != nil && ctx.Err() == nil {
				s.log.Warn("workflow advance failed; the sweep retries it", zap.String("workflow_id", id), zap.Error(err))
			}
		}
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
	n := 0
	for _, id := range ids {
		if err := s.Advance(ctx, id, ""); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("workflow advance failed; the next sweep retries it", zap.String("workflow_id", id), zap.Error(err))
			}
			continue
		}
		n++
	}
	if n > 0 {
		s.log.Info("workflows advanced by the sweep", zap.Int("count", n))
	}
	return n
}

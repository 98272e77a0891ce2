package workflow

import (
	"context"
	"sync"
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
	adv := &advancer{s: s, sem: make(chan struct{}, advancers), running: map[string]bool{}}
	defer adv.wg.Wait()
	pass := func(ctx context.Context, ids []string) time.Duration {
		// The listener goes back to listening at once: the advances run
		// beside it.
		for _, id := range ids {
			adv.due(ctx, id)
		}
		if time.Since(last) >= sweep {
			for _, id := range s.leftDue(ctx) {
				adv.due(ctx, id)
			}
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

// leftDue returns the workflows (500 at most) with a wakeup older than a
// second: left by a crash or an advance that failed.
func (s *Service) leftDue(ctx context.Context) []string {
	var ids []string
	err := s.db.WithContext(ctx).Raw(`SELECT DISTINCT workflow_id FROM workflow_wakeups WHERE queued_at < ? LIMIT 500`,
		time.Now().Add(-sweepAge)).Scan(&ids).Error
	if err != nil && ctx.Err() == nil {
		s.log.Warn("workflow sweep failed", zap.Error(err))
	}
	return ids
}

// advancers bounds the advances that run at once: each waits mostly on
// round trips (and its step creations join the task service's batches), so
// a burst of ended steps is served in parallel rather than one by one.
const advancers = 16

// advancer runs the advances notifications ask for in the background,
// advancers at a time and one at a time per workflow: a workflow named again
// while its advance runs is advanced once more after it (the change may have
// committed after that advance read the rows).
type advancer struct {
	s       *Service
	sem     chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	running map[string]bool // workflow id → named again meanwhile
}

func (a *advancer) due(ctx context.Context, id string) {
	a.mu.Lock()
	if _, busy := a.running[id]; busy {
		a.running[id] = true
		a.mu.Unlock()
		return
	}
	a.running[id] = false
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			select {
			case a.sem <- struct{}{}:
			case <-ctx.Done():
				a.mu.Lock()
				delete(a.running, id)
				a.mu.Unlock()
				return
			}
			if err := a.s.Advance(ctx, id, ""); err != nil && ctx.Err() == nil {
				a.s.log.Warn("workflow advance failed; the sweep retries it", zap.String("workflow_id", id), zap.Error(err))
			}
			<-a.sem
			a.mu.Lock()
			if a.running[id] {
				a.running[id] = false
				a.mu.Unlock()
				continue
			}
			delete(a.running, id)
			a.mu.Unlock()
			return
		}
	}()
}

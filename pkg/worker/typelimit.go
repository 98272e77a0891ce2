package worker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"
)

// acquireSlot takes a slot of the type's cluster-wide limit and keeps its
// lease renewed until release. Without a free slot the delivery goes back to
// the queue (ErrNoSlot) — except on its last allowed delivery, which Asynq
// would archive for any error: that one waits here for a slot.
func (r *Runtime) acquireSlot(ctx context.Context, a attempt, limit int) (func(), error) {
	for {
		ok, err := r.sem.Acquire(ctx, a.typ, a.id, limit)
		if err != nil {
			r.log.Warn("type slot not acquired", a.fields(zap.Error(err))...)
			if !a.final {
				return nil, fmt.Errorf("%w: %w", ErrNoSlot, err)
			}
		}
		if ok {
			r.metrics.typeSlots.WithLabelValues(a.typ).Inc()
			break
		}
		if !a.final {
			r.metrics.deferred.WithLabelValues(a.typ).Inc()
			return nil, ErrNoSlot
		}
		select {
		case <-ctx.Done():
			r.failUnstarted(a, KindTimeout, fmt.Sprintf("no free %s slot (limit %d) before the task's timeout", a.typ, limit))
			return nil, ctx.Err()
		case <-time.After(500*time.Millisecond + rand.N(500*time.Millisecond)):
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(r.opts.SlotTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				held, err := r.sem.Renew(rctx, a.typ, a.id)
				cancel()
				if err != nil || !held {
					r.log.Warn("type slot lease not renewed", a.fields(zap.Bool("held", held), zap.Error(err))...)
				}
			}
		}
	}()
	return func() {
		close(stop)
		wg.Wait()
		r.metrics.typeSlots.WithLabelValues(a.typ).Dec()
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.sem.Release(rctx, a.typ, a.id); err != nil {
			r.log.Warn("type slot not released; its lease will end", a.fields(zap.Error(err))...)
		}
	}, nil
}

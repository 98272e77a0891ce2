package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"
)

// BurstOptions configure the burst server (see Runtime.StartBurst).
type BurstOptions struct {
	// Server is the configuration of the worker's servers: the burst server
	// takes its queues, weights and shutdown timeout.
	Server ServerOptions
	// Poll is the burst server's task_check_interval.
	Poll time.Duration
	// Linger is how long the burst server runs after the last workflow step
	// started or ended in this process.
	Linger time.Duration
	// Concurrency is how many tasks the burst server runs at once.
	Concurrency int
}

// Burst runs an extra Asynq server polling every Poll while workflow steps
// run in this process, and for Linger after the last one ended. A workflow's
// next step is created moments after its dependency completes; a worker whose
// queues were empty finds it only when its servers poll again, up to 1.5 ×
// task_check_interval later, and polling that often all the time would cost
// an idle worker a few percent of a core (each poll is one Redis round trip
// per queue). The burst server makes the hand-over from step to step fast
// while workflows run and costs nothing otherwise. It takes any task of the
// worker's queues, like the others.
type Burst struct {
	rt    *Runtime
	redis asynq.RedisConnOpt
	o     BurstOptions

	mu      sync.Mutex
	srv     *asynq.Server
	running *atomic.Int64 // tasks on srv
	last    time.Time
	// starting is true while a server is being started.
	starting bool
	closed   bool
	wg       sync.WaitGroup
	stop     chan struct{}

	starts atomic.Int64
}

// StartBurst makes the runtime start a burst server on redis whenever a
// workflow step starts or ends in it. Close it before Close.
func (r *Runtime) StartBurst(redis asynq.RedisConnOpt, o BurstOptions) *Burst {
	o.Concurrency = max(o.Concurrency, 1)
	b := &Burst{rt: r, redis: redis, o: o, stop: make(chan struct{})}
	r.mu.Lock()
	r.burst = b
	r.mu.Unlock()
	b.wg.Add(1)
	go b.reap()
	return b
}

// kick notes a workflow step's start or end and, if no burst server runs,
// starts one in the background (the step does not wait on Redis for it).
func (b *Burst) kick() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last = time.Now()
	if b.closed || b.srv != nil || b.starting {
		return
	}
	b.starting = true
	b.wg.Add(1)
	go b.start()
}

func (b *Burst) start() {
	defer b.wg.Done()
	o := b.o.Server
	o.Concurrency, o.TaskCheckInterval = b.o.Concurrency, b.o.Poll
	running := &atomic.Int64{}
	srv := asynq.NewServer(b.redis, b.rt.AsynqConfig(o))
	err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		running.Add(1)
		defer running.Add(-1)
		return b.rt.ProcessTask(ctx, t)
	}))
	b.mu.Lock()
	b.starting = false
	closed := b.closed
	if err == nil && !closed {
		b.srv, b.running = srv, running
		b.starts.Add(1)
	}
	b.mu.Unlock()
	switch {
	case err != nil:
		b.rt.metrics.concurrency.Sub(float64(o.Concurrency))
		b.rt.log.Warn("burst server not started", zap.Error(err))
	case closed:
		b.retire(srv, running)
	default:
		b.rt.log.Debug("burst server started", zap.Duration("poll", b.o.Poll))
	}
}

// Starts is how many times a burst server was started.
func (b *Burst) Starts() int64 { return b.starts.Load() }

// Running reports whether a burst server runs.
func (b *Burst) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv != nil
}

// reap stops the burst server Linger after the last step.
func (b *Burst) reap() {
	defer b.wg.Done()
	t := time.NewTicker(max(b.o.Linger/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		b.mu.Lock()
		srv, running := b.srv, b.running
		if srv == nil || time.Since(b.last) < b.o.Linger {
			b.mu.Unlock()
			continue
		}
		b.srv = nil
		b.mu.Unlock()
		b.retire(srv, running)
	}
}

// retire stops srv fetching, waits until nothing runs on it (a long task
// finishes there rather than being handed back at the shutdown timeout) or
// the burst is closed, then shuts it down (running tasks get the shutdown
// timeout). A step meanwhile starts a new burst server.
func (b *Burst) retire(srv *asynq.Server, running *atomic.Int64) {
	srv.Stop()
	for idle := 0; idle < 2; {
		// Twice idle 50 ms apart: a task fetched just before Stop reaches
		// the handler within microseconds.
		if running.Load() == 0 {
			idle++
		} else {
			idle = 0
		}
		select {
		case <-b.stop:
			idle = 2
		case <-time.After(50 * time.Millisecond):
		}
	}
	srv.Shutdown()
	b.rt.metrics.concurrency.Sub(float64(b.o.Concurrency))
	b.rt.log.Debug("burst server stopped")
}

// Close stops the burst server for good: it stops fetching at once, and its
// running tasks get the shutdown timeout as on the other servers.
func (b *Burst) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	close(b.stop)
	if srv != nil {
		srv.Shutdown()
		b.rt.metrics.concurrency.Sub(float64(b.o.Concurrency))
	}
	b.wg.Wait()
}

// stepActivity tells the burst server, if any, that a workflow step started
// or ended.
func (r *Runtime) stepActivity() {
	r.mu.Lock()
	b := r.burst
	r.mu.Unlock()
	if b != nil {
		b.kick()
	}
}

// Package worker is Taskforge's worker runtime around Asynq: the lifecycle
// middleware that mirrors every transition of a task into PostgreSQL with
// conditional updates (the state machine of package tasks), the batched state
// writer behind it, the job.Reporter handlers write progress and logs to,
// retry delays from the task's envelope, cancellation of running tasks, a
// Redis semaphore that caps how many tasks of a type run cluster-wide, and the
// outbox that delivers signed callbacks.
//
// A Runtime is an asynq.Handler. Give its RetryDelay and IsFailure to the
// asynq.Server (Configure does), run as many servers as wanted with it, and
// Close it after the servers have shut down.
package worker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// Errors of the runtime.
var (
	// ErrNoSlot is returned to Asynq when a type's cluster-wide limit is
	// reached: the delivery goes back to the queue after a short delay without
	// spending a retry (IsFailure is false for it).
	ErrNoSlot = errors.New("worker: no free slot for the task type")
	// ErrNoHandler fails a task whose type has no registered handler.
	ErrNoHandler = errors.New("no handler registered for type")
	// errCancelRequested is the cause given to a handler's context when its
	// task's cancel_requested flag is seen.
	errCancelRequested = errors.New("task cancelled")
	// errStartRejected is the cause given to a handler's context when its
	// attempt's start was refused (the row moved since it was read).
	errStartRejected = errors.New("task start refused")
	// errStopTimeout says a handler did not return after its context ended.
	errStopTimeout = errors.New("handler did not stop after its context ended")
)

// Error kinds recorded in tasks.error and task_attempts.error_kind.
const (
	KindError       = "error"
	KindPermanent   = "permanent"
	KindPanic       = "panic"
	KindTimeout     = "timeout"
	KindCancelled   = "cancelled"
	KindNoHandler   = "no_handler"
	KindBadParams   = "bad_params"
	KindInterrupted = "interrupted"
)

// Opener decrypts a params message's secret fields in place; keyID is the key
// the envelope names. The security layer provides it.
type Opener interface {
	Open(keyID string, msg proto.Message) error
}

// Options configure a Runtime. Zero values get the defaults named.
type Options struct {
	// WorkerID names this process in task rows and attempts. Default
	// "<hostname>:<pid>".
	WorkerID string
	// Handlers maps task types to handlers.
	Handlers map[string]job.Handler
	// FlushInterval is how often buffered progress and logs are written.
	// Default 50ms.
	FlushInterval time.Duration
	// FlushGap is the least time between the starts of two flushes of a
	// writer. Under load the transitions that tasks wait for (deliveries'
	// reads, outcomes) then gather for up to a gap and ride the same
	// statements; a writer that has not flushed for a gap flushes at once.
	// Zero: no gap, each wake flushes at once (the worker service's
	// configuration defaults it to 5ms, worker.flush_gap).
	FlushGap time.Duration
	// MaxMessages is how many recent progress messages a task keeps. Default 50.
	MaxMessages int
	// MaxLogLines caps the log lines of one attempt. Default 10000.
	MaxLogLines int
	// MaxResultBytes caps an inline JSON result (kept in the task row).
	// Default 1 MiB.
	MaxResultBytes int
	// Results keeps a JSON result above MaxResultBytes in result storage; the
	// task's result_url then points at it. If nil, such a result fails the
	// attempt (ErrResultTooLarge).
	Results ResultStore
	// TypeLimits caps how many tasks of a type run at once cluster-wide.
	TypeLimits map[string]int
	// CancelPollInterval is how often cancel_requested is read for the tasks
	// running in this process. Default 1s.
	CancelPollInterval time.Duration
	// StopGrace is how long a handler gets to return after its context ends
	// (cancel, timeout) before the attempt is recorded without it. Default 5s.
	StopGrace time.Duration
	// SlotTTL is the lease of a type-limit slot; it is renewed every third of
	// it. Default 30s.
	SlotTTL time.Duration
	// Writers is the number of state writers flushing in parallel; a task's
	// writes always go through the same one, so they stay in order. Default 1: batches are larger, and PostgreSQL's
	// work per task, not round trips, bounds throughput.
	Writers int
	// FinishWait bounds how long an attempt waits for its outcome to be
	// written while PostgreSQL is unreachable. Default 30s.
	FinishWait time.Duration
	// Opener decrypts secret params. If nil, a task with encrypted params fails.
	Opener Opener
	// Registerer receives the metrics. If nil, they are not registered.
	Registerer prometheus.Registerer
	// OnTerminal is called when a terminal state with a callback was recorded
	// (the callback deliverer's Poke).
	OnTerminal func()
	// Events receives, after they commit, an event for every change of a
	// task row and every log line the runtime writes (the live event
	// streams). If nil, none is published.
	Events Publisher
}

// Publisher receives the events of committed changes (*event.Publisher);
// the lifecycle publishes them.
type Publisher = lifecycle.Publisher

// ResultStore keeps JSON results too large for the task row.
type ResultStore interface {
	// SpillJSON stores taskID's result and returns the URL it is read at.
	SpillJSON(ctx context.Context, taskID string, body []byte) (url string, err error)
}

// maxSpilledResult caps a result that goes to result storage: it is held in
// memory while the attempt runs.
const maxSpilledResult = 64 << 20

// Runtime runs tasks through the lifecycle. It is safe for concurrent use by
// several asynq.Servers.
type Runtime struct {
	db        *sql.DB
	lc        *lifecycle.Lifecycle
	inspector *asynq.Inspector
	log       *zap.Logger
	opts      Options
	writers   []*writer
	sem       *Semaphore
	metrics   *metrics
	delays    *delays

	mu     sync.Mutex
	active map[string]*activeTask
	// stuck counts, by type, abandoned handlers that have not returned.
	stuck    map[string]int
	inflight sync.WaitGroup
	bg       sync.WaitGroup
	stop     chan struct{}
	closed   bool
	// burst is the burst server workflow steps start (StartBurst), or nil.
	burst *Burst
}

// activeTask is a task whose handler runs in this process.
type activeTask struct {
	typ       string
	cancel    context.CancelCauseFunc
	deadline  time.Time
	lifecycle bool
	// started is when the attempt began running here (set by track).
	started time.Time
}

// New builds a Runtime and starts its writer and cancel poller. rc carries the
// type-limit semaphore; inspector removes cancelled tasks from Asynq's retry
// and archived sets.
func New(db *gorm.DB, rc redis.UniversalClient, inspector *asynq.Inspector, log *zap.Logger, opts Options) (*Runtime, error) {
	if db == nil || rc == nil || inspector == nil || log == nil {
		return nil, errors.New("worker: nil dependency")
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if opts.WorkerID == "" {
		host, _ := os.Hostname()
		opts.WorkerID = host + ":" + strconv.Itoa(os.Getpid())
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 50 * time.Millisecond
	}
	if opts.MaxMessages <= 0 {
		opts.MaxMessages = 50
	}
	if opts.MaxLogLines <= 0 {
		opts.MaxLogLines = 10000
	}
	if opts.MaxResultBytes <= 0 {
		opts.MaxResultBytes = 1 << 20
	}
	if opts.CancelPollInterval <= 0 {
		opts.CancelPollInterval = time.Second
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 5 * time.Second
	}
	if opts.SlotTTL <= 0 {
		opts.SlotTTL = 30 * time.Second
	}
	if opts.FinishWait <= 0 {
		opts.FinishWait = 30 * time.Second
	}
	if opts.Writers <= 0 {
		opts.Writers = 1
	}
	if opts.Handlers == nil {
		opts.Handlers = map[string]job.Handler{}
	}
	lc, err := lifecycle.New(db, opts.Events)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	m := newMetrics(opts.Registerer)
	m.up.Set(1)
	for typ, limit := range opts.TypeLimits {
		if limit > 0 {
			m.typeLimit.WithLabelValues(typ).Set(float64(limit))
			m.typeSlots.WithLabelValues(typ).Set(0)
		}
	}
	r := &Runtime{
		db: sqlDB, lc: lc, inspector: inspector, log: log, opts: opts, metrics: m,
		sem:    NewSemaphore(rc, "taskforge:typelimit:", opts.SlotTTL),
		delays: newDelays(),
		active: map[string]*activeTask{},
		stuck:  map[string]int{},
		stop:   make(chan struct{}),
	}
	for i := 0; i < opts.Writers; i++ {
		r.writers = append(r.writers, newWriter(sqlDB, lc, log, opts.FlushInterval, opts.FlushGap, opts.MaxMessages, m, opts.OnTerminal))
	}
	r.bg.Add(1)
	go r.pollCancels()
	return r, nil
}

// WorkerID is the id this process records in tasks and attempts.
func (r *Runtime) WorkerID() string { return r.opts.WorkerID }

// Configure sets the runtime's RetryDelayFunc and IsFailure on an Asynq
// server configuration.
func (r *Runtime) Configure(c asynq.Config) asynq.Config {
	c.RetryDelayFunc = r.RetryDelay
	c.IsFailure = r.IsFailure
	return c
}

// IsFailure tells Asynq whether an error spends a retry: a delivery put back
// for want of a type slot does not.
func (r *Runtime) IsFailure(err error) bool { return !errors.Is(err, ErrNoSlot) }

// RetryDelay is Asynq's RetryDelayFunc: the delay of retry n+1 from the retry
// policy in the task's envelope, the same delay the middleware recorded as
// next_retry_at. A delivery without a type slot comes back in 1–2 s.
func (r *Runtime) RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	if errors.Is(err, ErrNoSlot) {
		return time.Second + rand.N(time.Second)
	}
	env, derr := tasks.DecodeEnvelope(t.Payload())
	if derr != nil {
		return tasks.DefaultRetry.Delay(n + 1)
	}
	policy := tasks.PolicyFromProto(env.GetRetryPolicy())
	return r.delays.get(env.GetTaskId(), n, func() time.Duration { return policy.Delay(n + 1) })
}

// Close waits for running handlers (until ctx ends), writes what is buffered
// and stops the runtime's loops. Call it after the Asynq servers' Shutdown.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.inflight.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("worker: close: handlers still running: %w", ctx.Err())
	}
	close(r.stop)
	bgDone := make(chan struct{})
	go func() { r.bg.Wait(); close(bgDone) }()
	select {
	case <-bgDone:
	case <-ctx.Done():
	}
	var wg sync.WaitGroup
	for _, w := range r.writers {
		wg.Add(1)
		go func() { defer wg.Done(); w.close(ctx) }()
	}
	wg.Wait()
	r.metrics.up.Set(0)
	return err
}

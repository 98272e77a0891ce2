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
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/taskpb"
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
}

// activeTask is a task whose handler runs in this process.
type activeTask struct {
	typ       string
	cancel    context.CancelCauseFunc
	deadline  time.Time
	lifecycle bool
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
	r := &Runtime{
		db: sqlDB, lc: lc, inspector: inspector, log: log, opts: opts, metrics: m,
		sem:    NewSemaphore(rc, "taskforge:typelimit:", opts.SlotTTL),
		delays: newDelays(),
		active: map[string]*activeTask{},
		stuck:  map[string]int{},
		stop:   make(chan struct{}),
	}
	for i := 0; i < opts.Writers; i++ {
		r.writers = append(r.writers, newWriter(sqlDB, lc, log, opts.FlushInterval, opts.MaxMessages, m, opts.OnTerminal))
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

// ProcessTask implements asynq.Handler: the lifecycle middleware.
func (r *Runtime) ProcessTask(ctx context.Context, t *asynq.Task) error {
	r.inflight.Add(1)
	defer r.inflight.Done()
	env, err := tasks.DecodeEnvelope(t.Payload())
	if err != nil {
		id, _ := asynq.GetTaskID(ctx)
		r.failUnstarted(id, KindBadParams, "the task's payload is not a Taskforge envelope")
		return fmt.Errorf("%w: %w", asynq.SkipRetry, err)
	}
	if spec, ok := tasks.LookupAny(env.GetType()); ok && spec.Category == tasks.Internal {
		return r.runInternal(ctx, env)
	}
	return r.runTask(ctx, env)
}

// attempt is what the middleware knows about the attempt it runs.
type attempt struct {
	id, typ, queue string
	retried        int
	final          bool
	started        time.Time
	policy         tasks.RetryPolicy
}

func (r *Runtime) runTask(ctx context.Context, env *taskpb.Envelope) error {
	a := attempt{id: env.GetTaskId(), typ: env.GetType(), policy: tasks.PolicyFromProto(env.GetRetryPolicy())}
	a.queue, _ = asynq.GetQueueName(ctx)
	a.retried, _ = asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	// Asynq archives a failed delivery when retried >= max retry, whatever
	// the error; the middleware decides "failed" by the same rule.
	a.final = a.retried >= maxRetry

	if limit := r.opts.TypeLimits[a.typ]; limit > 0 {
		release, err := r.acquireSlot(ctx, a, limit)
		if err != nil {
			return err
		}
		defer release()
	}

	// Read the row: a terminal, cancelled or unknown task never runs.
	w := r.writerFor(a.id)
	checkCtx, cancelCheck := context.WithTimeout(ctx, r.opts.FinishWait)
	chk := w.check(checkCtx, a.id)
	cancelCheck()
	if chk.err != nil {
		r.log.Warn("task state not read", zap.String("task_id", a.id), zap.Error(chk.err))
		if a.final {
			return chk.err
		}
		// PostgreSQL is away: put the delivery back without spending a retry.
		return fmt.Errorf("%w: %w", ErrNoSlot, chk.err)
	}
	if !chk.found || tasks.IsTerminal(chk.status) {
		// Never run, never retry, never archive.
		return asynq.RevokeTask
	}
	if missing := a.retried - (chk.attempt - int(env.GetAttemptBase())); missing > 0 && !chk.cancelRequested {
		// Asynq counted deliveries of this message that left no attempt: a
		// worker killed before its start was written. They ran (and may have
		// had effects): record them as lost before this one.
		n, err := r.recordUnrecorded(ctx, a.id, chk.attempt, missing)
		if err != nil {
			r.log.Warn("unrecorded attempts not written", zap.String("task_id", a.id), zap.Int("missing", missing), zap.Error(err))
			return fmt.Errorf("%w: %w", ErrNoSlot, err)
		}
		chk.attempt += n
	}
	if chk.cancelRequested {
		// Cancelled while no worker ran it: the start statement moves it to
		// cancelled.
		startCtx, cancelStart := context.WithTimeout(ctx, r.opts.FinishWait)
		st := w.start(startCtx, a.id, r.opts.WorkerID, chk.attempt+1)
		cancelStart()
		if st.cancelled {
			r.metrics.cancellations.WithLabelValues(a.typ).Inc()
			r.metrics.processed.WithLabelValues(a.typ, outcomeCancelled).Inc()
		}
		return asynq.RevokeTask
	}
	a.started = time.Now()
	r.metrics.queueWait.WithLabelValues(a.typ).Observe(max(0, a.started.Sub(chk.due).Seconds()))
	key := attemptKey{a.id, chk.attempt + 1}
	maxResult := r.opts.MaxResultBytes
	if r.opts.Results != nil {
		maxResult = max(maxResult, maxSpilledResult)
	}
	rep := newReporter(w, key, r.opts.MaxLogLines, maxResult)

	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	deadline, _ := ctx.Deadline()
	r.track(a.id, &activeTask{typ: a.typ, cancel: cancel, deadline: deadline, lifecycle: true})
	defer r.untrack(a.id)

	// The start is written with the next flush (with the outcome, for a task
	// that ends before it). If the row moved meanwhile — a cancel, another
	// delivery — the handler is stopped and nothing of this attempt is
	// recorded.
	var rejected atomic.Bool
	w.lazyStart(a.id, r.opts.WorkerID, key.attempt, func(st startResult) {
		if st.err == nil && !st.started {
			rejected.Store(true)
			cancel(errStartRejected)
		}
	})
	w.addLog(attemptStartLog(key, a.started, r.opts.WorkerID, a.queue))

	res := r.call(hctx, env, rep)
	result := rep.close()
	if rejected.Load() {
		// Asynq retries a delivery whose context it cancelled itself; the row
		// is terminal, so the task leaves the queue.
		r.removeFromAsynq(a.queue, a.id)
		return asynq.RevokeTask
	}
	o := r.classify(ctx, hctx, a, res)
	var resultURL string
	if o.status == tasks.StatusCompleted && len(result) > r.opts.MaxResultBytes && r.opts.Results != nil {
		// Too large for the row: to result storage, with a link in the row.
		// A storage failure is the attempt's failure (retried as any error).
		url, err := r.opts.Results.SpillJSON(ctx, a.id, result)
		if err != nil {
			o = r.classify(ctx, hctx, a, callResult{err: fmt.Errorf("store the %d-byte result: %w", len(result), err)})
		}
		result, resultURL = nil, url
	}
	return r.record(a, key, o, result, resultURL)
}

// recordUnrecorded writes missing lost attempts after attempt (see
// lifecycle.Lifecycle.Unrecorded) and returns how many the row took (0 when it had moved).
func (r *Runtime) recordUnrecorded(ctx context.Context, id string, attempt, missing int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.FinishWait)
	defer cancel()
	moved, err := r.lc.Unrecorded(ctx, id, attempt, missing)
	if err != nil || !moved {
		return 0, err
	}
	r.log.Warn("attempts a killed worker ran without recording them written as lost",
		zap.String("task_id", id), zap.Int("after_attempt", attempt), zap.Int("lost", missing))
	return missing, nil
}

// callResult is what a handler call produced.
type callResult struct {
	err       error
	kind      string // set for errors found before or around the call
	stack     string
	abandoned bool // the handler did not return within StopGrace
}

// call decodes the params and runs the handler in its own goroutine, with
// panics recovered and their stack kept. If the context ends and the handler
// does not return within StopGrace, the call is given up.
func (r *Runtime) call(ctx context.Context, env *taskpb.Envelope, rep job.Reporter) callResult {
	h, ok := r.opts.Handlers[env.GetType()]
	if !ok {
		return callResult{err: job.Permanent(fmt.Errorf("%w %s", ErrNoHandler, env.GetType())), kind: KindNoHandler}
	}
	_, params, err := tasks.DecodeEnvelopeParams(env)
	if err != nil {
		return callResult{err: job.Permanent(err), kind: KindBadParams}
	}
	if env.GetKeyId() != "" {
		if r.opts.Opener == nil {
			return callResult{err: job.Permanent(fmt.Errorf("params are encrypted under key %q and this worker has no keyring", env.GetKeyId())), kind: KindBadParams}
		}
		if err := r.opts.Opener.Open(env.GetKeyId(), params); err != nil {
			return callResult{err: job.Permanent(fmt.Errorf("decrypt params: %w", err)), kind: KindBadParams}
		}
	}
	r.metrics.inUse.Inc()
	r.metrics.active.WithLabelValues(env.GetType()).Inc()
	done := make(chan callResult, 1)
	go func() {
		defer func() {
			if x := recover(); x != nil {
				done <- callResult{err: fmt.Errorf("panic: %v", x), kind: KindPanic, stack: string(debug.Stack())}
			}
		}()
		done <- callResult{err: h(ctx, rep, params)}
	}()
	var res callResult
	select {
	case res = <-done:
	case <-ctx.Done():
		select {
		case res = <-done:
		case <-time.After(r.opts.StopGrace):
			res = callResult{err: fmt.Errorf("%w within %s", errStopTimeout, r.opts.StopGrace), abandoned: true}
			// The goroutine cannot be stopped: count it as running over its
			// timeout until it returns.
			typ := env.GetType()
			r.mu.Lock()
			r.stuck[typ]++
			r.mu.Unlock()
			go func() {
				<-done
				r.mu.Lock()
				r.stuck[typ]--
				r.mu.Unlock()
			}()
		}
	}
	r.metrics.inUse.Dec()
	r.metrics.active.WithLabelValues(env.GetType()).Dec()
	return res
}

// outcome is how an attempt ended.
type outcome struct {
	status      string // the task's new status
	attempt     string // the attempt's outcome
	kind        string
	err         error
	stack       string
	asynqErr    error
	cancelAsynq bool // remove the task from Asynq's retry/archive sets
}

// classify decides the attempt's outcome from the handler's result and why
// its context ended: ctx is Asynq's, hctx the handler's.
func (r *Runtime) classify(ctx, hctx context.Context, a attempt, res callResult) outcome {
	if res.err == nil {
		return outcome{status: tasks.StatusCompleted, attempt: tasks.StatusCompleted}
	}
	o := outcome{err: res.err, kind: res.kind, stack: res.stack}
	deadline, hasDeadline := ctx.Deadline()
	switch {
	case errors.Is(context.Cause(hctx), errCancelRequested) ||
		(errors.Is(ctx.Err(), context.Canceled) && r.cancelRequested(a.id)):
		o.status, o.attempt, o.kind = tasks.StatusCancelled, tasks.StatusCancelled, KindCancelled
		o.err = errors.New("cancelled at the caller's request")
		if res.abandoned {
			o.err = fmt.Errorf("cancelled at the caller's request; %w", res.err)
		}
		// Asynq schedules a retry when its own context was cancelled
		// (CancelProcessing), whatever the handler returns; the task is
		// removed from there, and a later delivery is revoked.
		o.asynqErr, o.cancelAsynq = asynq.RevokeTask, true
		return o
	case hasDeadline && !time.Now().Before(deadline) && (errors.Is(ctx.Err(), context.DeadlineExceeded) || res.abandoned ||
		errors.Is(res.err, context.DeadlineExceeded)):
		o.kind, o.attempt = KindTimeout, KindTimeout
		o.err = fmt.Errorf("timed out after %s: %w", deadline.Sub(a.started).Round(time.Second), res.err)
	case errors.Is(ctx.Err(), context.Canceled):
		// Asynq's shutdown deadline passed (the task is requeued) or its lease
		// was lost: the task will be delivered again.
		o.kind = KindInterrupted
		o.status, o.attempt = tasks.StatusRetrying, tasks.StatusRetrying
		o.asynqErr = ctx.Err()
		return o
	case o.kind == "" && job.IsPermanent(res.err):
		o.kind = KindPermanent
	case o.kind == "":
		o.kind = KindError
	}
	if job.IsPermanent(res.err) {
		o.status, o.attempt = tasks.StatusFailed, tasks.StatusFailed
		o.asynqErr = fmt.Errorf("%w: %w", asynq.SkipRetry, res.err)
		if o.kind == KindTimeout {
			o.attempt = KindTimeout
		}
		return o
	}
	o.asynqErr = o.err
	if a.final {
		o.status = tasks.StatusFailed
		if o.attempt == "" {
			o.attempt = tasks.StatusFailed
		}
		return o
	}
	o.status = tasks.StatusRetrying
	if o.attempt == "" {
		o.attempt = tasks.StatusRetrying
	}
	return o
}

// taskError is the tasks.error document.
type taskError struct {
	Message string `json:"message"`
	Kind    string `json:"kind"`
	Attempt int    `json:"attempt"`
}

// record writes the attempt's outcome (waiting for it to be written, within
// FinishWait), counts it, and returns what Asynq must be told.
func (r *Runtime) record(a attempt, key attemptKey, o outcome, result []byte, resultURL string) error {
	now := time.Now().UTC()
	op := &finishOp{key: key, status: o.status, ts: now, outcome: o.attempt, durationMs: now.Sub(a.started).Milliseconds()}
	if o.status == tasks.StatusCompleted {
		op.result, op.resultURL = result, resultURL
	} else {
		msg := clean(o.err.Error(), maxLogLen)
		op.errorKind, op.errorMsg, op.stack = o.kind, msg, clean(o.stack, 64<<10)
		op.errJSON, _ = json.Marshal(taskError{Message: msg, Kind: o.kind, Attempt: key.attempt})
	}
	if o.status == tasks.StatusRetrying {
		next := now
		if o.kind != KindInterrupted {
			next = now.Add(r.delays.get(a.id, a.retried, func() time.Duration { return a.policy.Delay(a.retried + 1) }))
		}
		op.nextRetryAt = &next
	}
	// The attempt's last log line rides in the same flush as its outcome.
	w := r.writerFor(a.id)
	w.addLog(attemptEndLog(key, op))
	w.finish(op)
	select {
	case res := <-op.done:
		if res.err != nil {
			r.log.Error("task outcome not recorded", zap.String("task_id", a.id), zap.Int("attempt", key.attempt), zap.Error(res.err))
		}
	case <-time.After(r.opts.FinishWait):
		r.log.Error("task outcome not yet recorded; it stays queued for the database", zap.String("task_id", a.id), zap.Int("attempt", key.attempt))
	}

	r.metrics.duration.WithLabelValues(a.typ).Observe(now.Sub(a.started).Seconds())
	switch o.status {
	case tasks.StatusCompleted:
		r.metrics.processed.WithLabelValues(a.typ, outcomeCompleted).Inc()
	case tasks.StatusFailed:
		r.metrics.processed.WithLabelValues(a.typ, outcomeFailed).Inc()
	case tasks.StatusRetrying:
		r.metrics.processed.WithLabelValues(a.typ, outcomeRetried).Inc()
		r.metrics.retries.WithLabelValues(a.typ).Inc()
	case tasks.StatusCancelled:
		r.metrics.processed.WithLabelValues(a.typ, outcomeCancelled).Inc()
		r.metrics.cancellations.WithLabelValues(a.typ).Inc()
	}
	if o.cancelAsynq {
		r.removeFromAsynq(a.queue, a.id)
	}
	if o.status == tasks.StatusCompleted {
		return nil
	}
	return o.asynqErr
}

// writerFor returns the state writer of a task.
func (r *Runtime) writerFor(id string) *writer {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return r.writers[h.Sum32()%uint32(len(r.writers))]
}

// cancelRequested reads a task's cancel_requested flag.
func (r *Runtime) cancelRequested(id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var flag bool
	if err := r.db.QueryRowContext(ctx, `SELECT cancel_requested FROM tasks WHERE id = $1`, id).Scan(&flag); err != nil {
		r.log.Warn("cancel flag not read", zap.String("task_id", id), zap.Error(err))
		return false
	}
	return flag
}

// failUnstarted fails a task that never started an attempt (its payload was
// unreadable, or it waited for a type slot until its timeout).
func (r *Runtime) failUnstarted(id, kind, message string) {
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errJSON, _ := json.Marshal(taskError{Message: message, Kind: kind})
	moved, err := r.lc.FailUnstarted(ctx, id, string(errJSON))
	if err != nil {
		r.log.Error("task failure not recorded", zap.String("task_id", id), zap.Error(err))
		return
	}
	if moved && r.opts.OnTerminal != nil {
		r.opts.OnTerminal()
	}
}

// acquireSlot takes a slot of the type's cluster-wide limit and keeps its
// lease renewed until release. Without a free slot the delivery goes back to
// the queue (ErrNoSlot) — except on its last allowed delivery, which Asynq
// would archive for any error: that one waits here for a slot.
func (r *Runtime) acquireSlot(ctx context.Context, a attempt, limit int) (func(), error) {
	for {
		ok, err := r.sem.Acquire(ctx, a.typ, a.id, limit)
		if err != nil {
			r.log.Warn("type slot not acquired", zap.String("task_id", a.id), zap.Error(err))
			if !a.final {
				return nil, fmt.Errorf("%w: %w", ErrNoSlot, err)
			}
		}
		if ok {
			break
		}
		if !a.final {
			r.metrics.deferred.WithLabelValues(a.typ).Inc()
			return nil, ErrNoSlot
		}
		select {
		case <-ctx.Done():
			r.failUnstarted(a.id, KindTimeout, fmt.Sprintf("no free %s slot (limit %d) before the task's timeout", a.typ, limit))
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
					r.log.Warn("type slot lease not renewed", zap.String("task_id", a.id), zap.Bool("held", held), zap.Error(err))
				}
			}
		}
	}()
	return func() {
		close(stop)
		wg.Wait()
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.sem.Release(rctx, a.typ, a.id); err != nil {
			r.log.Warn("type slot not released; its lease will end", zap.String("task_id", a.id), zap.Error(err))
		}
	}, nil
}

// removeFromAsynq deletes a cancelled task from Asynq once its processor has
// moved it out of the active set (to retry or, on the last delivery, to the
// archive): a cancelled task must not stay a dead letter.
func (r *Runtime) removeFromAsynq(qname, id string) {
	if qname == "" {
		return
	}
	r.bg.Add(1)
	go func() {
		defer r.bg.Done()
		for i := 0; i < 50; i++ {
			got, err := queue.Remove(r.inspector, qname, id)
			if err != nil {
				r.log.Warn("cancelled task not removed from the queue; its next delivery will be revoked", zap.String("task_id", id), zap.Error(err))
				return
			}
			if got != queue.Active {
				return
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.stop:
				if i > 20 {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
}

// runInternal runs an internal type (no tasks row, no lifecycle).
func (r *Runtime) runInternal(ctx context.Context, env *taskpb.Envelope) error {
	id, _ := asynq.GetTaskID(ctx)
	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	deadline, _ := ctx.Deadline()
	r.track(id, &activeTask{typ: env.GetType(), cancel: cancel, deadline: deadline})
	defer r.untrack(id)
	started := time.Now()
	rep := &logReporter{id: env.GetTaskId(), log: r.log.With(zap.String("task_id", env.GetTaskId()), zap.String("type", env.GetType()))}
	res := r.call(hctx, env, rep)
	r.metrics.duration.WithLabelValues(env.GetType()).Observe(time.Since(started).Seconds())
	if res.err == nil {
		r.metrics.processed.WithLabelValues(env.GetType(), outcomeCompleted).Inc()
		return nil
	}
	rep.log.Warn("internal task failed", zap.String("kind", res.kind), zap.Error(res.err), zap.String("stack", res.stack))
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	if job.IsPermanent(res.err) || retried >= maxRetry {
		r.metrics.processed.WithLabelValues(env.GetType(), outcomeFailed).Inc()
	} else {
		r.metrics.processed.WithLabelValues(env.GetType(), outcomeRetried).Inc()
		r.metrics.retries.WithLabelValues(env.GetType()).Inc()
	}
	if job.IsPermanent(res.err) {
		return fmt.Errorf("%w: %w", asynq.SkipRetry, res.err)
	}
	return res.err
}

func (r *Runtime) track(id string, t *activeTask) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active[id] = t
}

func (r *Runtime) untrack(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.active, id)
}

// pollCancels reads cancel_requested for every lifecycle task running in this
// process, in one query a tick, and cancels the handlers of flagged ones: a
// cancel sent while no worker listened to Asynq's pub/sub still takes effect.
// It also refreshes the over-timeout gauge.
func (r *Runtime) pollCancels() {
	defer r.bg.Done()
	t := time.NewTicker(r.opts.CancelPollInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		var ids []string
		over := map[string]int{}
		r.mu.Lock()
		for id, a := range r.active {
			if a.lifecycle {
				ids = append(ids, id)
			}
			if !a.deadline.IsZero() && now.After(a.deadline) {
				over[a.typ]++
			}
		}
		for typ, n := range r.stuck {
			over[typ] += n
		}
		r.mu.Unlock()
		r.metrics.overTimeout.Reset()
		for typ, n := range over {
			r.metrics.overTimeout.WithLabelValues(typ).Set(float64(n))
		}
		if len(ids) == 0 {
			continue
		}
		flagged, err := r.flagged(ids)
		if err != nil {
			r.log.Warn("cancel flags not read", zap.Error(err))
			continue
		}
		r.mu.Lock()
		for _, id := range flagged {
			if a := r.active[id]; a != nil {
				a.cancel(errCancelRequested)
			}
		}
		r.mu.Unlock()
	}
}

func (r *Runtime) flagged(ids []string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := r.db.QueryContext(ctx, `SELECT id FROM tasks WHERE id = ANY($1) AND cancel_requested`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// logReporter is the Reporter of internal tasks: no tasks row, so progress
// and logs go to the process log.
type logReporter struct {
	id  string
	log *zap.Logger
}

// TaskID implements job.Reporter.
func (l *logReporter) TaskID() string { return l.id }

// Attempt implements job.Reporter.
func (l *logReporter) Attempt() int { return 1 }

// Progress implements job.Reporter.
func (l *logReporter) Progress(fraction float64, step, message string) {
	l.log.Debug("internal task progress", zap.Float64("fraction", fraction), zap.String("step", step), zap.String("message", message))
}

// Log implements job.Reporter.
func (l *logReporter) Log(level, message string, fields map[string]any) {
	l.log.Info("internal task log", zap.String("level", level), zap.String("message", message), zap.Any("fields", fields))
}

// SetResult implements job.Reporter; internal tasks keep no result.
func (l *logReporter) SetResult(any) error { return nil }

// delays keeps the retry delay of a task's pending retry so that Asynq's
// RetryDelayFunc and the recorded next_retry_at agree (the policy's jitter is
// random): whichever asks first computes it, the other takes it.
type delays struct {
	mu sync.Mutex
	m  map[string]delayEntry
}

type delayEntry struct {
	retried int
	d       time.Duration
	at      time.Time
}

func newDelays() *delays { return &delays{m: map[string]delayEntry{}} }

func (d *delays) get(id string, retried int, compute func() time.Duration) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.m[id]; ok && e.retried == retried && time.Since(e.at) < time.Minute {
		delete(d.m, id)
		return e.d
	}
	v := compute()
	if len(d.m) > 10000 {
		for k, e := range d.m {
			if time.Since(e.at) > time.Minute {
				delete(d.m, k)
			}
		}
	}
	d.m[id] = delayEntry{retried: retried, d: v, at: time.Now()}
	return v
}

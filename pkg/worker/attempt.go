package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"go.opentelemetry.io/otel/codes"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/logging"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/tracing"
)

// ProcessTask implements asynq.Handler: the lifecycle middleware.
func (r *Runtime) ProcessTask(ctx context.Context, t *asynq.Task) error {
	r.inflight.Add(1)
	defer r.inflight.Done()
	carried := tracing.FromHeaders(t.Headers())
	env, err := tasks.DecodeEnvelope(t.Payload())
	if err != nil {
		a := attempt{requestID: carried.RequestID, traceID: tracing.TaskTraceID(ctx, carried)}
		a.id, _ = asynq.GetTaskID(ctx)
		r.failUnstarted(a, KindBadParams, "the task's payload is not a Taskforge envelope")
		return fmt.Errorf("%w: %w", asynq.SkipRetry, err)
	}
	if spec, ok := tasks.LookupAny(env.GetType()); ok && spec.Category == tasks.Internal {
		return r.runInternal(ctx, env)
	}
	return r.runTask(ctx, env, carried)
}

// attempt is what the middleware knows about the attempt it runs.
type attempt struct {
	id, typ, queue string
	retried        int
	final          bool
	started        time.Time
	policy         tasks.RetryPolicy
	// number is the attempt's number once the row was read (0 before);
	// traceID and requestID tie its log lines to the delivery's trace and
	// the request that created the task.
	number             int
	traceID, requestID string
}

// fields are the fields of every log line about the attempt: task_id,
// attempt, trace_id and request_id, then extra.
func (a *attempt) fields(extra ...zap.Field) []zap.Field {
	return append([]zap.Field{logging.TaskID(a.id), logging.Attempt(a.number),
		zap.String(logging.FieldTraceID, a.traceID), logging.RequestID(a.requestID)}, extra...)
}

// terminalRecheck is how long a delivery that found its row ended (or
// missing) waits before reading it once more (see runTask): a retry's commit
// follows its enqueue by milliseconds.
const terminalRecheck = 250 * time.Millisecond

func (r *Runtime) runTask(ctx context.Context, env *taskpb.Envelope, carried tracing.Carried) (err error) {
	a := attempt{id: env.GetTaskId(), typ: env.GetType(), policy: tasks.PolicyFromProto(env.GetRetryPolicy()),
		requestID: carried.RequestID}
	a.queue, _ = asynq.GetQueueName(ctx)
	a.retried, _ = asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	// Asynq archives a failed delivery when retried >= max retry, whatever
	// the error; the middleware decides "failed" by the same rule.
	a.final = a.retried >= maxRetry
	// The delivery's span: a child of the creating request's enqueue span,
	// or linked to it for a retry or a late delivery (tracing.Carried.Child).
	ctx, span := tracing.StartTask(ctx, carried, tracing.Task{ID: a.id, Type: a.typ, Queue: a.queue,
		Attempt: int(env.GetAttemptBase()) + a.retried + 1, Redelivered: a.retried > 0 || env.GetAttemptBase() > 0})
	defer func() {
		if err != nil && !errors.Is(err, asynq.RevokeTask) {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	a.traceID = tracing.TaskTraceID(ctx, carried)

	if limit := r.opts.TypeLimits[a.typ]; limit > 0 {
		release, err := r.acquireSlot(ctx, a, limit)
		if err != nil {
			return err
		}
		defer release()
	}

	// Read the row: a terminal, cancelled or unknown task never runs.
	w := r.writerFor(a.id)
	read := func() checkResult {
		checkCtx, cancelCheck := context.WithTimeout(ctx, r.opts.FinishWait)
		defer cancelCheck()
		return w.check(checkCtx, a.id)
	}
	chk := read()
	if chk.err == nil && (!chk.found || tasks.IsTerminal(chk.status)) {
		// A manual retry enqueues its delivery inside the transaction that
		// moves the row back to pending, so that a failed enqueue undoes
		// it: a delivery quick enough to beat the commit finds the row still
		// ended. It is read once more a moment later before being dropped.
		select {
		case <-ctx.Done():
		case <-time.After(terminalRecheck):
			chk = read()
		}
	}
	if chk.err != nil {
		r.log.Warn("task state not read", a.fields(zap.Error(chk.err))...)
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
		n, err := r.recordUnrecorded(ctx, a, chk.attempt, missing)
		if err != nil {
			r.log.Warn("unrecorded attempts not written", a.fields(zap.Int("missing", missing), zap.Error(err))...)
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
	if chk.step {
		// Its workflow's next steps come right after it ends: the burst
		// server polls meanwhile, and a while after.
		r.stepActivity()
		defer r.stepActivity()
	}
	a.started, a.number = time.Now(), chk.attempt+1
	r.metrics.queueWait.WithLabelValues(a.typ).Observe(max(0, a.started.Sub(chk.due).Seconds()))
	key := attemptKey{a.id, chk.attempt + 1}
	maxResult := r.opts.MaxResultBytes
	if r.opts.Results != nil {
		maxResult = max(maxResult, maxSpilledResult)
	}
	rep := newReporter(w, key, r.opts.MaxLogLines, maxResult)
	rep.traceID, rep.requestID = a.traceID, a.requestID

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
	start := attemptStartLog(key, a.started, r.opts.WorkerID, a.queue)
	start.traceID = a.traceID
	w.addLog(start)
	if ce := r.log.Check(zap.DebugLevel, "attempt started"); ce != nil {
		ce.Write(a.fields(logging.TaskType(a.typ), zap.String("queue", a.queue))...)
	}

	res := r.call(hctx, env, rep)
	res.err = rep.masking().error(res.err)
	result := rep.close()
	if rejected.Load() {
		// Asynq retries a delivery whose context it cancelled itself; the row
		// is terminal, so the task leaves the queue.
		r.removeFromAsynq(a)
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

// recordUnrecorded writes missing lost attempts after attempt number after (see
// lifecycle.Lifecycle.Unrecorded) and returns how many the row took (0 when it had moved).
func (r *Runtime) recordUnrecorded(ctx context.Context, a attempt, after, missing int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.FinishWait)
	defer cancel()
	moved, err := r.lc.Unrecorded(ctx, a.id, after, missing)
	if err != nil || !moved {
		return 0, err
	}
	r.log.Warn("attempts a killed worker ran without recording them written as lost",
		a.fields(zap.Int("after_attempt", after), zap.Int("lost", missing))...)
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
	spec, params, err := tasks.DecodeEnvelopeParams(env)
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
	// The handler sees the values; what the attempt writes never does.
	if rp, ok := rep.(*reporter); ok {
		rp.setMask(newMasker(spec, params))
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
		(errors.Is(ctx.Err(), context.Canceled) && r.cancelRequested(a)):
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
	end := attemptEndLog(key, op)
	end.traceID = a.traceID
	w.addLog(end)
	w.finish(op)
	select {
	case res := <-op.done:
		if res.err != nil {
			r.log.Error("task outcome not recorded", a.fields(zap.Error(res.err))...)
		}
	case <-time.After(r.opts.FinishWait):
		r.log.Error("task outcome not yet recorded; it stays queued for the database", a.fields()...)
	}
	if ce := r.log.Check(zap.DebugLevel, "attempt finished"); ce != nil {
		ce.Write(a.fields(zap.String("status", o.status), zap.String("outcome", o.attempt), zap.Int64("duration_ms", op.durationMs))...)
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
		r.removeFromAsynq(a)
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

// failUnstarted fails a task that never started an attempt (its payload was
// unreadable, or it waited for a type slot until its timeout).
func (r *Runtime) failUnstarted(a attempt, kind, message string) {
	id := a.id
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errJSON, _ := json.Marshal(taskError{Message: message, Kind: kind})
	moved, err := r.lc.FailUnstarted(ctx, id, string(errJSON))
	if err != nil {
		r.log.Error("task failure not recorded", a.fields(zap.Error(err))...)
		return
	}
	if moved && r.opts.OnTerminal != nil {
		r.opts.OnTerminal()
	}
}

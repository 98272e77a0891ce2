package worker

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/store"
)

// maxPendingLogs caps log lines waiting for a flush while PostgreSQL is away;
// older lines are dropped beyond it.
const maxPendingLogs = 100_000

// attemptKey names one attempt of a task.
type attemptKey struct {
	id      string
	attempt int
}

// checkOp reads whether a delivered task may start, and its attempt.
type checkOp struct {
	id   string
	done chan checkResult
}

// checkResult is a task row's state as a delivery finds it.
type checkResult struct {
	found           bool
	status          string
	attempt         int
	cancelRequested bool
	// due is when the task became due: the start of its queue wait.
	due time.Time
	err error
}

// startOp asks to move a task to running for attempt (the row's attempt + 1).
// A lazy start is written with the next flush and reports through onResult;
// if the attempt's outcome is queued before that flush, the two are written
// as one combined update.
type startOp struct {
	id, worker string
	attempt    int
	ts         time.Time
	abandoned  atomic.Bool
	done       chan startResult
	onResult   func(startResult)
}

func (s *startOp) answer(r startResult) {
	if s.onResult != nil {
		s.onResult(r)
		return
	}
	s.done <- r
}

// startResult is the outcome of a start: started with an attempt number, or
// not started (terminal, cancelled, cancel requested or no such row).
type startResult struct {
	started     bool
	attempt     int
	queueWaitMs int64
	// cancelled is true when the row had cancel_requested and was moved to
	// cancelled by this start.
	cancelled bool
	err       error
}

// finishOp records the outcome of an attempt.
type finishOp struct {
	key         attemptKey
	status      string
	ts          time.Time
	result      []byte
	resultURL   string // set instead of result when the result went to result storage
	errJSON     []byte
	nextRetryAt *time.Time
	durationMs  int64
	outcome     string
	errorKind   string
	errorMsg    string
	stack       string
	// start and prog are set when the attempt's lazy start was still queued:
	// start, progress and outcome are then written by one statement.
	start *startOp
	prog  *progressState
	done  chan finishResult
}

// finishResult says whether the task row took the transition (false: the row
// had moved on, e.g. a newer attempt or a terminal state).
type finishResult struct {
	applied bool
	err     error
}

// progressState is the latest progress of an attempt not yet written.
type progressState struct {
	fraction float64
	step     string
	msgs     []string
}

// logRow is one buffered log line.
type logRow struct {
	key    attemptKey
	ts     time.Time
	level  string
	msg    string
	fields string
}

// writer is the batched state writer. Transitions that a task waits for
// (start, finish) wake it at once and everything queued meanwhile rides in the
// same round trip (group commit); progress and log lines are written every
// interval, or earlier with a waited transition. Each flush is one pgx batch:
// all statements go to PostgreSQL in one round trip and run in one implicit
// transaction, in this order: starts, progress, logs, finishes — so a task's
// last progress and logs are written before its outcome.
type writer struct {
	db          *sql.DB
	log         *zap.Logger
	interval    time.Duration
	maxMessages int
	metrics     *metrics
	onTerminal  func()
	// lc writes each flush and publishes what it changed once it committed.
	lc *lifecycle.Lifecycle

	mu       sync.Mutex
	checks   []*checkOp
	starts   []*startOp
	finishes []*finishOp
	progress map[attemptKey]*progressState
	logs     []logRow
	dropped  int

	urgent  chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	// drainBy bounds retries of the last flush after stop.
	drainBy atomic.Pointer[time.Time]
}

func newWriter(db *sql.DB, lc *lifecycle.Lifecycle, log *zap.Logger, interval time.Duration, maxMessages int, m *metrics, onTerminal func()) *writer {
	w := &writer{
		db: db, log: log, interval: interval, maxMessages: maxMessages, metrics: m, onTerminal: onTerminal, lc: lc,
		progress: map[attemptKey]*progressState{},
		urgent:   make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	go w.run()
	return w
}

func (w *writer) wake() {
	select {
	case w.urgent <- struct{}{}:
	default:
	}
}

// check reads a task's state for a delivery, waiting until ctx ends.
func (w *writer) check(ctx context.Context, id string) checkResult {
	op := &checkOp{id: id, done: make(chan checkResult, 1)}
	w.mu.Lock()
	w.checks = append(w.checks, op)
	w.mu.Unlock()
	w.wake()
	select {
	case r := <-op.done:
		return r
	case <-ctx.Done():
		return checkResult{err: fmt.Errorf("worker: check %s: %w", id, ctx.Err())}
	}
}

// lazyStart queues a start written with the next flush; onResult gets its
// result unless the attempt's outcome absorbs it first.
func (w *writer) lazyStart(id, worker string, attempt int, onResult func(startResult)) {
	op := &startOp{id: id, worker: worker, attempt: attempt, ts: time.Now().UTC(), onResult: onResult}
	w.mu.Lock()
	w.starts = append(w.starts, op)
	w.mu.Unlock()
}

// start queues a start and waits for its result until ctx ends.
func (w *writer) start(ctx context.Context, id, worker string, attempt int) startResult {
	op := &startOp{id: id, worker: worker, attempt: attempt, ts: time.Now().UTC(), done: make(chan startResult, 1)}
	w.mu.Lock()
	w.starts = append(w.starts, op)
	w.mu.Unlock()
	w.wake()
	select {
	case r := <-op.done:
		return r
	case <-ctx.Done():
		op.abandoned.Store(true)
		return startResult{err: fmt.Errorf("worker: start %s: %w", id, ctx.Err())}
	}
}

// finish queues an outcome; the caller waits on op.done.
func (w *writer) finish(op *finishOp) {
	op.done = make(chan finishResult, 1)
	w.mu.Lock()
	for i, s := range w.starts {
		if s.id == op.key.id && s.attempt == op.key.attempt && s.onResult != nil {
			op.start = s
			w.starts = append(w.starts[:i], w.starts[i+1:]...)
			op.prog = w.progress[op.key]
			delete(w.progress, op.key)
			break
		}
	}
	w.finishes = append(w.finishes, op)
	w.mu.Unlock()
	w.wake()
}

// setProgress records an attempt's latest progress; msg, if not empty, is
// appended to its messages.
func (w *writer) setProgress(k attemptKey, fraction float64, step, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.progress[k]
	if p == nil {
		p = &progressState{}
		w.progress[k] = p
	}
	p.fraction, p.step = fraction, step
	if msg != "" {
		p.msgs = append(p.msgs, msg)
		if len(p.msgs) > w.maxMessages {
			p.msgs = p.msgs[len(p.msgs)-w.maxMessages:]
		}
	}
}

// addLog buffers a log line.
func (w *writer) addLog(r logRow) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.logs) >= maxPendingLogs {
		w.logs = w.logs[1:]
		w.dropped++
	}
	w.logs = append(w.logs, r)
}

// close flushes what is queued, retrying until ctx ends, and stops the writer.
func (w *writer) close(ctx context.Context) {
	if dl, ok := ctx.Deadline(); ok {
		w.drainBy.Store(&dl)
	} else {
		dl := time.Now().Add(10 * time.Second)
		w.drainBy.Store(&dl)
	}
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	select {
	case <-w.stopped:
	case <-ctx.Done():
	}
}

func (w *writer) run() {
	defer close(w.stopped)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-w.urgent:
		case <-t.C:
		case <-w.stop:
			w.flush()
			return
		}
		w.flush()
	}
}

// batch is one flush's worth of operations.
type batch struct {
	checks   []*checkOp
	starts   []*startOp
	finishes []*finishOp
	progress map[attemptKey]*progressState
	logs     []logRow
}

func (b *batch) empty() bool {
	return len(b.checks) == 0 && len(b.starts) == 0 && len(b.finishes) == 0 && len(b.progress) == 0 && len(b.logs) == 0
}

func (w *writer) take() *batch {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := &batch{checks: w.checks, starts: w.starts, finishes: w.finishes, progress: w.progress, logs: w.logs}
	w.checks, w.starts, w.finishes, w.logs = nil, nil, nil, nil
	w.progress = map[attemptKey]*progressState{}
	if w.dropped > 0 {
		w.log.Warn("log lines dropped while the database was unreachable", zap.Int("lines", w.dropped))
		w.dropped = 0
	}
	return b
}

// flush writes everything queued. Connection failures are retried with
// backoff (the waiters keep waiting); a statement PostgreSQL rejects fails
// only the operations of that statement.
func (w *writer) flush() {
	b := w.take()
	backoff := 50 * time.Millisecond
	for {
		live := b.starts[:0]
		for _, s := range b.starts {
			if !s.abandoned.Load() {
				live = append(live, s)
			}
		}
		b.starts = live
		if b.empty() {
			return
		}
		began := time.Now()
		err := w.exec(b, true)
		w.metrics.flushSeconds.Observe(time.Since(began).Seconds())
		if err == nil {
			return
		}
		w.metrics.flushErrors.Inc()
		if !store.IsConnError(err) {
			w.log.Error("state batch rejected; writing its statements one by one", zap.Error(err))
			_ = w.exec(b, false)
			return
		}
		w.log.Warn("state batch not written; retrying", zap.Error(err), zap.Duration("backoff", backoff))
		if dl := w.drainBy.Load(); dl != nil && time.Now().After(*dl) {
			w.fail(b, err)
			return
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, 2*time.Second)
		// Later operations join the retry so that order per task is kept.
		more := w.take()
		b.checks = append(b.checks, more.checks...)
		b.starts = append(b.starts, more.starts...)
		b.finishes = append(b.finishes, more.finishes...)
		for k, p := range more.progress {
			if old := b.progress[k]; old != nil {
				p.msgs = append(old.msgs, p.msgs...)
			}
			b.progress[k] = p
		}
		b.logs = append(b.logs, more.logs...)
	}
}

// fail answers every waiter of b with err.
func (w *writer) fail(b *batch, err error) {
	for _, c := range b.checks {
		c.done <- checkResult{err: err}
	}
	for _, s := range b.starts {
		s.answer(startResult{err: err})
	}
	for _, f := range b.finishes {
		f.done <- finishResult{err: err}
	}
	if n := len(b.logs) + len(b.progress); n > 0 {
		w.log.Error("progress and log lines lost", zap.Int("items", n), zap.Error(err))
	}
}

// exec sends b as one pgx batch (atomic) or, when atomic is false, each
// statement as its own batch so that one rejected statement spares the others.
// It answers the waiters unless the whole batch failed to reach PostgreSQL.
// The lifecycle publishes the changes of what committed.
func (w *writer) exec(b *batch, atomic bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := w.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()

	// Each statement's kind tells which waiters a rejected statement fails.
	type stmt struct {
		kind string
		lifecycle.Statement
	}
	var stmts []stmt
	checkRes := map[string]checkResult{}
	startRes := map[string]startResult{}
	applied := map[string]bool{}
	terminalSeen := false // a terminal state with a callback, or a start's cancel, was recorded
	moved := func(m lifecycle.Moved) {
		applied[m.ID] = true
		terminalSeen = terminalSeen || m.Callback
	}
	var plain []lifecycle.Outcome
	var wholes []lifecycle.Whole
	for _, f := range b.finishes {
		if f.start != nil {
			wholes = append(wholes, f.whole())
		} else {
			plain = append(plain, f.outcomeOf())
		}
	}

	// In this order: a task's last progress and log lines are written (and
	// published) before its outcome.
	if len(b.checks) > 0 {
		ids := make([]string, len(b.checks))
		for i, c := range b.checks {
			ids[i] = c.id
		}
		stmts = append(stmts, stmt{"check", lifecycle.Check(ids, func(d lifecycle.Due) {
			checkRes[d.ID] = checkResult{found: true, status: d.Status, attempt: d.Attempt, cancelRequested: d.CancelRequested, due: d.Due}
		})})
	}
	if len(b.starts) > 0 {
		starts := make([]lifecycle.Start, len(b.starts))
		for i, s := range b.starts {
			starts[i] = lifecycle.Start{ID: s.id, Worker: s.worker, Attempt: s.attempt, At: s.ts}
		}
		stmts = append(stmts, stmt{"start", lifecycle.StartAttempts(starts, func(s lifecycle.Started) {
			startRes[s.ID] = startResult{started: !s.Cancelled, attempt: s.Attempt, queueWaitMs: s.QueueWaitMs, cancelled: s.Cancelled}
			terminalSeen = terminalSeen || s.Cancelled
		})})
	}
	if len(b.progress) > 0 {
		ps := make([]lifecycle.Progress, 0, len(b.progress))
		for k, p := range b.progress {
			ps = append(ps, p.of(k))
		}
		stmts = append(stmts, stmt{"progress", lifecycle.WriteProgress(ps, w.maxMessages)})
	}
	if len(b.logs) > 0 {
		lines := make([]lifecycle.LogLine, len(b.logs))
		for i, l := range b.logs {
			lines[i] = lifecycle.LogLine{ID: l.key.id, Attempt: l.key.attempt, At: l.ts, Level: l.level, Message: l.msg, Fields: l.fields}
		}
		stmts = append(stmts, stmt{"logs", lifecycle.AppendLogs(lines)})
	}
	if len(wholes) > 0 {
		stmts = append(stmts, stmt{"combined", lifecycle.StartAndFinish(wholes, w.maxMessages, moved)})
	}
	if len(plain) > 0 {
		stmts = append(stmts, stmt{"finish", lifecycle.Finish(plain, moved)})
	}

	send := func(queue ...stmt) error {
		return conn.Raw(func(dc any) error {
			ls := make([]lifecycle.Statement, len(queue))
			for i, q := range queue {
				ls[i] = q.Statement
			}
			return w.lc.Send(ctx, dc.(*stdlib.Conn).Conn(), ls...)
		})
	}
	rejected := map[string]error{}
	if atomic {
		if err := send(stmts...); err != nil {
			return err
		}
	} else {
		for _, q := range stmts {
			if err := send(q); err != nil {
				rejected[q.kind] = err
				if q.kind == "progress" || q.kind == "logs" {
					w.log.Error("progress or log lines rejected", zap.String("statement", q.kind), zap.Error(err))
				}
			}
		}
	}

	for _, c := range b.checks {
		if err := rejected["check"]; err != nil {
			c.done <- checkResult{err: fmt.Errorf("worker: check %s: %w", c.id, err)}
			continue
		}
		c.done <- checkRes[c.id]
	}
	for _, s := range b.starts {
		if err := rejected["start"]; err != nil {
			s.answer(startResult{err: fmt.Errorf("worker: start %s: %w", s.id, err)})
			continue
		}
		s.answer(startRes[s.id])
	}
	for _, f := range b.finishes {
		err := rejected["finish"]
		if f.start != nil {
			err = rejected["combined"]
		}
		if err != nil {
			f.done <- finishResult{err: fmt.Errorf("worker: finish %s: %w", f.key.id, err)}
			continue
		}
		f.done <- finishResult{applied: applied[f.key.id]}
	}
	if terminalSeen && w.onTerminal != nil {
		w.onTerminal()
	}
	return nil
}

// outcomeOf is the lifecycle's form of f.
func (f *finishOp) outcomeOf() lifecycle.Outcome {
	return lifecycle.Outcome{ID: f.key.id, Attempt: f.key.attempt, Status: f.status, At: f.ts,
		Result: f.result, ResultURL: f.resultURL, Error: f.errJSON, NextRetryAt: f.nextRetryAt, DurationMs: f.durationMs,
		Outcome: f.outcome, ErrorKind: f.errorKind, ErrorMessage: f.errorMsg, Stack: f.stack}
}

// whole is the lifecycle's form of f with its absorbed start and progress.
func (f *finishOp) whole() lifecycle.Whole {
	wh := lifecycle.Whole{Outcome: f.outcomeOf(), Worker: f.start.worker, Started: f.start.ts}
	if f.prog != nil {
		p := f.prog.of(f.key)
		wh.Progress = &p
	}
	return wh
}

// of is the lifecycle's form of attempt k's progress p.
func (p *progressState) of(k attemptKey) lifecycle.Progress {
	return lifecycle.Progress{ID: k.id, Attempt: k.attempt, Fraction: p.fraction, Step: p.step, Messages: p.msgs}
}

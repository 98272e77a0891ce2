package worker

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/event"
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
	// events receives, after each committed flush, the events of the task
	// rows it changed and of the log lines it wrote. May be nil.
	events Publisher

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

func newWriter(db *sql.DB, log *zap.Logger, interval time.Duration, maxMessages int, m *metrics, onTerminal func(), events Publisher) *writer {
	w := &writer{
		db: db, log: log, interval: interval, maxMessages: maxMessages, metrics: m, onTerminal: onTerminal, events: events,
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
func (w *writer) exec(b *batch, atomic bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := w.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()

	// Each statement queues itself on a batch; its kind tells which waiters a
	// rejected statement fails.
	type stmt struct {
		kind  string
		queue func(*pgx.Batch)
	}
	var stmts []stmt
	checkRes := map[string]checkResult{}
	startRes := map[string]startResult{}
	applied := map[string]bool{}
	callbackQueued := false // a terminal state with a callback was recorded
	var checkErr, startErr, combinedErr, finishErr, progressErr, logsErr error
	// The events of what this flush changed, published once it committed.
	var startEvs, progressEvs, combinedEvs, finishEvs []event.Event
	var plain, combined []*finishOp
	for _, f := range b.finishes {
		if f.start != nil {
			combined = append(combined, f)
		} else {
			plain = append(plain, f)
		}
	}
	scanApplied := func(evs *[]event.Event) func(rows pgx.Rows) error {
		return func(rows pgx.Rows) error {
			for rows.Next() {
				var id, status string
				var callback bool
				var version int64
				if err := rows.Scan(&id, &status, &callback, &version); err != nil {
					return err
				}
				applied[id] = true
				if callback {
					callbackQueued = true
				}
				*evs = append(*evs, event.Task(id, version, status))
			}
			return rows.Err()
		}
	}

	if len(b.checks) > 0 {
		stmts = append(stmts, stmt{"check", func(pb *pgx.Batch) {
			ids := make([]string, len(b.checks))
			for i, c := range b.checks {
				ids[i] = c.id
			}
			pb.Queue(lifecycle.CheckSQL, ids).Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var id string
					r := checkResult{found: true}
					if err := rows.Scan(&id, &r.status, &r.attempt, &r.cancelRequested, &r.due); err != nil {
						return err
					}
					checkRes[id] = r
				}
				return rows.Err()
			})
		}})
	}
	if len(b.starts) > 0 {
		stmts = append(stmts, stmt{"start", func(pb *pgx.Batch) {
			n := len(b.starts)
			ids, workers, ts, attempts := make([]string, n), make([]string, n), make([]time.Time, n), make([]int32, n)
			for i, s := range b.starts {
				ids[i], workers[i], ts[i], attempts[i] = s.id, s.worker, s.ts, int32(s.attempt)
			}
			pb.Queue(lifecycle.StartSQL, ids, workers, ts, attempts).Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var id string
					var r startResult
					var version int64
					if err := rows.Scan(&id, &r.attempt, &r.queueWaitMs, &r.cancelled, &version); err != nil {
						return err
					}
					r.started = !r.cancelled
					startRes[id] = r
					status := "running"
					if r.cancelled {
						status = "cancelled"
					}
					startEvs = append(startEvs, event.Task(id, version, status))
				}
				return rows.Err()
			})
		}})
	}
	if len(combined) > 0 {
		stmts = append(stmts, stmt{"combined", func(pb *pgx.Batch) {
			args := finishArgs(combined)
			n := len(combined)
			workers, started, fr, steps, msgs := make([]string, n), make([]time.Time, n), make([]float64, n), make([]string, n), make([]string, n)
			for i, f := range combined {
				workers[i], started[i] = f.start.worker, f.start.ts
				m := []string{}
				if f.prog != nil {
					fr[i], steps[i] = f.prog.fraction, f.prog.step
					if f.prog.msgs != nil {
						m = f.prog.msgs
					}
				}
				js, _ := json.Marshal(m)
				msgs[i] = string(js)
			}
			args = append(args, workers, started, fr, steps, msgs, w.maxMessages)
			pb.Queue(lifecycle.CombinedSQL, args...).Query(scanApplied(&combinedEvs))
		}})
	}
	if len(b.progress) > 0 {
		stmts = append(stmts, stmt{"progress", func(pb *pgx.Batch) {
			n := len(b.progress)
			ids, attempts, fr, steps, msgs := make([]string, 0, n), make([]int32, 0, n), make([]float64, 0, n), make([]string, 0, n), make([]string, 0, n)
			for k, p := range b.progress {
				m := p.msgs
				if m == nil {
					m = []string{}
				}
				js, _ := json.Marshal(m)
				ids, attempts, fr, steps, msgs = append(ids, k.id), append(attempts, int32(k.attempt)), append(fr, p.fraction), append(steps, p.step), append(msgs, string(js))
			}
			pb.Queue(lifecycle.ProgressSQL, ids, attempts, fr, steps, msgs, w.maxMessages).Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var id string
					var version int64
					if err := rows.Scan(&id, &version); err != nil {
						return err
					}
					progressEvs = append(progressEvs, event.Task(id, version, "running"))
				}
				return rows.Err()
			})
		}})
	}
	if len(b.logs) > 0 {
		stmts = append(stmts, stmt{"logs", func(pb *pgx.Batch) {
			n := len(b.logs)
			ids, attempts, ts, levels, msgs, fields := make([]string, n), make([]int32, n), make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n)
			for i, l := range b.logs {
				ids[i], attempts[i], ts[i], levels[i], msgs[i], fields[i] = l.key.id, int32(l.key.attempt), l.ts, l.level, l.msg, l.fields
			}
			pb.Queue(lifecycle.LogsSQL, ids, attempts, ts, levels, msgs, fields)
		}})
	}
	if len(plain) > 0 {
		stmts = append(stmts, stmt{"finish", func(pb *pgx.Batch) {
			pb.Queue(lifecycle.FinishSQL, finishArgs(plain)...).Query(scanApplied(&finishEvs))
		}})
	}

	run := func(queue ...stmt) error {
		return conn.Raw(func(dc any) error {
			pc := dc.(*stdlib.Conn).Conn()
			pb := &pgx.Batch{}
			for _, q := range queue {
				q.queue(pb)
			}
			return pc.SendBatch(ctx, pb).Close()
		})
	}

	if atomic {
		if err := run(stmts...); err != nil {
			return err
		}
	} else {
		for _, q := range stmts {
			err := run(q)
			if err == nil {
				continue
			}
			switch q.kind {
			case "check":
				checkErr = err
			case "start":
				startErr = err
			case "combined":
				combinedErr = err
			case "finish":
				finishErr = err
			case "progress":
				progressErr = err
				w.log.Error("progress rejected", zap.Error(err))
			default:
				logsErr = err
				w.log.Error("log lines rejected", zap.String("statement", q.kind), zap.Error(err))
			}
		}
	}

	for _, c := range b.checks {
		if checkErr != nil {
			c.done <- checkResult{err: fmt.Errorf("worker: check %s: %w", c.id, checkErr)}
			continue
		}
		c.done <- checkRes[c.id]
	}
	for _, s := range b.starts {
		if startErr != nil {
			s.answer(startResult{err: fmt.Errorf("worker: start %s: %w", s.id, startErr)})
			continue
		}
		s.answer(startRes[s.id])
	}
	for _, f := range b.finishes {
		err := finishErr
		if f.start != nil {
			err = combinedErr
		}
		if err != nil {
			f.done <- finishResult{err: fmt.Errorf("worker: finish %s: %w", f.key.id, err)}
			continue
		}
		f.done <- finishResult{applied: applied[f.key.id]}
	}
	w.publish(b, startEvs, startErr, progressEvs, progressErr, logsErr, combinedEvs, combinedErr, finishEvs, finishErr)
	if callbackQueued && w.onTerminal != nil {
		w.onTerminal()
	}
	for _, s := range startRes {
		if s.cancelled && w.onTerminal != nil {
			w.onTerminal()
			break
		}
	}
	return nil
}

// publish hands the events of a committed flush to the publisher, in the
// order of the flush's statements (starts, progress, log lines, outcomes):
// a task's last progress and log lines come before its outcome. The events of
// a statement PostgreSQL rejected are left out.
func (w *writer) publish(b *batch, starts []event.Event, startErr error, progress []event.Event, progressErr, logsErr error,
	combined []event.Event, combinedErr error, finishes []event.Event, finishErr error) {
	if w.events == nil {
		return
	}
	var evs []event.Event
	if startErr == nil {
		evs = append(evs, starts...)
	}
	if progressErr == nil {
		evs = append(evs, progress...)
	}
	if logsErr == nil {
		for _, l := range b.logs {
			evs = append(evs, event.Event{Kind: event.KindLog, TaskID: l.key.id, Log: &event.Log{
				TS: l.ts, Level: l.level, Message: l.msg, Attempt: l.key.attempt, Fields: json.RawMessage(l.fields)}})
		}
	}
	if combinedErr == nil {
		evs = append(evs, combined...)
	}
	if finishErr == nil {
		evs = append(evs, finishes...)
	}
	w.events.Publish(evs...)
}

// finishArgs are the thirteen arrays of lifecycle.FinishSQL (and the first
// thirteen of lifecycle.CombinedSQL).
func finishArgs(ops []*finishOp) []any {
	n := len(ops)
	ids, attempts, statuses, ts := make([]string, n), make([]int32, n), make([]string, n), make([]time.Time, n)
	results, resultURLs, errs, next := make([]*string, n), make([]*string, n), make([]*string, n), make([]*time.Time, n)
	durs := make([]int64, n)
	outcomes, kinds, messages, stacks := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, f := range ops {
		ids[i], attempts[i], statuses[i], ts[i] = f.key.id, int32(f.key.attempt), f.status, f.ts
		if f.result != nil {
			s := string(f.result)
			results[i] = &s
		}
		if f.resultURL != "" {
			resultURLs[i] = &f.resultURL
		}
		if f.errJSON != nil {
			s := string(f.errJSON)
			errs[i] = &s
		}
		next[i], durs[i] = f.nextRetryAt, f.durationMs
		outcomes[i], kinds[i], messages[i], stacks[i] = f.outcome, f.errorKind, f.errorMsg, f.stack
	}
	return []any{ids, attempts, statuses, ts, results, errs, next, durs, outcomes, kinds, messages, stacks, resultURLs}
}

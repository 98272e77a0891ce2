package worker

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/lifecycle"
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
	// step is true for a workflow step's task.
	step bool
	err  error
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
	// since is when the first change not yet written was made.
	since time.Time
}

// logRow is one buffered log line.
type logRow struct {
	key     attemptKey
	ts      time.Time
	level   string
	msg     string
	fields  string
	traceID string
}

// writer is the batched state writer. Transitions that a task waits for
// (start, finish) wake it at once and everything queued meanwhile rides in the
// same round trip (group commit); an attempt's lazy start, progress and log
// lines wait until they are one interval old, or ride with its outcome (see
// take). Each flush is one pgx batch:
// all statements go to PostgreSQL in one round trip and run in one implicit
// transaction, in this order: starts, progress, logs, finishes — so a task's
// last progress and logs are written before its outcome.
type writer struct {
	db       *sql.DB
	log      *zap.Logger
	interval time.Duration
	// gap is the least time between the starts of two flushes (see run).
	gap         time.Duration
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

func newWriter(db *sql.DB, lc *lifecycle.Lifecycle, log *zap.Logger, interval, gap time.Duration, maxMessages int, m *metrics, onTerminal func()) *writer {
	w := &writer{
		db: db, log: log, interval: interval, gap: gap, maxMessages: maxMessages, metrics: m, onTerminal: onTerminal, lc: lc,
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
		p = &progressState{since: time.Now()}
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

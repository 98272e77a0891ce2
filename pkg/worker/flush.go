package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/store"
)

// run flushes on every wake and every interval. Flushes start at least a gap
// apart: under load, the transitions queued while it waits ride the same
// statements (in the live-events benchmark a 5 ms gap took the batch from
// about 4 to 5.5 tasks and PostgreSQL's CPU per task down by 12-30 %); a
// writer that has not flushed for a gap, as an idle one, flushes at once.
func (w *writer) run() {
	defer close(w.stopped)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-w.urgent:
		case <-t.C:
		case <-w.stop:
			w.flush(true)
			return
		}
		if wait := time.Until(last.Add(w.gap)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-w.stop:
				w.flush(true)
				return
			}
		}
		last = time.Now()
		w.flush(false)
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

// take removes from the buffer what the next flush writes: every check,
// waited start and outcome, and what is buffered for an attempt once it is
// one interval old or its outcome is queued. An attempt's lazy start holds
// its progress and log lines with it, so that they never precede its start.
// Holding makes most short attempts one combined write of start, progress
// and outcome, and bounds a long attempt's progress writes to one per
// interval. all takes everything (the last flush).
func (w *writer) take(all bool) *batch {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	b := &batch{checks: w.checks, finishes: w.finishes, progress: map[attemptKey]*progressState{}}
	w.checks, w.finishes = nil, nil
	if all {
		b.starts, b.progress, b.logs = w.starts, w.progress, w.logs
		w.starts, w.logs = nil, nil
		w.progress = map[attemptKey]*progressState{}
	} else {
		ending := make(map[attemptKey]bool, len(b.finishes))
		for _, f := range b.finishes {
			ending[f.key] = true
		}
		ripe := func(k attemptKey, since time.Time) bool { return ending[k] || now.Sub(since) >= w.interval }
		held := map[attemptKey]bool{}
		starts := w.starts[:0]
		for _, s := range w.starts {
			k := attemptKey{s.id, s.attempt}
			if s.onResult == nil || ripe(k, s.ts) {
				b.starts = append(b.starts, s)
				continue
			}
			held[k] = true
			starts = append(starts, s)
		}
		clear(w.starts[len(starts):])
		w.starts = starts
		for k, p := range w.progress {
			if !held[k] && ripe(k, p.since) {
				b.progress[k] = p
				delete(w.progress, k)
			}
		}
		logs := w.logs[:0]
		for _, l := range w.logs {
			if !held[l.key] && ripe(l.key, l.ts) {
				b.logs = append(b.logs, l)
				continue
			}
			logs = append(logs, l)
		}
		clear(w.logs[len(logs):])
		w.logs = logs
	}
	if w.dropped > 0 {
		w.log.Warn("log lines dropped while the database was unreachable", zap.Int("lines", w.dropped))
		w.dropped = 0
	}
	return b
}

// flush writes everything queued. Connection failures are retried with
// backoff (the waiters keep waiting); a statement PostgreSQL rejects fails
// only the operations of that statement.
func (w *writer) flush(all bool) {
	b := w.take(all)
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
		// PostgreSQL away, or a lock conflict that rolled the batch back:
		// the whole batch again. Anything else: statement by statement.
		if !store.IsConnError(err) && !store.IsLockConflict(err) {
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
		more := w.take(all)
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
			checkRes[d.ID] = checkResult{found: true, status: d.Status, attempt: d.Attempt, cancelRequested: d.CancelRequested, due: d.Due, step: d.Step}
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
			lines[i] = lifecycle.LogLine{ID: l.key.id, Attempt: l.key.attempt, At: l.ts, Level: l.level, Message: l.msg, Fields: l.fields, TraceID: l.traceID}
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

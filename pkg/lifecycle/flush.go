package lifecycle

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// A Statement is one statement of a worker's flush: it queues itself on a pgx
// batch, reads its rows, and keeps the events of the changes it made until
// Send knows the batch committed.
type Statement struct {
	// locks are the ids of the task rows the statement may update.
	locks []string
	queue func(pb *pgx.Batch, evs *[]event.Event)
}

// lockSQL takes the row locks of a flush in one fixed order (by id) before
// its statements run: ORDER BY sorts before FOR UPDATE locks, so two flushes
// that touch the same rows never hold one each while waiting for the other.
const lockSQL = `SELECT id FROM tasks WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`

// Send runs stmts as one pgx batch on conn: one round trip, and one implicit
// transaction, so either all of them commit or none. The task rows they
// update are locked first, in id order (the lock order of docs/DEVELOPING.md).
// Once they committed, it publishes their changes in the statements' order (a
// task's progress and log lines before its outcome when stmts are in that
// order). A lock conflict (store.IsLockConflict) rolls the whole batch back:
// send it again.
func (l *Lifecycle) Send(ctx context.Context, conn *pgx.Conn, stmts ...Statement) error {
	pb := &pgx.Batch{}
	if ids := lockOrder(stmts); len(ids) > 0 {
		pb.Queue(lockSQL, ids)
	}
	var evs []event.Event
	for _, s := range stmts {
		s.queue(pb, &evs)
	}
	if err := conn.SendBatch(ctx, pb).Close(); err != nil {
		return err
	}
	l.Publish(evs...)
	return nil
}

// lockOrder is the sorted set of the task rows stmts may update.
func lockOrder(stmts []Statement) []string {
	var ids []string
	for _, s := range stmts {
		ids = append(ids, s.locks...)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// Due is a task row as a delivery finds it.
type Due struct {
	ID              string
	Status          tasks.Status
	Attempt         int
	CancelRequested bool
	// Due is when the task became due: the start of its queue wait.
	Due time.Time
	// Step is true for a workflow step's task.
	Step bool
}

// Check reads, for the tasks ids, whether a delivery may start them; each
// gets every row found.
func Check(ids []string, each func(Due)) Statement {
	return Statement{queue: func(pb *pgx.Batch, _ *[]event.Event) {
		pb.Queue(checkSQL, ids).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var d Due
				if err := rows.Scan(&d.ID, &d.Status, &d.Attempt, &d.CancelRequested, &d.Due, &d.Step); err != nil {
					return err
				}
				each(d)
			}
			return rows.Err()
		})
	}}
}

// Start asks to move task ID to running for Attempt (the row's attempt + 1).
type Start struct {
	ID, Worker string
	Attempt    int
	At         time.Time
}

// Started is what a start did: moved the row to running for Attempt after
// QueueWaitMs, or, when its cancel had been requested, to cancelled.
type Started struct {
	ID          string
	Attempt     int
	QueueWaitMs int64
	Cancelled   bool
}

// StartAttempts runs starts (see startSQL); each gets every row moved.
func StartAttempts(starts []Start, each func(Started)) Statement {
	n := len(starts)
	ids, workers, ts, attempts := make([]string, n), make([]string, n), make([]time.Time, n), make([]int32, n)
	for i, s := range starts {
		ids[i], workers[i], ts[i], attempts[i] = s.ID, s.Worker, s.At, int32(s.Attempt)
	}
	return Statement{locks: ids, queue: func(pb *pgx.Batch, evs *[]event.Event) {
		pb.Queue(startSQL, ids, workers, ts, attempts).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var s Started
				var version int64
				if err := rows.Scan(&s.ID, &s.Attempt, &s.QueueWaitMs, &s.Cancelled, &version); err != nil {
					return err
				}
				status := tasks.StatusRunning
				if s.Cancelled {
					status = tasks.StatusCancelled
				}
				*evs = append(*evs, event.Task(s.ID, version, status))
				each(s)
			}
			return rows.Err()
		})
	}}
}

// Progress is the latest progress of a running attempt and its new messages.
type Progress struct {
	ID       string
	Attempt  int
	Fraction float64
	Step     string
	Messages []string
}

// messagesJSON renders messages as the JSON array the statements append.
func messagesJSON(msgs []string) string {
	if msgs == nil {
		msgs = []string{}
	}
	js, _ := json.Marshal(msgs)
	return string(js)
}

// WriteProgress writes ps to rows still running their attempt, keeping the
// last maxMessages messages of each.
func WriteProgress(ps []Progress, maxMessages int) Statement {
	n := len(ps)
	ids, attempts, fr, steps, msgs := make([]string, n), make([]int32, n), make([]float64, n), make([]string, n), make([]string, n)
	for i, p := range ps {
		ids[i], attempts[i], fr[i], steps[i], msgs[i] = p.ID, int32(p.Attempt), p.Fraction, p.Step, messagesJSON(p.Messages)
	}
	return Statement{locks: ids, queue: func(pb *pgx.Batch, evs *[]event.Event) {
		pb.Queue(progressSQL, ids, attempts, fr, steps, msgs, maxMessages).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				var version int64
				if err := rows.Scan(&id, &version); err != nil {
					return err
				}
				*evs = append(*evs, event.Task(id, version, tasks.StatusRunning))
			}
			return rows.Err()
		})
	}}
}

// LogLine is one log line of an attempt; Fields is a JSON object.
type LogLine struct {
	ID      string
	Attempt int
	At      time.Time
	Level   string
	Message string
	Fields  string
	// TraceID is the trace of the attempt that wrote the line; may be empty.
	TraceID string
}

// AppendLogs writes log lines.
func AppendLogs(lines []LogLine) Statement {
	return Statement{queue: func(pb *pgx.Batch, evs *[]event.Event) {
		n := len(lines)
		ids, attempts, ts, levels, msgs, fields := make([]string, n), make([]int32, n), make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n)
		traces := make([]string, n)
		for i, l := range lines {
			ids[i], attempts[i], ts[i], levels[i], msgs[i], fields[i] = l.ID, int32(l.Attempt), l.At, l.Level, l.Message, l.Fields
			traces[i] = l.TraceID
		}
		pb.Queue(logsSQL, ids, attempts, ts, levels, msgs, fields, traces).Exec(func(pgconn.CommandTag) error {
			for _, l := range lines {
				*evs = append(*evs, event.Event{Kind: event.KindLog, TaskID: l.ID, Log: &event.Log{
					TS: l.At, Level: l.Level, Message: l.Message, Attempt: l.Attempt, Fields: json.RawMessage(l.Fields)}})
			}
			return nil
		})
	}}
}

// Outcome is how an attempt ended.
type Outcome struct {
	ID      string
	Attempt int
	// Status is the row's next state: completed, failed, cancelled or
	// retrying.
	Status tasks.Status
	At     time.Time
	// Result is the completed attempt's result (JSON), or ResultURL where
	// result storage holds it.
	Result    []byte
	ResultURL string
	// Error is the row's error document (JSON) unless completed.
	Error       []byte
	NextRetryAt *time.Time
	DurationMs  int64
	// Outcome, ErrorKind, ErrorMessage and Stack close the attempt's row.
	Outcome, ErrorKind, ErrorMessage, Stack string
}

// Moved is a task row an outcome moved; Callback says whether its completion
// callback was queued.
type Moved struct {
	ID       string
	Status   tasks.Status
	Callback bool
}

// outcomeArgs are the thirteen arrays of finishSQL (and the first thirteen of
// combinedSQL).
func outcomeArgs(os []Outcome) []any {
	n := len(os)
	ids, attempts, statuses, ts := make([]string, n), make([]int32, n), make([]string, n), make([]time.Time, n)
	results, resultURLs, errs, next := make([]*string, n), make([]*string, n), make([]*string, n), make([]*time.Time, n)
	durs := make([]int64, n)
	outcomes, kinds, messages, stacks := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, o := range os {
		ids[i], attempts[i], statuses[i], ts[i] = o.ID, int32(o.Attempt), o.Status, o.At
		if o.Result != nil {
			s := string(o.Result)
			results[i] = &s
		}
		if o.ResultURL != "" {
			resultURLs[i] = &os[i].ResultURL
		}
		if o.Error != nil {
			s := string(o.Error)
			errs[i] = &s
		}
		next[i], durs[i] = o.NextRetryAt, o.DurationMs
		outcomes[i], kinds[i], messages[i], stacks[i] = o.Outcome, o.ErrorKind, o.ErrorMessage, o.Stack
	}
	return []any{ids, attempts, statuses, ts, results, errs, next, durs, outcomes, kinds, messages, stacks, resultURLs}
}

// scanMoved reads the rows of outcomeTail.
func scanMoved(evs *[]event.Event, each func(Moved)) func(pgx.Rows) error {
	return func(rows pgx.Rows) error {
		for rows.Next() {
			var m Moved
			var version int64
			if err := rows.Scan(&m.ID, &m.Status, &m.Callback, &version); err != nil {
				return err
			}
			*evs = append(*evs, event.Task(m.ID, version, m.Status))
			each(m)
		}
		return rows.Err()
	}
}

// Finish records outcomes of started attempts (see finishSQL); each gets
// every row moved.
func Finish(outcomes []Outcome, each func(Moved)) Statement {
	args := outcomeArgs(outcomes)
	return Statement{locks: args[0].([]string), queue: func(pb *pgx.Batch, evs *[]event.Event) {
		pb.Queue(finishSQL, args...).Query(scanMoved(evs, each))
	}}
}

// Whole is an attempt that ended before its start was written: its start,
// last progress (may be nil) and outcome.
type Whole struct {
	Outcome
	Worker   string
	Started  time.Time
	Progress *Progress
}

// StartAndFinish writes wholes, each with one update of its row (see
// combinedSQL), keeping the last maxMessages messages; each gets every row
// moved.
func StartAndFinish(wholes []Whole, maxMessages int, each func(Moved)) Statement {
	n := len(wholes)
	os := make([]Outcome, n)
	workers, started, fr, steps, msgs := make([]string, n), make([]time.Time, n), make([]float64, n), make([]string, n), make([]string, n)
	for i, w := range wholes {
		os[i], workers[i], started[i], msgs[i] = w.Outcome, w.Worker, w.Started, messagesJSON(nil)
		if p := w.Progress; p != nil {
			fr[i], steps[i], msgs[i] = p.Fraction, p.Step, messagesJSON(p.Messages)
		}
	}
	args := append(outcomeArgs(os), workers, started, fr, steps, msgs, maxMessages)
	return Statement{locks: args[0].([]string), queue: func(pb *pgx.Batch, evs *[]event.Event) {
		pb.Queue(combinedSQL, args...).Query(scanMoved(evs, each))
	}}
}

// moved runs a statement of one row returning id, status and version, and
// publishes the change when there was one.
func (l *Lifecycle) moved(ctx context.Context, q string, args ...any) (bool, error) {
	var id, status string
	var version int64
	err := l.sqlDB.QueryRowContext(ctx, q, args...).Scan(&id, &status, &version)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	l.Publish(event.Task(id, version, status))
	return true, nil
}

// FailUnstarted fails task id, which no attempt started (its delivery cannot
// be run: a payload that is not an envelope, or no slot of its type before
// its timeout), with the error document errJSON, queueing its callback. ok is
// false when the row was not pending or retrying.
func (l *Lifecycle) FailUnstarted(ctx context.Context, id, errJSON string) (bool, error) {
	ok, err := l.moved(ctx, failUnstartedSQL, id, errJSON)
	if err != nil {
		return false, fmt.Errorf("lifecycle: fail task %s: %w", id, err)
	}
	return ok, nil
}

// Unrecorded records missing attempts after attempt of task id that a worker
// ran without writing their start (it was killed first) as lost, and moves
// the row's attempt count past them. ok is false when the row had moved on.
func (l *Lifecycle) Unrecorded(ctx context.Context, id string, attempt, missing int) (bool, error) {
	ok, err := l.moved(ctx, unrecordedSQL, id, attempt, missing)
	if err != nil {
		return false, fmt.Errorf("lifecycle: record lost attempts of %s: %w", id, err)
	}
	return ok, nil
}

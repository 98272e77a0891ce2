package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// terminalSQL builds the one statement that moves a task row to the terminal
// state to: a conditional UPDATE whose status list comes from tasks.From(to),
// which queues the row's completion callback (when it has a callback_url) in
// the task_callbacks outbox in the same statement, so no terminal state is
// recorded without its callback. Its placeholders are GORM's ?, in this
// order: those of set (the other assignments), the task id, the allowed
// current states (a slice, for IN), those of where (may be empty). It returns
// the updated row.
func terminalSQL(to tasks.Status, set, where string) string {
	if !tasks.IsTerminal(to) {
		panic(fmt.Sprintf("lifecycle: %q is not a terminal state", to))
	}
	if where != "" {
		where = " AND " + where
	}
	return `
WITH upd AS (
    UPDATE tasks SET status = '` + to + `', ` + set + `
    WHERE id = ? AND status IN ?` + where + `
    RETURNING *
), cb AS (
    INSERT INTO task_callbacks (task_id, url)
    SELECT id, callback_url FROM upd WHERE callback_url IS NOT NULL AND callback_url <> ''
)
SELECT * FROM upd`
}

// toTerminal runs terminalSQL on db for task id from any state in from (within
// tasks.From(to)) and returns the updated row; ok is false when the row was in
// none of them or did not match where.
func toTerminal(ctx context.Context, db *gorm.DB, id string, to tasks.Status, from []tasks.Status,
	set string, setArgs []any, where string, whereArgs ...any) (store.Task, bool, error) {
	var allowed []tasks.Status
	for _, s := range from {
		if tasks.CanTransition(s, to) {
			allowed = append(allowed, s)
		}
	}
	if len(allowed) == 0 {
		return store.Task{}, false, nil
	}
	args := append(append(append([]any{}, setArgs...), id, allowed), whereArgs...)
	return one(ctx, db, id, terminalSQL(to, set, where), args...)
}

// one runs a statement returning task rows and gives the first.
func one(ctx context.Context, db *gorm.DB, id, q string, args ...any) (store.Task, bool, error) {
	var rows []store.Task
	if err := db.WithContext(ctx).Raw(q, args...).Scan(&rows).Error; err != nil {
		return store.Task{}, false, fmt.Errorf("lifecycle: update task %s: %w", id, store.Translate(err))
	}
	if len(rows) == 0 {
		return store.Task{}, false, nil
	}
	return rows[0], true, nil
}

// retried runs a transition (one statement or one transaction) again while
// it fails with a lock conflict (store.RetryLockConflicts).
func retried(ctx context.Context, fn func() (store.Task, bool, error)) (row store.Task, ok bool, err error) {
	err = store.RetryLockConflicts(ctx, func() error {
		var e error
		row, ok, e = fn()
		return e
	})
	return row, ok, err
}

// published publishes row's change when the transition took.
func (l *Lifecycle) published(row store.Task, ok bool, err error) (store.Task, bool, error) {
	if err == nil && ok {
		l.Publish(Changed(row))
	}
	return row, ok, err
}

// Cancel cancels a task that no attempt runs: pending or retrying (the part of
// tasks.From(cancelled) without running), queueing its callback. ok is false
// when the row is in neither state (a worker started it, or it ended).
func (l *Lifecycle) Cancel(ctx context.Context, id string) (store.Task, bool, error) {
	return l.published(retried(ctx, func() (store.Task, bool, error) {
		return toTerminal(ctx, l.db, id, tasks.StatusCancelled, []tasks.Status{tasks.StatusPending, tasks.StatusRetrying},
			`cancel_requested = true, completed_at = now(), next_retry_at = NULL, updated_at = now()`, nil, "")
	}))
}

// RequestCancel marks a running task's cancel as requested (the worker stops
// its handler and records the cancel); ok is false when the row is not
// running.
func (l *Lifecycle) RequestCancel(ctx context.Context, id string) (store.Task, bool, error) {
	return l.published(retried(ctx, func() (store.Task, bool, error) {
		return one(ctx, l.db, id, `UPDATE tasks SET cancel_requested = true, updated_at = now()
WHERE id = ? AND status = '`+tasks.StatusRunning+`' RETURNING *`, id)
	}))
}

// errNotMoved rolls back a transaction whose transition did not take.
var errNotMoved = errors.New("lifecycle: not moved")

// Retry moves a failed or cancelled task (tasks.From(pending)) back to pending
// for a manual retry: a fresh retry budget (retry_base = attempt; attempt
// numbers continue), cancel_requested cleared, and the error, result and
// timings of the last run cleared. requeue runs in the same transaction with
// the moved row (it enqueues the task again); its error rolls the transition
// back and is returned. ok is false when the row was in neither state. A
// lock conflict runs the transaction again (requeue runs after the row is
// locked, so only a run that holds it calls requeue).
func (l *Lifecycle) Retry(ctx context.Context, id string, requeue func(tx *gorm.DB, row *store.Task) error) (store.Task, bool, error) {
	var moved store.Task
	err := store.RetryLockConflicts(ctx, func() error {
		return l.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			row, ok, err := one(ctx, tx, id, `
UPDATE tasks SET status = '`+tasks.StatusPending+`', retry_base = attempt, cancel_requested = false, error = NULL,
       next_retry_at = NULL, completed_at = NULL, result = NULL, result_url = NULL, duration_ms = NULL,
       progress = 0, current_step = '', worker_id = '', updated_at = now()
WHERE id = ? AND status IN ? RETURNING *`, id, tasks.From(tasks.StatusPending))
			if err != nil {
				return err
			}
			if !ok {
				return errNotMoved
			}
			moved = row
			return requeue(tx, &moved)
		})
	})
	if errors.Is(err, errNotMoved) {
		return store.Task{}, false, nil
	}
	if err != nil {
		return store.Task{}, false, err
	}
	return l.published(moved, true, nil)
}

// Loss is a running attempt whose worker is gone, as the reconciler found it.
type Loss struct {
	// Row is the task as read; the transition holds only while the row is
	// still in its status and attempt (a worker that reports meanwhile wins).
	Row store.Task
	// Error is the row's error document (JSON).
	Error string
	// Kind and Message close the attempt's row.
	Kind, Message string
	// Retry moves the row back to retrying (tasks.From(retrying)) with a
	// retry due At; otherwise it fails (terminal: its callback is queued).
	Retry bool
	At    time.Time
}

// Lose records a loss: the task row's transition and its attempt closed as
// lost, in one transaction (the task row locked before its attempt's, the
// lock order of docs/DEVELOPING.md), run again on a lock conflict. ok is
// false when the row had moved on.
func (l *Lifecycle) Lose(ctx context.Context, loss Loss) (store.Task, bool, error) {
	row, at := loss.Row, loss.At
	var moved store.Task
	err := store.RetryLockConflicts(ctx, func() error {
		return l.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			var ok bool
			var err error
			if loss.Retry {
				if !tasks.CanTransition(row.Status, tasks.StatusRetrying) {
					return errNotMoved
				}
				moved, ok, err = one(ctx, tx, row.ID, `
UPDATE tasks SET status = '`+tasks.StatusRetrying+`', error = ?::jsonb, next_retry_at = ?, worker_id = '', updated_at = ?
WHERE id = ? AND status = ? AND attempt = ? RETURNING *`, loss.Error, at, at, row.ID, row.Status, row.Attempt)
			} else {
				moved, ok, err = toTerminal(ctx, tx, row.ID, tasks.StatusFailed, []tasks.Status{row.Status},
					`error = ?::jsonb, completed_at = ?, next_retry_at = NULL, updated_at = ?`, []any{loss.Error, at, at},
					`attempt = ?`, row.Attempt)
			}
			if err != nil {
				return err
			}
			if !ok {
				return errNotMoved
			}
			return tx.Exec(`
UPDATE task_attempts SET outcome = 'lost', finished_at = ?, error_kind = ?, error_message = ?,
       duration_ms = GREATEST(0, (EXTRACT(EPOCH FROM (?::timestamptz - started_at)) * 1000)::bigint)
WHERE task_id = ? AND attempt = ? AND outcome = 'running'`, at, loss.Kind, loss.Message, at, row.ID, row.Attempt).Error
		})
	})
	if errors.Is(err, errNotMoved) {
		return store.Task{}, false, nil
	}
	if err != nil {
		return store.Task{}, false, fmt.Errorf("lifecycle: lose task %s: %w", row.ID, store.Translate(err))
	}
	return l.published(moved, true, nil)
}

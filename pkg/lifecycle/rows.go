package lifecycle

import (
	"context"
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

// Terminal runs terminalSQL on db for task id from any state in from (within
// tasks.From(to); nil means all of tasks.From(to)) and returns the updated row;
// ok is false when the row was in none of them or did not match where.
func Terminal(ctx context.Context, db *gorm.DB, id string, to tasks.Status, from []tasks.Status,
	set string, setArgs []any, where string, whereArgs ...any) (store.Task, bool, error) {
	allowed := tasks.From(to)
	if from != nil {
		allowed = nil
		for _, s := range from {
			if tasks.CanTransition(s, to) {
				allowed = append(allowed, s)
			}
		}
		if len(allowed) == 0 {
			return store.Task{}, false, nil
		}
	}
	args := append(append(append([]any{}, setArgs...), id, allowed), whereArgs...)
	var rows []store.Task
	if err := db.WithContext(ctx).Raw(terminalSQL(to, set, where), args...).Scan(&rows).Error; err != nil {
		return store.Task{}, false, fmt.Errorf("lifecycle: update task %s: %w", id, store.Translate(err))
	}
	if len(rows) == 0 {
		return store.Task{}, false, nil
	}
	return rows[0], true, nil
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

// RequestCancel marks a running task's cancel as requested (the worker stops
// its handler and records the cancel); ok is false when the row is not
// running.
func RequestCancel(ctx context.Context, db *gorm.DB, id string) (store.Task, bool, error) {
	return one(ctx, db, id, `UPDATE tasks SET cancel_requested = true, updated_at = now()
WHERE id = ? AND status = '`+tasks.StatusRunning+`' RETURNING *`, id)
}

// Retry moves a failed or cancelled task (tasks.From(pending)) back to pending
// for a manual retry: a fresh retry budget (retry_base = attempt; attempt
// numbers continue), cancel_requested cleared, and the error, result and
// timings of the last run cleared. Run it in the transaction that enqueues the
// task again.
func Retry(ctx context.Context, tx *gorm.DB, id string) (store.Task, bool, error) {
	return one(ctx, tx, id, `
UPDATE tasks SET status = '`+tasks.StatusPending+`', retry_base = attempt, cancel_requested = false, error = NULL,
       next_retry_at = NULL, completed_at = NULL, result = NULL, result_url = NULL, duration_ms = NULL,
       progress = 0, current_step = '', worker_id = '', updated_at = now()
WHERE id = ? AND status IN ? RETURNING *`, id, tasks.From(tasks.StatusPending))
}

// Lost moves a task whose worker was lost back to retrying (tasks.From(retrying))
// with errJSON as its error and a retry at now, if the row is still in the
// state and attempt it was seen in (a worker that reports meanwhile wins).
func Lost(ctx context.Context, db *gorm.DB, row store.Task, errJSON string, now time.Time) (store.Task, bool, error) {
	if !tasks.CanTransition(row.Status, tasks.StatusRetrying) {
		return store.Task{}, false, nil
	}
	return one(ctx, db, row.ID, `
UPDATE tasks SET status = '`+tasks.StatusRetrying+`', error = ?::jsonb, next_retry_at = ?, worker_id = '', updated_at = ?
WHERE id = ? AND status = ? AND attempt = ? RETURNING *`, errJSON, now, now, row.ID, row.Status, row.Attempt)
}

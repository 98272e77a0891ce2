package taskservice

import (
	"context"
	"fmt"

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
		panic(fmt.Sprintf("taskservice: %q is not a terminal state", to))
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
		return store.Task{}, false, translate("update task "+id, err)
	}
	if len(rows) == 0 {
		return store.Task{}, false, nil
	}
	return rows[0], true, nil
}

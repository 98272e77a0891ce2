// Package lifecycletest runs the worker's lifecycle statements in tests that
// race them against the task service and the reconciler.
package lifecycletest

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// RunAttempt runs attempt 1 of task id with the worker's production
// statements (lifecycle.StartSQL, then lifecycle.FinishSQL with outcome, which
// is completed or failed), as one flush of the worker's writer does; it does
// nothing more when the start is refused or turns into the cancel.
func RunAttempt(ctx context.Context, conn *pgx.Conn, id string, outcome tasks.Status) error {
	now := time.Now().UTC()
	rows, err := conn.Query(ctx, lifecycle.StartSQL, []string{id}, []string{"w1"}, []time.Time{now}, []int32{1})
	if err != nil {
		return err
	}
	started := false
	for rows.Next() {
		var rid string
		var attempt int32
		var wait, version int64
		var cancelled bool
		if err := rows.Scan(&rid, &attempt, &wait, &cancelled, &version); err != nil {
			return err
		}
		started = !cancelled
	}
	if err := rows.Err(); err != nil || !started {
		return err
	}
	var errJSON *string
	var result *string
	if outcome == tasks.StatusCompleted {
		r := `{"ok":true}`
		result = &r
	} else {
		e := `{"message":"boom","kind":"error","attempt":1}`
		errJSON = &e
	}
	end := time.Now().UTC()
	frows, err := conn.Query(ctx, lifecycle.FinishSQL,
		[]string{id}, []int32{1}, []string{outcome}, []time.Time{end}, []*string{result}, []*string{errJSON},
		[]*time.Time{nil}, []int64{1}, []string{outcome}, []string{""}, []string{""}, []string{""}, []*string{nil})
	if err != nil {
		return err
	}
	frows.Close()
	return frows.Err()
}

package lifecycle_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/lifecycle/lifecycletest"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestStatementsTakeTheirStatesFromTheStateMachine: the lists a conditional
// update allows are tasks.From's, so a change of the state machine changes the
// production statements.
func TestStatementsTakeTheirStatesFromTheStateMachine(t *testing.T) {
	t.Parallel()
	list := func(states []tasks.Status) string {
		q := make([]string, len(states))
		for i, s := range states {
			q[i] = "'" + s + "'"
		}
		return "status IN (" + strings.Join(q, ", ") + ")"
	}
	require.Contains(t, lifecycle.StartSQL, list(tasks.From(tasks.StatusRunning)))
	require.Contains(t, lifecycle.StartSQL, list(tasks.From(tasks.StatusCancelled)))
	require.Contains(t, lifecycle.CombinedSQL, list(tasks.From(tasks.StatusRunning)))
	require.Contains(t, lifecycle.UnrecordedSQL, list(tasks.From(tasks.StatusRunning)))
	require.Contains(t, lifecycle.FailUnstartedSQL, "status IN ('pending', 'retrying')")
	require.Contains(t, lifecycle.FinishSQL, "'completed', 'failed', 'cancelled'")
}

func insert(t *testing.T, pg testenv.Postgres, id string) {
	t.Helper()
	require.NoError(t, pg.DB.Exec(`INSERT INTO tasks (id, type, status, priority, max_retries, retry_policy, timeout_seconds, callback_url)
VALUES (?, 'refresh_portfolio', 'pending', 'normal', 3, '{}', 60, 'http://127.0.0.1:1/hook')`, id).Error)
}

// TestProductionStatementsRaceToOneWholeEnd runs the production statements
// against each other on the same rows: the worker's start and finish, the
// task service's cancel (Terminal from pending, RequestCancel when running)
// and the reconciler's lost repair. Every row ends in one consistent state: a
// terminal row has completed_at and exactly one queued callback, a row that
// is not terminal has none, and a terminal row never moves again.
func TestProductionStatementsRaceToOneWholeEnd(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := context.Background()
	const n = 16
	for i := range n {
		id := fmt.Sprintf("task_race_%02d", i)
		insert(t, pg, id)
		outcome := tasks.StatusCompleted
		if i%3 == 0 {
			outcome = tasks.StatusFailed
		}
		conn, err := pgx.Connect(ctx, pg.URL)
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		wg.Add(3)
		go func() {
			defer wg.Done()
			errs <- lifecycletest.RunAttempt(ctx, conn, id, outcome)
		}()
		go func() {
			defer wg.Done()
			if _, ok, err := lifecycle.Terminal(ctx, pg.DB, id, tasks.StatusCancelled,
				[]tasks.Status{tasks.StatusPending, tasks.StatusRetrying},
				`cancel_requested = true, completed_at = now(), next_retry_at = NULL, updated_at = now()`, nil, ""); err != nil || ok {
				errs <- err
				return
			}
			_, _, err := lifecycle.RequestCancel(ctx, pg.DB, id)
			errs <- err
		}()
		go func() {
			defer wg.Done()
			var row store.Task
			if err := pg.DB.Take(&row, "id = ?", id).Error; err != nil {
				errs <- err
				return
			}
			_, _, err := lifecycle.Lost(ctx, pg.DB, row, `{"message":"task lost","kind":"lost"}`, time.Now().UTC())
			errs <- err
		}()
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.NoError(t, conn.Close(ctx))

		var row store.Task
		require.NoError(t, pg.DB.Take(&row, "id = ?", id).Error)
		var callbacks int64
		require.NoError(t, pg.DB.Table("task_callbacks").Where("task_id = ?", id).Count(&callbacks).Error)
		if tasks.IsTerminal(row.Status) {
			require.NotNil(t, row.CompletedAt, "%s %s", id, row.Status)
			require.EqualValues(t, 1, callbacks, "%s: a terminal state queues its callback once", id)
			// Nothing moves it again: the same statements, once more.
			before := row
			conn, err := pgx.Connect(ctx, pg.URL)
			require.NoError(t, err)
			require.NoError(t, lifecycletest.RunAttempt(ctx, conn, id, tasks.StatusCompleted))
			require.NoError(t, conn.Close(ctx))
			_, ok, err := lifecycle.Terminal(ctx, pg.DB, id, tasks.StatusCancelled, nil, `updated_at = now()`, nil, "")
			require.NoError(t, err)
			require.False(t, ok, "a terminal task is not cancelled")
			_, ok, err = lifecycle.Lost(ctx, pg.DB, row, `{}`, time.Now().UTC())
			require.NoError(t, err)
			require.False(t, ok)
			var after store.Task
			require.NoError(t, pg.DB.Take(&after, "id = ?", id).Error)
			require.Equal(t, before.Status, after.Status)
			require.Equal(t, before.Attempt, after.Attempt)
		} else {
			require.Nil(t, row.CompletedAt, "%s %s", id, row.Status)
			require.Zero(t, callbacks, "%s: no callback before the end", id)
			require.Contains(t, []tasks.Status{tasks.StatusRunning, tasks.StatusRetrying}, row.Status)
		}
		if row.Status == tasks.StatusCompleted {
			require.JSONEq(t, `{"ok":true}`, string(row.Result))
		}
		var e map[string]any
		if row.Status == tasks.StatusRetrying {
			require.NoError(t, json.Unmarshal(row.Error, &e))
			require.Equal(t, "lost", e["kind"], "retrying only through the reconciler's repair")
		}
	}
}

// TestRetryAfterTheEnd: a manual retry takes a failed or cancelled task back
// to pending once, with a fresh budget; other states refuse it.
func TestRetryAfterTheEnd(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := context.Background()
	insert(t, pg, "task_r")
	_, ok, err := lifecycle.Retry(ctx, pg.DB, "task_r")
	require.NoError(t, err)
	require.False(t, ok, "a pending task is not retried")
	require.NoError(t, pg.DB.Exec(`UPDATE tasks SET status = 'failed', attempt = 4, completed_at = now() WHERE id = 'task_r'`).Error)
	row, ok, err := lifecycle.Retry(ctx, pg.DB, "task_r")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, tasks.StatusPending, row.Status)
	require.Equal(t, 4, row.RetryBase)
	require.Nil(t, row.CompletedAt)
	_, ok, err = lifecycle.Retry(ctx, pg.DB, "task_r")
	require.NoError(t, err)
	require.False(t, ok, "only once")
}

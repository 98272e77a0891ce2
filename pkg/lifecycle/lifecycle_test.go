package lifecycle_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/lifecycle/lifecycletest"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/testenv"
)

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
	lc := newLifecycle(t, pg, nil)
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
			errs <- lifecycletest.RunAttempt(ctx, lc, conn, id, outcome)
		}()
		go func() {
			defer wg.Done()
			if _, ok, err := lc.Cancel(ctx, id); err != nil || ok {
				errs <- err
				return
			}
			_, _, err := lc.RequestCancel(ctx, id)
			errs <- err
		}()
		go func() {
			defer wg.Done()
			var row store.Task
			if err := pg.DB.Take(&row, "id = ?", id).Error; err != nil {
				errs <- err
				return
			}
			_, _, err := lc.Lose(ctx, lifecycle.Loss{Row: row, Error: `{"message":"task lost","kind":"lost"}`,
				Kind: "lost", Message: "task lost", Retry: true, At: time.Now().UTC()})
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
			require.NoError(t, lifecycletest.RunAttempt(ctx, lc, conn, id, tasks.StatusCompleted))
			require.NoError(t, conn.Close(ctx))
			_, ok, err := lc.Cancel(ctx, id)
			require.NoError(t, err)
			require.False(t, ok, "a terminal task is not cancelled")
			_, ok, err = lc.Lose(ctx, lifecycle.Loss{Row: row, Error: `{}`, Kind: "lost", Retry: true, At: time.Now().UTC()})
			require.NoError(t, err)
			require.False(t, ok)
			_, ok, err = lc.Lose(ctx, lifecycle.Loss{Row: row, Error: `{}`, Kind: "lost", At: time.Now().UTC()})
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
	pub := &lifecycletest.Recorder{}
	lc := newLifecycle(t, pg, pub)
	insert(t, pg, "task_r")
	requeued := 0
	requeue := func(tx *gorm.DB, row *store.Task) error {
		requeued++
		return nil
	}
	_, ok, err := lc.Retry(ctx, "task_r", requeue)
	require.NoError(t, err)
	require.False(t, ok, "a pending task is not retried")
	require.NoError(t, pg.DB.Exec(`UPDATE tasks SET status = 'failed', attempt = 4, completed_at = now() WHERE id = 'task_r'`).Error)

	// A requeue that fails rolls the transition back, and nothing is published.
	_, ok, err = lc.Retry(ctx, "task_r", func(*gorm.DB, *store.Task) error { return errors.New("redis away") })
	require.EqualError(t, err, "redis away")
	require.False(t, ok)
	var still store.Task
	require.NoError(t, pg.DB.Take(&still, "id = ?", "task_r").Error)
	require.Equal(t, tasks.StatusFailed, still.Status)
	require.Empty(t, pub.Events(""))

	row, ok, err := lc.Retry(ctx, "task_r", requeue)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, tasks.StatusPending, row.Status)
	require.Equal(t, 4, row.RetryBase)
	require.Nil(t, row.CompletedAt)
	require.Equal(t, []event.Event{event.Task("task_r", row.Version, tasks.StatusPending)}, pub.Events(""))
	_, ok, err = lc.Retry(ctx, "task_r", requeue)
	require.NoError(t, err)
	require.False(t, ok, "only once")
	require.Equal(t, 1, requeued)
}

func newLifecycle(t *testing.T, pg testenv.Postgres, events lifecycle.Publisher) *lifecycle.Lifecycle {
	t.Helper()
	lc, err := lifecycle.New(pg.DB, events)
	require.NoError(t, err)
	return lc
}

func version(t *testing.T, pg testenv.Postgres, id string) int64 {
	t.Helper()
	var row store.Task
	require.NoError(t, pg.DB.Take(&row, "id = ?", id).Error)
	return row.Version
}

// TestTransitionsPublishWhatCommitted: every transition publishes the change
// it committed, with the row's new version, and a transition that did not
// take (or a flush that rolled back) publishes nothing.
func TestTransitionsPublishWhatCommitted(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	pub := &lifecycletest.Recorder{}
	lc := newLifecycle(t, pg, pub)
	ctx := context.Background()

	insert(t, pg, "task_pc")
	row, ok, err := lc.Cancel(ctx, "task_pc")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, []event.Event{event.Task("task_pc", version(t, pg, "task_pc"), tasks.StatusCancelled)}, pub.Events(""))
	require.Equal(t, version(t, pg, "task_pc"), row.Version)
	pub.Reset()
	_, ok, err = lc.Cancel(ctx, "task_pc")
	require.NoError(t, err)
	require.False(t, ok)
	_, ok, err = lc.RequestCancel(ctx, "task_pc")
	require.NoError(t, err)
	require.False(t, ok)
	require.Empty(t, pub.Events(""), "no change, no event")

	conn, err := pgx.Connect(ctx, pg.URL)
	require.NoError(t, err)
	defer conn.Close(ctx)

	// A flush publishes its changes in its statements' order once it
	// committed: the start, the log line, the outcome.
	insert(t, pg, "task_run")
	require.NoError(t, lc.Send(ctx, conn, lifecycle.StartAttempts([]lifecycle.Start{{ID: "task_run", Worker: "w", Attempt: 1, At: time.Now()}},
		func(lifecycle.Started) {})))
	started := version(t, pg, "task_run")
	at := time.Now().UTC().Truncate(time.Microsecond)
	var moved []lifecycle.Moved
	require.NoError(t, lc.Send(ctx, conn,
		lifecycle.AppendLogs([]lifecycle.LogLine{{ID: "task_run", Attempt: 1, At: at, Level: "info", Message: "done", Fields: `{}`}}),
		lifecycle.Finish([]lifecycle.Outcome{{ID: "task_run", Attempt: 1, Status: tasks.StatusCompleted, At: at, Result: []byte(`{}`), Outcome: "completed"}},
			func(m lifecycle.Moved) { moved = append(moved, m) })))
	require.Equal(t, []lifecycle.Moved{{ID: "task_run", Status: tasks.StatusCompleted, Callback: true}}, moved)
	evs := pub.Events("")
	require.Len(t, evs, 3)
	require.Equal(t, event.Task("task_run", started, tasks.StatusRunning), evs[0])
	require.Equal(t, event.KindLog, evs[1].Kind)
	require.Equal(t, "done", evs[1].Log.Message)
	require.Equal(t, event.Task("task_run", version(t, pg, "task_run"), tasks.StatusCompleted), evs[2])
	pub.Reset()

	// A flush PostgreSQL rejects (a log line whose fields are not JSON) rolls
	// back whole: the start it carried is not published, nor written.
	insert(t, pg, "task_rb")
	err = lc.Send(ctx, conn,
		lifecycle.StartAttempts([]lifecycle.Start{{ID: "task_rb", Worker: "w", Attempt: 1, At: time.Now()}}, func(lifecycle.Started) {}),
		lifecycle.AppendLogs([]lifecycle.LogLine{{ID: "task_rb", Attempt: 1, At: at, Level: "info", Message: "x", Fields: `not json`}}))
	require.Error(t, err)
	require.Empty(t, pub.Events(""))
	var rb store.Task
	require.NoError(t, pg.DB.Take(&rb, "id = ?", "task_rb").Error)
	require.Equal(t, tasks.StatusPending, rb.Status)

	// The worker's single-row transitions.
	ok, err = lc.Unrecorded(ctx, "task_rb", 0, 2)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, []event.Event{event.Task("task_rb", version(t, pg, "task_rb"), tasks.StatusPending)}, pub.Events(""))
	pub.Reset()
	ok, err = lc.Unrecorded(ctx, "task_rb", 0, 2)
	require.NoError(t, err)
	require.False(t, ok, "the row moved past attempt 0")
	ok, err = lc.FailUnstarted(ctx, "task_rb", `{"message":"unreadable","kind":"payload"}`)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, []event.Event{event.Task("task_rb", version(t, pg, "task_rb"), tasks.StatusFailed)}, pub.Events(""))
	pub.Reset()
	ok, err = lc.FailUnstarted(ctx, "task_rb", `{}`)
	require.NoError(t, err)
	require.False(t, ok)
	require.Empty(t, pub.Events(""))

	// The reconciler's loss: the row and its attempt in one transaction.
	insert(t, pg, "task_lost")
	require.NoError(t, lc.Send(ctx, conn, lifecycle.StartAttempts([]lifecycle.Start{{ID: "task_lost", Worker: "w", Attempt: 1, At: time.Now()}},
		func(lifecycle.Started) {})))
	pub.Reset()
	var lostRow store.Task
	require.NoError(t, pg.DB.Take(&lostRow, "id = ?", "task_lost").Error)
	got, ok, err := lc.Lose(ctx, lifecycle.Loss{Row: lostRow, Error: `{"kind":"lost"}`, Kind: "lost", Message: "worker gone", At: time.Now()})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, tasks.StatusFailed, got.Status)
	require.Equal(t, []event.Event{event.Task("task_lost", got.Version, tasks.StatusFailed)}, pub.Events(""))
	var outcome, msg string
	require.NoError(t, pg.DB.Raw(`SELECT outcome, error_message FROM task_attempts WHERE task_id = 'task_lost' AND attempt = 1`).Row().Scan(&outcome, &msg))
	require.Equal(t, "lost", outcome)
	require.Equal(t, "worker gone", msg)
}

// TestConflictingFlushesNeverDeadlock: two flushes that update the same rows
// in opposite orders, over and over at once, both commit every time: a flush
// locks its rows in id order before its statements run. (Without it,
// PostgreSQL breaks the deadlock by failing one of them.)
func TestConflictingFlushesNeverDeadlock(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	lc := newLifecycle(t, pg, nil)
	ctx := context.Background()
	const n = 60
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("task_dl_%03d", i)
		insert(t, pg, ids[i])
		require.NoError(t, lifecycletest.Force(pg.DB, ids[i], `status = 'running', attempt = 1`))
	}
	flush := func(order []string, round int) []lifecycle.Statement {
		stmts := make([]lifecycle.Statement, len(order))
		for i, id := range order {
			stmts[i] = lifecycle.WriteProgress([]lifecycle.Progress{{ID: id, Attempt: 1, Fraction: 0.5,
				Step: fmt.Sprintf("round %d", round)}}, 10)
		}
		return stmts
	}
	reversed := slices.Clone(ids)
	slices.Reverse(reversed)
	var wg sync.WaitGroup
	errs := make(chan error, 2*10)
	for _, order := range [][]string{ids, reversed} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, pg.URL)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			for round := range 10 {
				errs <- lc.Send(ctx, conn, flush(order, round)...)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

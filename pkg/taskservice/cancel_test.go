package taskservice_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/lifecycle/lifecycletest"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

var (
	owner = auth.Principal{ID: "u1", Role: auth.Operator}
	admin = auth.Principal{ID: "root", Role: auth.Admin}
)

// TestCancelRacesWorker runs Cancel against the worker's production start and
// finish statements: every run ends in exactly one terminal state, and the
// outcome Cancel reports agrees with it.
func TestCancelRacesWorker(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for range 30 {
		c, err := b.svc.Create(ctx, taskservice.CreateRequest{Type: "refresh_all_prices", CreatedBy: owner.ID})
		require.NoError(t, err)
		id := c.Task.ID

		var (
			wg      sync.WaitGroup
			res     taskservice.CancelResult
			cerr    error
			werr    error
			started bool
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			res, cerr = b.svc.Cancel(ctx, owner, id)
		}()
		go func() {
			defer wg.Done()
			// The worker's own statements: start, then complete.
			conn, err := pgx.Connect(ctx, b.pg.URL)
			if err != nil {
				werr = err
				return
			}
			defer conn.Close(ctx)
			lc, err := lifecycle.New(b.pg.DB, nil)
			if err != nil {
				werr = err
				return
			}
			if werr = lifecycletest.RunAttempt(ctx, lc, conn, id, tasks.StatusCompleted); werr != nil {
				return
			}
			var st string
			_ = conn.QueryRow(ctx, `SELECT status FROM tasks WHERE id = $1`, id).Scan(&st)
			started = st == tasks.StatusCompleted
		}()
		wg.Wait()
		require.NoError(t, werr, "the worker's statements")

		var row store.Task
		require.NoError(t, b.pg.DB.Take(&row, "id = ?", id).Error)
		require.True(t, tasks.IsTerminal(row.Status), "ends terminal, got %s", row.Status)
		switch {
		case started:
			require.Equal(t, tasks.StatusCompleted, row.Status)
			require.True(t, cerr == nil && res.Requested || errors.Is(cerr, taskservice.ErrConflict),
				"cancel of a task the worker ran: 202 or 409, got %+v %v", res, cerr)
		default:
			require.NoError(t, cerr)
			require.False(t, res.Requested)
			require.Equal(t, tasks.StatusCancelled, row.Status)
			require.True(t, row.CancelRequested)
		}
	}
}

func TestCancelAndRetryChecks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	c, err := b.svc.Create(ctx, taskservice.CreateRequest{Type: "refresh_all_prices", CreatedBy: owner.ID})
	require.NoError(t, err)
	id := c.Task.ID

	_, err = b.svc.Cancel(ctx, auth.Principal{ID: "u2", Role: auth.Operator}, id)
	require.ErrorIs(t, err, taskservice.ErrNotFound, "another caller's task is not found")
	_, err = b.svc.Cancel(ctx, auth.Principal{ID: owner.ID, Role: auth.Viewer}, id)
	require.ErrorIs(t, err, taskservice.ErrForbidden)
	_, err = b.svc.Cancel(ctx, auth.Principal{Role: auth.Operator}, id)
	require.ErrorIs(t, err, taskservice.ErrNotFound, "a principal without id sees nothing")
	_, err = b.svc.Retry(ctx, owner, id)
	require.ErrorIs(t, err, taskservice.ErrConflict, "a pending task is not retried")

	r, err := b.svc.Cancel(ctx, admin, id)
	require.NoError(t, err)
	require.Equal(t, tasks.StatusCancelled, r.Task.Status)
	_, err = b.svc.Cancel(ctx, admin, id)
	require.ErrorIs(t, err, taskservice.ErrConflict)

	row, err := b.svc.Retry(ctx, owner, id)
	require.NoError(t, err)
	require.Equal(t, tasks.StatusPending, row.Status)
	info, err := b.inspector.GetTaskInfo("normal", id)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, info.State)
	env, err := tasks.DecodeEnvelope(info.Payload)
	require.NoError(t, err)
	require.Equal(t, id, env.GetTaskId())
}

func TestRetryWhenRedisIsDownKeepsState(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	c, err := b.svc.Create(ctx, taskservice.CreateRequest{Type: "refresh_all_prices", CreatedBy: owner.ID})
	require.NoError(t, err)
	require.NoError(t, lifecycletest.Force(b.pg.DB, c.Task.ID, `status = 'failed', attempt = 4, error = '{"message":"x"}'`))

	// The same database, a Redis that is not there.
	down := asynq.RedisClientOpt{Addr: "127.0.0.1:1"}
	client, insp := asynq.NewClient(down), asynq.NewInspector(down)
	t.Cleanup(func() { _ = client.Close(); _ = insp.Close() })
	svc, err := taskservice.New(b.pg.DB, client, insp, zap.NewNop(), taskservice.Options{})
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	_, err = svc.Retry(ctx, owner, c.Task.ID)
	require.ErrorIs(t, err, taskservice.ErrUnavailable)
	var row store.Task
	require.NoError(t, b.pg.DB.Take(&row, "id = ?", c.Task.ID).Error)
	require.Equal(t, tasks.StatusFailed, row.Status, "the row keeps its state")
	require.Zero(t, row.RetryBase)
}

func TestRedactParams(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, typ, in, want string
	}{
		{"secret field", "webhook_callback", `{"url":"https://x.example","secret":"s3"}`, `{"url":"https://x.example","secret":"***"}`},
		{"json name", "webhook_callback", `{"secret":"s3"}`, `{"secret":"***"}`},
		{"no secrets", "refresh_portfolio", `{"portfolio_id":"p"}`, `{"portfolio_id":"p"}`},
		{"unknown type", "nope", `{"secret":"s3"}`, `{}`},
		{"unparsable", "webhook_callback", `"secret"`, `{}`},
		{"empty", "webhook_callback", ``, `{}`},
	}
	// Twice: the second answers come from RedactParams' memory, where the
	// same params of two types ("json name", "unknown type") stay apart.
	for pass := range 2 {
		for _, tc := range cases {
			got := taskservice.RedactParams(tc.typ, store.JSON(tc.in))
			require.JSONEq(t, tc.want, string(got), "%s (pass %d)", tc.name, pass)
			require.True(t, json.Valid(got))
		}
	}
}

// TestCancelOfPendingTaskQueuesItsCallback: cancelling a pending task is a
// terminal transition, so its completion callback is queued in the outbox by
// the same statement; a task without a callback_url queues none.
func TestCancelOfPendingTaskQueuesItsCallback(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	with, err := b.svc.Create(ctx, taskservice.CreateRequest{Type: "refresh_all_prices", CreatedBy: owner.ID,
		CallbackURL: "https://receiver.example.com/taskforge"})
	require.NoError(t, err)
	without, err := b.svc.Create(ctx, taskservice.CreateRequest{Type: "refresh_all_prices", CreatedBy: owner.ID})
	require.NoError(t, err)
	for _, id := range []string{with.Task.ID, without.Task.ID} {
		r, err := b.svc.Cancel(ctx, owner, id)
		require.NoError(t, err)
		require.Equal(t, tasks.StatusCancelled, r.Task.Status)
		require.False(t, r.Requested)
	}
	count := func(id string) (n int64) {
		require.NoError(t, b.pg.DB.Model(&store.TaskCallback{}).Where("task_id = ?", id).Count(&n).Error)
		return n
	}
	require.EqualValues(t, 1, count(with.Task.ID))
	var cb store.TaskCallback
	require.NoError(t, b.pg.DB.Take(&cb, "task_id = ?", with.Task.ID).Error)
	require.Equal(t, "https://receiver.example.com/taskforge", cb.URL)
	require.Zero(t, count(without.Task.ID))
}

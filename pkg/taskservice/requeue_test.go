package taskservice_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

func TestRequeue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	c, err := b.svc.Create(ctx, taskservice.CreateRequest{
		Type: "refresh_portfolio", Params: json.RawMessage(`{"portfolio_id":"pf_1"}`), Priority: "high", CreatedBy: "u1",
	})
	require.NoError(t, err)
	row := c.Task
	require.NoError(t, b.inspector.DeleteTask("high", row.ID))

	// Lost from Redis: enqueued again under the same id, with the full budget.
	require.NoError(t, b.svc.Requeue(ctx, row))
	info, err := b.inspector.GetTaskInfo("high", row.ID)
	require.NoError(t, err)
	require.Equal(t, 3, info.MaxRetry)
	env, err := tasks.DecodeEnvelope(info.Payload)
	require.NoError(t, err)
	require.Equal(t, row.ID, env.GetTaskId())
	// Already queued: nothing changes, no error, no duplicate.
	require.NoError(t, b.svc.Requeue(ctx, row))
	pending, err := b.inspector.ListPendingTasks("high")
	require.NoError(t, err)
	require.Len(t, pending, 1)

	// A retrying task keeps its retry time and gets what is left of its budget.
	require.NoError(t, b.inspector.DeleteTask("high", row.ID))
	next := time.Now().Add(time.Hour).UTC()
	retrying := row
	retrying.Status, retrying.Attempt, retrying.NextRetryAt = tasks.StatusRetrying, 2, &next
	require.Equal(t, 2, taskservice.AttemptsLeft(retrying))
	require.NoError(t, b.svc.Requeue(ctx, retrying))
	info, err = b.inspector.GetTaskInfo("high", row.ID)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateScheduled, info.State)
	require.Equal(t, 1, info.MaxRetry)
	require.WithinDuration(t, next, info.NextProcessAt, time.Second)
}

func TestRequeueRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	base := store.Task{ID: taskservice.NewID(), Type: "refresh_all_prices", Priority: "normal", Params: store.JSON(`{}`),
		MaxRetries: 3, RetryPolicy: store.JSON(`{"max_retries":3}`), TimeoutSeconds: 60}
	cases := []struct {
		name   string
		change func(*store.Task)
		want   error
	}{
		{"running", func(r *store.Task) { r.Status = tasks.StatusRunning }, taskservice.ErrConflict},
		{"completed", func(r *store.Task) { r.Status = tasks.StatusCompleted }, taskservice.ErrConflict},
		{"budget spent", func(r *store.Task) { r.Status, r.Attempt = tasks.StatusRetrying, 4 }, taskservice.ErrNoBudget},
		{"budget spent since a manual retry", func(r *store.Task) { r.Status, r.Attempt, r.RetryBase = tasks.StatusPending, 9, 5 }, taskservice.ErrNoBudget},
	}
	for _, tc := range cases {
		row := base
		tc.change(&row)
		require.ErrorIs(t, b.svc.Requeue(context.Background(), row), tc.want, tc.name)
	}
	_, err := b.inspector.GetTaskInfo("normal", base.ID)
	require.Error(t, err, "nothing was enqueued")
}

// TestTheCreatingRequestTravelsWithEveryDelivery: the id of the request that
// created a task is kept with the row, and the first delivery, a reconciler's
// requeue and a manual retry all carry it to the worker.
func TestTheCreatingRequestTravelsWithEveryDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	c, err := b.svc.Create(ctx, taskservice.CreateRequest{
		Type: "refresh_portfolio", Params: json.RawMessage(`{"portfolio_id":"pf_1"}`), Priority: "high", CreatedBy: "u1",
		RequestID: "req-created-it",
	})
	require.NoError(t, err)
	headerOf := func() string {
		t.Helper()
		info, err := b.inspector.GetTaskInfo("high", c.Task.ID)
		require.NoError(t, err)
		return info.Headers["request_id"]
	}
	var row store.Task
	require.NoError(t, b.pg.DB.Take(&row, "id = ?", c.Task.ID).Error)
	require.Equal(t, "req-created-it", row.RequestID)
	require.Equal(t, "req-created-it", headerOf(), "the first delivery")

	require.NoError(t, b.inspector.DeleteTask("high", row.ID))
	require.NoError(t, b.svc.Requeue(ctx, row))
	require.Equal(t, "req-created-it", headerOf(), "a requeue")

	require.NoError(t, b.inspector.DeleteTask("high", row.ID))
	require.NoError(t, b.pg.DB.Exec(`UPDATE tasks SET status = 'failed', completed_at = now() WHERE id = ?`, row.ID).Error)
	_, err = b.svc.Retry(ctx, auth.Principal{ID: "u1", Role: auth.Operator}, row.ID)
	require.NoError(t, err)
	require.Equal(t, "req-created-it", headerOf(), "a manual retry")
}

package taskservice_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/taskservice/taskservicetest"
	"github.com/taskforge/taskforge/pkg/testenv"
)

type testBundle struct {
	svc       *taskservice.Service
	pg        testenv.Postgres
	rd        testenv.Redis
	inspector *asynq.Inspector
}

func setup(t *testing.T) testBundle {
	t.Helper()
	e := taskservicetest.New(t)
	return testBundle{svc: e.Service, pg: e.PG, rd: e.RD, inspector: e.Inspector}
}

func TestCreateWritesRowAndEnqueues(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	timeout := 42
	c, err := b.svc.Create(ctx, taskservice.CreateRequest{
		Type: "refresh_portfolio", Params: json.RawMessage(`{"portfolio_id":"pf_1"}`),
		Priority: "high", TimeoutSeconds: &timeout, CreatedBy: "u1",
	})
	require.NoError(t, err)
	require.False(t, c.Existing)
	require.Regexp(t, `^task_[0-9a-z]{26}$`, c.Task.ID)
	require.Equal(t, "pending", c.Task.Status)
	require.Equal(t, 10, c.Task.EstimatedDuration, "the type's default before any run")

	var row store.Task
	require.NoError(t, b.pg.DB.Take(&row, "id = ?", c.Task.ID).Error)
	require.Equal(t, "high", row.Priority)
	require.Equal(t, 3, row.MaxRetries)
	require.JSONEq(t, `{"portfolio_id":"pf_1"}`, string(row.Params))

	info, err := b.inspector.GetTaskInfo("high", c.Task.ID)
	require.NoError(t, err)
	require.Equal(t, "refresh_portfolio", info.Type)
	require.Equal(t, 3, info.MaxRetry)
	require.Equal(t, 42*time.Second, info.Timeout)
	require.Equal(t, asynq.TaskStatePending, info.State)
	env, err := tasks.DecodeEnvelope(info.Payload)
	require.NoError(t, err)
	require.Equal(t, c.Task.ID, env.GetTaskId())
}

func TestCreateScheduledForLater(t *testing.T) {
	t.Parallel()
	b := setup(t)
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	c, err := b.svc.Create(context.Background(), taskservice.CreateRequest{
		Type: "refresh_all_prices", ScheduledFor: &at, CreatedBy: "u1",
	})
	require.NoError(t, err)
	require.True(t, c.Task.ScheduledFor.Equal(at))
	info, err := b.inspector.GetTaskInfo("normal", c.Task.ID)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateScheduled, info.State)
	require.WithinDuration(t, at, info.NextProcessAt, time.Second)
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	zero := 0
	cases := []struct {
		name  string
		req   taskservice.CreateRequest
		field string
	}{
		{"no type", taskservice.CreateRequest{}, "type"},
		{"unknown type", taskservice.CreateRequest{Type: "mine_bitcoin"}, "type"},
		{"bad params", taskservice.CreateRequest{Type: "refresh_portfolio", Params: json.RawMessage(`{}`)}, "params.portfolio_id"},
		{"bad priority", taskservice.CreateRequest{Type: "refresh_all_prices", Priority: "urgent"}, "priority"},
		{"bad timeout", taskservice.CreateRequest{Type: "refresh_all_prices", TimeoutSeconds: &zero}, "timeout_seconds"},
		{"bad retry", taskservice.CreateRequest{Type: "refresh_all_prices", RetryPolicy: &tasks.RetryPolicy{MaxRetries: 99, RetryDelay: 1, MaxRetryDelay: 1}}, "retry_policy.max_retries"},
		{"bad callback", taskservice.CreateRequest{Type: "refresh_all_prices", CallbackURL: "file:///etc/passwd"}, "callback_url"},
	}
	for _, tc := range cases {
		_, err := b.svc.Create(context.Background(), tc.req)
		v, ok := tasks.AsValidation(err)
		require.True(t, ok, "%s: %v", tc.name, err)
		require.Equal(t, tc.field, v.Errors[0].Field, tc.name)
	}
	var n int64
	require.NoError(t, b.pg.DB.Model(&store.Task{}).Count(&n).Error)
	require.Zero(t, n, "no row for a refused request")
}

func TestCreateIdempotentUnderConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req := taskservice.CreateRequest{Type: "refresh_portfolio", Params: json.RawMessage(`{"portfolio_id":"pf_1"}`),
		IdempotencyKey: "key-1", CreatedBy: "u1"}
	var wg sync.WaitGroup
	results := make([]taskservice.Created, 20)
	errs := make([]error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = b.svc.Create(context.Background(), req)
		}()
	}
	wg.Wait()
	created := 0
	for i := range 20 {
		require.NoError(t, errs[i])
		require.Equal(t, results[0].Task.ID, results[i].Task.ID)
		if !results[i].Existing {
			created++
		}
	}
	require.Equal(t, 1, created, "exactly one request creates the task")

	// Same key, other body: conflict. Same key, other caller: a new task.
	other := req
	other.Params = json.RawMessage(`{"portfolio_id":"pf_2"}`)
	_, err := b.svc.Create(context.Background(), other)
	require.ErrorIs(t, err, taskservice.ErrIdempotencyConflict)
	mine := req
	mine.CreatedBy = "u2"
	c, err := b.svc.Create(context.Background(), mine)
	require.NoError(t, err)
	require.False(t, c.Existing)
	require.NotEqual(t, results[0].Task.ID, c.Task.ID)

	queued, err := b.inspector.ListPendingTasks("normal")
	require.NoError(t, err)
	require.Len(t, queued, 2)
}

func TestCreateScheduleFireOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fire := time.Now().UTC().Truncate(time.Second)
	req := taskservice.CreateRequest{Type: "refresh_all_prices", ScheduleID: "sch_1", FireTime: &fire, CreatedBy: "scheduler"}
	a, err := b.svc.Create(context.Background(), req)
	require.NoError(t, err)
	again, err := b.svc.Create(context.Background(), req)
	require.NoError(t, err)
	require.True(t, again.Existing)
	require.Equal(t, a.Task.ID, again.Task.ID)
}

func TestCreateWhenRedisIsDownLeavesNoRow(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	down := asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond}
	client, insp := asynq.NewClient(down), asynq.NewInspector(down)
	t.Cleanup(func() { client.Close(); insp.Close() })
	svc, err := taskservice.New(pg.DB, client, insp, zap.NewNop(), taskservice.Options{})
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	_, err = svc.Create(context.Background(), taskservice.CreateRequest{Type: "refresh_all_prices", CreatedBy: "u1"})
	require.ErrorIs(t, err, taskservice.ErrUnavailable)
	var n int64
	require.NoError(t, pg.DB.Model(&store.Task{}).Count(&n).Error)
	require.Zero(t, n, "the row of a task Redis refused is removed")
}

func TestCreateWhenPostgresIsDownEnqueuesNothing(t *testing.T) {
	t.Parallel()
	rd := testenv.NewRedis(t)
	db, err := store.Open(store.Options{URL: "postgres://taskforge@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"})
	require.NoError(t, err)
	client, insp := asynq.NewClient(rd.Opt()), asynq.NewInspector(rd.Opt())
	t.Cleanup(func() { client.Close(); insp.Close() })
	svc, err := taskservice.New(db, client, insp, zap.NewNop(), taskservice.Options{})
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	_, err = svc.Create(context.Background(), taskservice.CreateRequest{Type: "refresh_all_prices", CreatedBy: "u1"})
	require.True(t, errors.Is(err, taskservice.ErrUnavailable), "got %v", err)
	q, err := insp.Queues()
	require.NoError(t, err)
	require.Empty(t, q, "nothing was enqueued")
}

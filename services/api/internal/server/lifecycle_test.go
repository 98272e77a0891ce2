package server

import (
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/lifecycle/lifecycletest"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/services/api/client"
)

// create makes a task through the API and returns its id.
func create(t *testing.T, c *client.ClientWithResponses, body client.CreateTaskRequest) string {
	t.Helper()
	resp, err := c.CreateTaskWithResponse(ctx, nil, body)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode(), string(resp.Body))
	return resp.JSON201.TaskId
}

func taskRow(t *testing.T, b testBundle, id string) store.Task {
	t.Helper()
	var row store.Task
	require.NoError(t, b.pg.DB.Take(&row, "id = ?", id).Error)
	return row
}

func TestCancelInEachState(t *testing.T) {
	t.Parallel()
	b := setup(t)
	op := b.client(t, tokOp)
	inAsynq := func(queue, id string) bool {
		_, err := b.inspector.GetTaskInfo(queue, id)
		return err == nil
	}

	// Pending: cancelled at once and gone from the queue.
	pending := create(t, op, createBody("refresh_all_prices", nil))
	require.True(t, inAsynq("normal", pending))
	resp, err := op.CancelTaskWithResponse(ctx, pending)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode(), string(resp.Body))
	require.Equal(t, client.Status("cancelled"), resp.JSON200.Status)
	require.NotNil(t, resp.JSON200.CompletedAt)
	require.False(t, inAsynq("normal", pending))

	// Scheduled for later: same, removed from the scheduled set.
	later := time.Now().Add(time.Hour)
	body := createBody("send_alert", map[string]any{"channel": "slack", "title": "t", "message": "hi"})
	body.ScheduledFor = &later
	scheduled := create(t, op, body)
	info, err := b.inspector.GetTaskInfo("high", scheduled)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateScheduled, info.State)
	resp, err = op.CancelTaskWithResponse(ctx, scheduled)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode())
	require.False(t, inAsynq("high", scheduled))

	// Retrying (the row says so; Asynq holds the task): cancelled and removed.
	retrying := create(t, op, createBody("refresh_all_prices", nil))
	require.NoError(t, lifecycletest.Force(b.pg.DB, retrying, `status = 'retrying', attempt = 1, next_retry_at = now() + interval '1 minute'`))
	resp, err = op.CancelTaskWithResponse(ctx, retrying)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode())
	require.Equal(t, client.Status("cancelled"), resp.JSON200.Status)
	require.Nil(t, resp.JSON200.NextRetryAt)
	require.False(t, inAsynq("normal", retrying))

	// Running: 202, cancel_requested set, status unchanged (the worker ends it).
	running := create(t, op, createBody("refresh_all_prices", nil))
	require.NoError(t, lifecycletest.Force(b.pg.DB, running, `status = 'running', attempt = 1, started_at = now()`))
	resp, err = op.CancelTaskWithResponse(ctx, running)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, resp.StatusCode(), string(resp.Body))
	require.Equal(t, client.Status("running"), resp.JSON202.Status)
	require.True(t, resp.JSON202.CancelRequested)
	row := taskRow(t, b, running)
	require.True(t, row.CancelRequested)
	require.Equal(t, "running", row.Status)
	// Asking again is still 202.
	resp, err = op.CancelTaskWithResponse(ctx, running)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, resp.StatusCode())

	// Terminal: 409, nothing changes.
	for _, id := range []string{pending, insertTask(t, b, "key_op", "completed", time.Now()), insertTask(t, b, "key_op", "failed", time.Now())} {
		before := taskRow(t, b, id)
		resp, err = op.CancelTaskWithResponse(ctx, id)
		require.NoError(t, err)
		require.Equal(t, http.StatusConflict, resp.StatusCode())
		require.Equal(t, before.Status, taskRow(t, b, id).Status)
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	op, admin := b.client(t, tokOp), b.client(t, tokAdmin)

	// A task that failed after four attempts and sits in Asynq's archive.
	id := create(t, op, createBody("refresh_portfolio", map[string]any{"portfolio_id": "pf_9"}))
	require.NoError(t, b.inspector.ArchiveTask("normal", id))
	require.NoError(t, lifecycletest.Force(b.pg.DB, id, `status = 'failed', attempt = 4, started_at = now(), completed_at = now(),
		error = '{"message":"provider down","kind":"transient","attempt":4}', duration_ms = 10`))
	got, err := op.GetTaskWithResponse(ctx, id)
	require.NoError(t, err)
	require.Equal(t, "provider down", got.JSON200.Error.Message)
	require.Equal(t, 4, *got.JSON200.Error.Attempt)

	resp, err := op.RetryTaskWithResponse(ctx, id)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode(), string(resp.Body))
	require.Equal(t, client.Status("pending"), resp.JSON200.Status)
	require.Nil(t, resp.JSON200.Error)
	require.Nil(t, resp.JSON200.CompletedAt)
	require.Equal(t, 4, resp.JSON200.Attempts, "attempt numbers continue")
	row := taskRow(t, b, id)
	require.Equal(t, 4, row.RetryBase, "a fresh retry budget")
	require.False(t, row.CancelRequested)
	info, err := b.inspector.GetTaskInfo("normal", id)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, info.State, "queued again under the same id")
	require.Zero(t, info.Retried)

	// Not failed or cancelled: 409.
	resp, err = op.RetryTaskWithResponse(ctx, id)
	require.NoError(t, err)
	require.Equal(t, http.StatusConflict, resp.StatusCode())
	done := insertTask(t, b, "key_op", "completed", time.Now())
	resp, err = op.RetryTaskWithResponse(ctx, done)
	require.NoError(t, err)
	require.Equal(t, http.StatusConflict, resp.StatusCode())

	// A cancelled task runs again too.
	resp2, err := op.CancelTaskWithResponse(ctx, id)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp2.StatusCode())
	resp, err = op.RetryTaskWithResponse(ctx, id)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode())
	_, err = b.inspector.GetTaskInfo("normal", id)
	require.NoError(t, err)

	// Maintenance tasks are retried by admins only.
	maint := insertTaskWith(t, b, store.Task{Type: "backup_data", Status: "failed", CreatedBy: "key_op", Priority: "low"})
	resp, err = op.RetryTaskWithResponse(ctx, maint)
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, resp.StatusCode())
	resp, err = admin.RetryTaskWithResponse(ctx, maint)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode(), string(resp.Body))
}

func TestLogs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	op := b.client(t, tokOp)
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	id := insertTaskWith(t, b, store.Task{CreatedBy: "key_op", Status: "completed", Attempt: 2,
		CreatedAt: start, StartedAt: ptr(start.Add(2 * time.Second)), CompletedAt: ptr(start.Add(10 * time.Second)),
		QueueWaitMs: ptr(int64(2000)), DurationMs: ptr(int64(3000))})
	attempts := []store.TaskAttempt{
		{TaskID: id, Attempt: 1, Worker: "w1", StartedAt: start.Add(2 * time.Second), FinishedAt: ptr(start.Add(3 * time.Second)),
			DurationMs: ptr(int64(1000)), Outcome: "retrying", ErrorKind: "transient", ErrorMessage: "timeout", Stack: "frame"},
		{TaskID: id, Attempt: 2, Worker: "w2", StartedAt: start.Add(7 * time.Second), FinishedAt: ptr(start.Add(10 * time.Second)),
			DurationMs: ptr(int64(3000)), Outcome: "completed"},
	}
	require.NoError(t, b.pg.DB.Create(&attempts).Error)
	levels := []string{"debug", "info", "warn", "error", "info", "info"}
	for i, lvl := range levels {
		require.NoError(t, b.pg.DB.Create(&store.TaskLog{TaskID: id, Attempt: 1 + i/3, TS: start.Add(time.Duration(i) * time.Second),
			Level: lvl, Message: "line " + lvl, Fields: store.JSON(`{"i":1}`)}).Error)
	}

	resp, err := op.GetTaskLogsWithResponse(ctx, id, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode(), string(resp.Body))
	l := resp.JSON200
	require.Equal(t, id, l.TaskId)
	require.Len(t, l.Logs, 6)
	require.Nil(t, l.NextCursor)
	require.Len(t, l.Attempts, 2)
	require.Equal(t, "timeout", *l.Attempts[0].Error)
	require.Equal(t, "frame", *l.Attempts[0].Stack)
	require.Nil(t, l.Attempts[1].Error)
	require.EqualValues(t, 2000, *l.Metrics.QueueWaitMs)
	require.EqualValues(t, 4000, *l.Metrics.RunMs, "summed over attempts")
	require.EqualValues(t, 10000, *l.Metrics.TotalMs)
	require.Equal(t, 1, l.Metrics.Retries)

	// Filters: level at or above, attempt, pages.
	warn := client.GetTaskLogsParamsLevel("warn")
	resp, err = op.GetTaskLogsWithResponse(ctx, id, &client.GetTaskLogsParams{Level: &warn})
	require.NoError(t, err)
	require.Len(t, resp.JSON200.Logs, 2)
	resp, err = op.GetTaskLogsWithResponse(ctx, id, &client.GetTaskLogsParams{Attempt: ptr(2)})
	require.NoError(t, err)
	require.Len(t, resp.JSON200.Logs, 3)
	var msgs []string
	var cursor *string
	for {
		resp, err = op.GetTaskLogsWithResponse(ctx, id, &client.GetTaskLogsParams{Limit: ptr(4), Cursor: cursor})
		require.NoError(t, err)
		for _, ln := range resp.JSON200.Logs {
			msgs = append(msgs, ln.Message)
		}
		if resp.JSON200.NextCursor == nil {
			break
		}
		cursor = resp.JSON200.NextCursor
	}
	require.Equal(t, []string{"line debug", "line info", "line warn", "line error", "line info", "line info"}, msgs)

	for _, q := range []string{"level=loud", "attempt=-1", "attempt=x", "limit=0", "limit=501", "cursor=zzz"} {
		r := b.raw(t, http.MethodGet, "/api/v1/tasks/"+id+"/logs?"+q, tokOp, nil, nil)
		require.Equal(t, http.StatusBadRequest, r.StatusCode, q)
	}
}

func TestQueuesStatsTypesAndDocument(t *testing.T) {
	t.Parallel()
	b := setup(t)
	op, admin, viewer := b.client(t, tokOp), b.client(t, tokAdmin), b.client(t, tokViewer)

	// Queues: empty ones are listed too; pending and scheduled counted.
	q, err := viewer.ListQueuesWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, q.StatusCode(), string(q.Body))
	require.Len(t, q.JSON200.Items, 4)
	create(t, op, createBody("refresh_all_prices", nil))
	create(t, op, createBody("refresh_all_prices", nil))
	later := time.Now().Add(time.Hour)
	body := createBody("refresh_all_prices", nil)
	body.ScheduledFor = &later
	create(t, op, body)
	q, err = viewer.ListQueuesWithResponse(ctx)
	require.NoError(t, err)
	byName := map[client.Priority]client.Queue{}
	for _, it := range q.JSON200.Items {
		byName[it.Name] = it
	}
	require.Equal(t, []client.Priority{"critical", "high", "normal", "low"},
		[]client.Priority{q.JSON200.Items[0].Name, q.JSON200.Items[1].Name, q.JSON200.Items[2].Name, q.JSON200.Items[3].Name})
	require.Equal(t, 2, byName["normal"].Pending)
	require.Equal(t, 1, byName["normal"].Scheduled)
	require.Equal(t, 3, byName["normal"].Size)
	require.Zero(t, byName["critical"].Size)

	// Stats over finished tasks: two completed and one failed refresh, one
	// completed email; and one completed refresh outside the window.
	now := time.Now().UTC()
	finish := func(typ, status string, ms int64, ago time.Duration, owner string) {
		at := now.Add(-ago)
		insertTaskWith(t, b, store.Task{Type: typ, Status: status, CreatedBy: owner, CompletedAt: &at, DurationMs: &ms})
	}
	finish("refresh_all_prices", "completed", 100, time.Hour, "key_op")
	finish("refresh_all_prices", "completed", 300, 2*time.Hour, "key_op")
	finish("refresh_all_prices", "failed", 50, 3*time.Hour, "key_op")
	finish("refresh_all_prices", "completed", 9999, 48*time.Hour, "key_op")
	finish("send_email", "completed", 20, time.Hour, "key_op2")
	finish("send_email", "cancelled", 5, time.Hour, "key_op2")

	st, err := admin.GetStatsWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, st.StatusCode(), string(st.Body))
	require.Equal(t, "24h", st.JSON200.Window)
	require.Len(t, st.JSON200.Types, 2)
	rp := st.JSON200.Types[0]
	require.Equal(t, "refresh_all_prices", *rp.Type)
	require.EqualValues(t, 2, rp.Completed)
	require.EqualValues(t, 1, rp.Failed)
	require.InDelta(t, 2.0/3.0, *rp.SuccessRate, 1e-9)
	require.InDelta(t, 200, *rp.AvgDurationMs, 1e-9)
	require.InDelta(t, 290, *rp.P95DurationMs, 1e-9, "p95 of 100 and 300, interpolated")
	require.InDelta(t, 3.0/(24*60), rp.ThroughputPerMin, 1e-12)
	require.EqualValues(t, 3, st.JSON200.Total.Completed)
	require.EqualValues(t, 1, st.JSON200.Total.Cancelled)
	require.Nil(t, st.JSON200.Total.Type)

	// The window reaches further back; owners see their own.
	w := "3d"
	st, err = admin.GetStatsWithResponse(ctx, &client.GetStatsParams{Window: &w})
	require.NoError(t, err)
	require.EqualValues(t, 4, st.JSON200.Total.Completed)
	st, err = b.client(t, tokOp2).GetStatsWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Len(t, st.JSON200.Types, 1)
	require.Equal(t, "send_email", *st.JSON200.Types[0].Type)
	for _, bad := range []string{"forever", "0s", "91d", "30s", "-1h", "1.5d"} {
		r := b.raw(t, http.MethodGet, "/api/v1/stats?window="+bad, tokAdmin, nil, nil)
		require.Equal(t, http.StatusBadRequest, r.StatusCode, bad)
	}

	// The registry.
	tt, err := viewer.ListTaskTypesWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, tt.StatusCode())
	require.Len(t, tt.JSON200.Items, 14)
	types := map[string]client.TaskType{}
	for _, it := range tt.JSON200.Items {
		types[it.Name] = it
	}
	require.Equal(t, client.TaskTypeCategory("import"), types["import_prices"].Category)
	require.Equal(t, 1800, types["import_holdings"].TimeoutSeconds)
	require.Equal(t, []any{"upload_id"}, types["import_prices"].ParamsSchema["required"])
	require.True(t, types["backup_data"].AdminOnly)
	require.False(t, types["send_email"].AdminOnly)
	require.Equal(t, 600, types["refresh_portfolio"].TimeoutSeconds)
	require.Equal(t, client.Priority("high"), types["send_email"].DefaultPriority)
	props := types["webhook_callback"].ParamsSchema["properties"].(map[string]any)
	require.Equal(t, true, props["secret"].(map[string]any)["x-secret"])

	// The document.
	doc, err := viewer.GetOpenAPIWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, doc.StatusCode())
	require.Equal(t, openapiDoc(t), doc.Body)
}

// TestEstimatedDuration: the median of the type's recent completed runs, else
// the type's default.
func TestEstimatedDuration(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, ms := range []int64{2000, 4000, 9000} {
		done := time.Now().UTC()
		insertTaskWith(t, b, store.Task{Type: "send_alert", Status: "completed", CreatedBy: "key_x", CompletedAt: &done, DurationMs: ptr(ms)})
	}
	op := b.client(t, tokOp)
	resp, err := op.CreateTaskWithResponse(ctx, nil, createBody("send_alert", map[string]any{"channel": "slack", "title": "t", "message": "m"}))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode(), string(resp.Body))
	require.Equal(t, 4, resp.JSON201.EstimatedDuration, "median of 2 s, 4 s and 9 s")
	resp, err = op.CreateTaskWithResponse(ctx, nil, createBody("generate_digest", map[string]any{"recipients": []string{"a@example.com"}}))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode(), string(resp.Body))
	require.Equal(t, 10, resp.JSON201.EstimatedDuration, "the type's default without runs")
}

package server

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/worker"
	"github.com/taskforge/taskforge/services/api/client"
)

// TestQueuePauseResume pauses a queue through the API while a worker runs: a
// task in the paused queue waits while one in another queue runs, and runs
// once the queue is resumed. Pausing twice is no error, an unknown queue is a
// 404 naming the queues, and every change is audited (who may call it at all
// is in the authorisation matrix).
func TestQueuePauseResume(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	// As the API's main does at start: Asynq knows the four queues.
	require.NoError(t, queue.Register(ctx, b.rd.Client))
	admin, op := b.client(t, tokAdmin), b.client(t, tokOp)

	handler := job.Typed(func(ctx context.Context, r job.Reporter, p *taskpb.CalculateMetricsParams) error {
		return r.SetResult(map[string]any{"portfolio_id": p.GetPortfolioId()})
	})
	rt, err := worker.New(b.pg.DB, b.rd.Client, b.inspector, zap.NewNop(), worker.Options{
		WorkerID: "queues-worker", Handlers: map[string]job.Handler{tasks.TypeCalculateMetrics: handler},
		FlushInterval: 20 * time.Millisecond, Registerer: prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	serveTasks(t, b, rt, 2)

	paused := func(name client.Priority) bool {
		q, err := op.ListQueuesWithResponse(ctx)
		require.NoError(t, err)
		for _, it := range q.JSON200.Items {
			if it.Name == name {
				return it.Paused
			}
		}
		t.Fatalf("no queue %s", name)
		return false
	}
	require.False(t, paused("low"))

	for range 2 {
		r, err := admin.PauseQueueWithResponse(ctx, "low")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, r.StatusCode(), string(r.Body))
		require.True(t, r.JSON200.Paused)
		require.Equal(t, client.Priority("low"), r.JSON200.Name)
	}
	require.True(t, paused("low"), "every caller sees the paused state")
	require.False(t, paused("normal"))

	status, body, _ := b.call(t, http.MethodPost, "/api/v1/queues/urgent/pause", tokAdmin, "")
	require.Equal(t, http.StatusNotFound, status, body)
	require.Contains(t, body, "critical, high, normal, low")
	r, err := op.PauseQueueWithResponse(ctx, "normal")
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, r.StatusCode())
	require.False(t, paused("normal"), "a refused pause changes nothing")

	// The worker takes from normal, not from the paused low.
	metrics := func(portfolio, priority string) string {
		body := createBody(tasks.TypeCalculateMetrics, map[string]any{"portfolio_id": portfolio})
		p := client.Priority(priority)
		body.Priority = &p
		return create(t, op, body)
	}
	waiting := metrics("pf_low", "low")
	ran := metrics("pf_normal", "normal")
	statusOf := func(id string) string { return taskRow(t, b, id).Status }
	require.Eventually(t, func() bool { return statusOf(ran) == tasks.StatusCompleted }, 20*time.Second, 20*time.Millisecond)
	// The worker polls every 10 ms here: after the normal task has run, and a
	// further half second, a task the paused queue handed out would show.
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, tasks.StatusPending, statusOf(waiting), "a paused queue's task waits")

	res, err := admin.ResumeQueueWithResponse(ctx, "low")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode(), string(res.Body))
	require.False(t, res.JSON200.Paused)
	require.Eventually(t, func() bool { return statusOf(waiting) == tasks.StatusCompleted }, 20*time.Second, 20*time.Millisecond,
		"resumed, the queue's task runs")
	res, err = admin.ResumeQueueWithResponse(ctx, "low")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode(), "resuming a running queue is no error")

	require.Eventually(t, func() bool {
		return len(auditRows(t, b, audit.ActionQueuePause)) == 4 && len(auditRows(t, b, audit.ActionQueueResume)) == 2
	}, 10*time.Second, 20*time.Millisecond)
	var outcomes []string
	for _, row := range auditRows(t, b, audit.ActionQueuePause) {
		require.Equal(t, audit.ResourceQueue, row.ResourceType)
		outcomes = append(outcomes, row.ResourceID+" "+row.Outcome)
	}
	require.ElementsMatch(t, []string{"low success", "low success", "urgent failure", "normal denied"}, outcomes)
}

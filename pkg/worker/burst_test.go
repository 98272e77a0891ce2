package worker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/taskservice/taskservicetest"
	"github.com/taskforge/taskforge/pkg/worker"
)

// TestBurstServerFollowsWorkflowSteps runs a worker whose one server polls
// every 10 s (so after its first look at the queues it sleeps at least 5 s)
// with a burst server: a workflow step that runs starts the burst server,
// which picks up a task created after the step within the sleep of the main
// server, then stops after its linger — a task created after that waits for
// the main server. A plain task starts no burst server.
func TestBurstServerFollowsWorkflowSteps(t *testing.T) {
	t.Parallel()
	env := taskservicetest.New(t)
	handlers := map[string]job.Handler{
		tasks.TypeRefreshPortfolio: job.Typed(func(context.Context, job.Reporter, *taskpb.RefreshPortfolioParams) error { return nil }),
	}
	rt, err := worker.New(env.PG.DB, env.RD.Client, env.Inspector, env.Log, worker.Options{
		WorkerID: "burst-worker", Handlers: handlers, Registerer: prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	opts := worker.ServerOptions{
		Concurrency: 10, QueueWeights: map[string]int{"critical": 8, "high": 4, "normal": 2, "low": 1},
		StrictPriority: true, ShutdownTimeout: 5 * time.Second, TaskCheckInterval: 10 * time.Second,
	}
	burst := rt.StartBurst(env.RD.Opt(), worker.BurstOptions{Server: opts, Poll: 5 * time.Millisecond,
		Linger: time.Second, Concurrency: 2})
	srv := asynq.NewServer(env.RD.Opt(), rt.AsynqConfig(opts))
	t.Cleanup(func() {
		burst.Close()
		srv.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rt.Close(ctx)
	})
	create := func(workflowID, stepID string) string {
		t.Helper()
		c, err := env.Service.Create(context.Background(), taskservice.CreateRequest{
			Type: tasks.TypeRefreshPortfolio, Params: json.RawMessage(`{"all":true}`),
			WorkflowID: workflowID, StepID: stepID,
		})
		require.NoError(t, err)
		return c.Task.ID
	}
	status := func(id string) string {
		var row store.Task
		require.NoError(t, env.PG.DB.Where("id = ?", id).Take(&row).Error)
		return row.Status
	}
	waitCompleted := func(id string, within time.Duration, why string) {
		t.Helper()
		require.Eventuallyf(t, func() bool { return status(id) == tasks.StatusCompleted }, within, 20*time.Millisecond,
			"task %s %s (status %s)", id, why, status(id))
	}

	// A plain task, taken by the main server's first poll: no burst.
	plain := create("", "")
	require.NoError(t, srv.Start(rt))
	// From here the main server has at least 5 s of sleep before its next poll
	// (it polls at once on start, then sleeps half to one and a half times
	// its interval).
	mainAsleep := time.Now().Add(5 * time.Second)
	waitCompleted(plain, 5*time.Second, "not run by the main server's first poll")
	time.Sleep(100 * time.Millisecond)
	require.Zero(t, burst.Starts(), "a plain task started a burst server")

	// A step, created while the main server sleeps, and a plain task after
	// it: the main server would take them 5–15 s after its last poll.
	require.NoError(t, env.PG.DB.Create(&store.Workflow{ID: "wf_burst", Name: "burst", Status: "running",
		CreatedBy: "test", Role: "admin"}).Error)
	require.NoError(t, env.PG.DB.Create(&store.Workflow{ID: "wf_burst_next", Name: "burst", Status: "running",
		CreatedBy: "test", Role: "admin"}).Error)
	// The burst server runs only once a step ran: kick it with a step the
	// main server has not taken (it sleeps), through a second, short-lived
	// server standing for another worker's poll.
	step := create("wf_burst", "a")
	other := asynq.NewServer(env.RD.Opt(), rt.AsynqConfig(worker.ServerOptions{
		Concurrency: 1, QueueWeights: opts.QueueWeights, StrictPriority: true, ShutdownTimeout: time.Second,
		TaskCheckInterval: 10 * time.Second,
	}))
	require.NoError(t, other.Start(rt))
	t.Cleanup(other.Shutdown) // it sleeps 5–15 s after its first polls
	waitCompleted(step, 5*time.Second, "not run")
	require.EqualValues(t, 1, burst.Starts(), "the step started a burst server")

	next := create("wf_burst_next", "b")
	waitCompleted(next, 3*time.Second, "not picked up by the burst server while the main server sleeps")
	require.EqualValues(t, 1, burst.Starts(), "one burst server served both")

	// After the linger the burst server is gone: a new task waits.
	require.Eventually(t, func() bool { return !burst.Running() }, 5*time.Second, 20*time.Millisecond, "the burst server never stopped")
	late := create("", "")
	time.Sleep(time.Second)
	if time.Now().After(mainAsleep) {
		t.Logf("the machine was too slow for the last check: the main server may have polled again")
		return
	}
	require.Equal(t, tasks.StatusPending, status(late), "a task was taken with no burst server and the main server asleep")
}

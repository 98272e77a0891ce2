package schedule_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/worker"
)

// TestFireJobsThroughTheWorkerRuntime runs the fire jobs through the worker's
// real lifecycle runtime with the handlers the worker registers: the payload
// is an envelope the runtime accepts, and internal jobs leave no tasks row of
// their own.
func TestFireJobsThroughTheWorkerRuntime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.create(t, "through-worker", "@every 1s", tasks.TypeRefreshAllPrices, `{}`)
	rc := queue.Client(b.rd.Opt())
	t.Cleanup(func() { _ = rc.Close() })
	keys, err := secret.FromConfig(config.Defaults().Crypto, true)
	require.NoError(t, err)
	hs, err := schedule.WorkerHandlers(b.pg.DB, rc, config.Defaults().Scheduler, config.Defaults().Egress, keys, nil, b.log)
	require.NoError(t, err)
	rt, err := worker.New(b.pg.DB, rc, b.inspector, b.log, worker.Options{Handlers: hs})
	require.NoError(t, err)
	srv := asynq.NewServer(b.rd.Opt(), rt.AsynqConfig(worker.ServerOptions{
		Concurrency: 2, StrictPriority: true, ShutdownTimeout: time.Second, TaskCheckInterval: 10 * time.Millisecond,
	}))
	require.NoError(t, srv.Start(rt))
	t.Cleanup(func() {
		srv.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rt.Close(ctx)
	})
	f := b.firer(t, schedule.FireOptions{CatchUp: 1})
	// A long sync interval: the catch-up runs once at start, so every task
	// below comes from a fire job.
	b.startRunner(t, f, time.Hour)

	require.Eventually(t, func() bool { return len(fires(t, b, s.ID)) >= 3 }, 20*time.Second, 100*time.Millisecond)
	for _, r := range fires(t, b, s.ID) {
		require.Equal(t, 1, r.N)
	}
	var other int64
	require.NoError(t, b.pg.DB.Table("tasks").Where("schedule_id IS NULL").Count(&other).Error)
	require.Zero(t, other, "fire jobs are not tasks")
}

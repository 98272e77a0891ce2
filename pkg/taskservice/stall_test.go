package taskservice_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/reconcile"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestCreateRedisFrozen: a create whose enqueue times out against a stalled
// Redis answers ErrUnavailable within the bound and leaves no row, so neither
// the reconciler nor a delivery that Redis still accepts once it resumes can
// run a task whose caller was told 503.
func TestCreateRedisFrozen(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	srv := testenv.StartRedisServer(t)
	rc := config.Defaults().Redis
	rc.Addr = srv.Addr
	opt, err := queue.RedisOpt(rc)
	require.NoError(t, err)
	client, insp, redis := asynq.NewClient(opt), asynq.NewInspector(opt), queue.Client(opt)
	t.Cleanup(func() { client.Close(); insp.Close(); redis.Close() })
	svc, err := taskservice.New(pg.DB, client, insp, zap.NewNop(), taskservice.Options{EnqueueTimeout: 700 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	ctx := context.Background()
	ok, err := svc.Create(ctx, taskservice.CreateRequest{Type: "refresh_all_prices", CreatedBy: "u1"})
	require.NoError(t, err)

	srv.Freeze()
	t.Cleanup(srv.Thaw)
	var refused []string
	for range 3 {
		start := time.Now()
		_, err := svc.Create(ctx, taskservice.CreateRequest{Type: "refresh_all_prices", CreatedBy: "u1", IdempotencyKey: "k1"})
		require.ErrorIs(t, err, taskservice.ErrUnavailable)
		require.Less(t, time.Since(start), 2*time.Second)
		refused = append(refused, "k1")
	}
	var rows []store.Task
	require.NoError(t, pg.DB.Find(&rows).Error)
	require.Len(t, rows, 1, "only the acknowledged task has a row")
	require.Equal(t, ok.Task.ID, rows[0].ID)

	srv.Thaw()
	require.Eventually(t, func() bool { return queue.Ping(ctx, redis) == nil }, 10*time.Second, 50*time.Millisecond)
	// The reconciler finds nothing to enqueue: the refused tasks have no row.
	rec, err := reconcile.New(pg.DB, redis, insp, svc, zap.NewNop(), nil, reconcile.Options{MinAge: time.Nanosecond})
	require.NoError(t, err)
	rep, err := rec.Pass(ctx)
	require.NoError(t, err)
	require.True(t, rep.Ran)
	require.Zero(t, rep.Repairs[reconcile.KindRequeued])
	// Whatever Redis accepted after resuming is a delivery with no row, which
	// the worker drops unrun; the acknowledged task is queued.
	info, err := insp.GetTaskInfo(ok.Task.Priority, ok.Task.ID)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, info.State)

	// The same idempotency key works again once Redis is back.
	again, err := svc.Create(ctx, taskservice.CreateRequest{Type: "refresh_all_prices", CreatedBy: "u1", IdempotencyKey: refused[0]})
	require.NoError(t, err)
	require.False(t, again.Existing)
}

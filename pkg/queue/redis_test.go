package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/testenv"
)

func TestRedisOptCarriesDeadlinesAndRetries(t *testing.T) {
	t.Parallel()
	base := config.Defaults().Redis
	cases := []struct {
		name        string
		mode        string
		retries     int
		wantRetries int
	}{
		{"single, default retries", "single", 1, 1},
		{"single, no retries", "single", 0, 0}, // asked as -1: go-redis reads 0 as 3
		{"sentinel", "sentinel", 2, 2},
		{"cluster", "cluster", 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.Mode, c.MaxRetries = tc.mode, tc.retries
			c.Addrs, c.MasterName = []string{"127.0.0.1:26379"}, "mymaster"
			opt, err := queue.RedisOpt(c)
			require.NoError(t, err)
			rc := queue.Client(opt)
			t.Cleanup(func() { _ = rc.Close() })
			var (
				read, write, dial, pool time.Duration
				retries                 int
				ctxDeadlines            bool
			)
			switch c := rc.(type) {
			case *redis.Client:
				o := c.Options()
				read, write, dial, pool, retries, ctxDeadlines = o.ReadTimeout, o.WriteTimeout, o.DialTimeout, o.PoolTimeout, o.MaxRetries, o.ContextTimeoutEnabled
			case *redis.ClusterClient:
				o := c.Options()
				read, write, dial, pool, retries, ctxDeadlines = o.ReadTimeout, o.WriteTimeout, o.DialTimeout, o.PoolTimeout, o.MaxRetries, o.ContextTimeoutEnabled
			default:
				t.Fatalf("unexpected client %T", rc)
			}
			if tc.mode == "cluster" {
				require.IsType(t, &redis.ClusterClient{}, rc)
			} else {
				require.IsType(t, &redis.Client{}, rc)
			}
			require.Equal(t, 500*time.Millisecond, read)
			require.Equal(t, 500*time.Millisecond, write)
			require.Equal(t, time.Second, dial)
			require.Equal(t, time.Second, pool)
			require.Equal(t, tc.wantRetries, retries)
			require.True(t, ctxDeadlines, "a caller's context deadline bounds the call")
		})
	}
	_, err := queue.RedisOpt(config.RedisConfig{Mode: "ring"})
	require.Error(t, err)
}

// TestFrozenRedisFailsFast: with Redis suspended (SIGSTOP: connections are
// accepted by the kernel but nothing answers), an enqueue and a ping fail
// within the configured deadlines and retries instead of hanging, and work
// again once Redis resumes.
func TestFrozenRedisFailsFast(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedisServer(t)
	c := config.Defaults().Redis
	c.Addr = srv.Addr
	c.ReadTimeout, c.WriteTimeout, c.MaxRetries = 200*time.Millisecond, 200*time.Millisecond, 1
	opt, err := queue.RedisOpt(c)
	require.NoError(t, err)
	client := asynq.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	rc := queue.Client(opt)
	t.Cleanup(func() { _ = rc.Close() })
	ctx := context.Background()
	require.NoError(t, queue.Ping(ctx, rc))

	srv.Freeze()
	t.Cleanup(srv.Thaw)
	// One try and one retry of 200 ms each, a reconnect and backoff: well
	// under the 2 s the API promises; without deadlines this hangs until SIGCONT.
	start := time.Now()
	_, err = client.EnqueueContext(ctx, asynq.NewTask("noop", nil), asynq.Queue(queue.Normal))
	require.Error(t, err)
	require.Less(t, time.Since(start), 2*time.Second, "enqueue against a frozen Redis: %v", err)
	start = time.Now()
	require.Error(t, queue.Ping(ctx, rc))
	require.Less(t, time.Since(start), 2*time.Second)

	// A caller's own deadline is shorter still, and honoured.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	require.Error(t, queue.Ping(short, rc))
	require.Less(t, time.Since(start), time.Second)

	srv.Thaw()
	require.Eventually(t, func() bool { return queue.Ping(ctx, rc) == nil }, 10*time.Second, 50*time.Millisecond)
}

// TestPendingListKeyIsAsynqs: the list the chart's KEDA triggers read
// (deployments/helm/taskforge/templates/worker-keda.yaml, checked in
// deployments/check) holds exactly the queue's pending tasks as Asynq writes
// them: not scheduled ones, not another queue's.
func TestPendingListKeyIsAsynqs(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	client := asynq.NewClient(r.Opt())
	t.Cleanup(func() { _ = client.Close() })
	for i, q := range queue.Queues {
		for range i + 1 {
			_, err := client.Enqueue(asynq.NewTask("noop", nil), asynq.Queue(q))
			require.NoError(t, err)
		}
		_, err := client.Enqueue(asynq.NewTask("noop", nil), asynq.Queue(q), asynq.ProcessIn(time.Hour))
		require.NoError(t, err)
	}
	for i, q := range queue.Queues {
		key := queue.PendingListKey(q)
		require.Equal(t, "asynq:{"+q+"}:pending", key, "the chart's listName")
		typ, err := r.Client.Type(ctx, key).Result()
		require.NoError(t, err)
		require.Equal(t, "list", typ, "KEDA's redis scaler reads a list (LLEN)")
		n, err := r.Client.LLen(ctx, key).Result()
		require.NoError(t, err)
		require.EqualValues(t, i+1, n, q)
		// Every key Asynq wrote for the queue carries the same hash tag, hence
		// one Cluster slot.
		keys, err := r.Client.Keys(ctx, "asynq:{"+q+"}:*").Result()
		require.NoError(t, err)
		require.NotEmpty(t, keys)
		for _, k := range keys {
			require.Contains(t, k, "{"+q+"}")
		}
	}
}

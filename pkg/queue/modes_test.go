package queue_test

import (
	"context"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestPendingListKeyInClusterMode: on a Redis Cluster, through the options
// the services build for redis.mode cluster, Asynq keeps each queue's
// pending tasks in PendingListKey(queue), the list the chart's
// redis-cluster KEDA trigger reads (LLEN on the node owning its slot).
func TestPendingListKeyInClusterMode(t *testing.T) {
	t.Parallel()
	rc := testenv.StartRedisCluster(t, 3)
	cfg := config.Defaults().Redis
	cfg.Mode, cfg.Addrs = "cluster", rc.Addrs
	opt, err := queue.RedisOpt(cfg)
	require.NoError(t, err)
	client := asynq.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	for i, q := range queue.Queues {
		for range i + 1 {
			_, err := client.Enqueue(asynq.NewTask("noop", nil), asynq.Queue(q))
			require.NoError(t, err)
		}
	}
	cc := rc.Client(t)
	ctx := context.Background()
	for i, q := range queue.Queues {
		n, err := cc.LLen(ctx, queue.PendingListKey(q)).Result()
		require.NoError(t, err)
		require.EqualValues(t, i+1, n, q)
		require.True(t, strings.Contains(queue.PendingListKey(q), "{"+q+"}"))
	}
}

package redismem_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/monitor/internal/redismem"
)

// TestMemoryFigures: the collector reports a Redis server's used_memory and its
// maxmemory, follows a change of the limit, and keeps the last figures (and
// counts an error) when Redis is gone.
func TestMemoryFigures(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedisServer(t) // a server of its own: the test sets its maxmemory
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rc.Close() })
	ctx := context.Background()
	require.NoError(t, rc.ConfigSet(ctx, "maxmemory", "0").Err())

	c, err := redismem.New(rc)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	require.NoError(t, c.Refresh(ctx))
	nodes := c.Nodes()
	require.Len(t, nodes, 1)
	require.Equal(t, srv.Addr, nodes[0].Name)
	require.Greater(t, nodes[0].Used, float64(100<<10), "an empty redis-server uses some hundred KiB")
	require.Zero(t, nodes[0].Max, "no limit set")

	require.NoError(t, rc.ConfigSet(ctx, "maxmemory", "67108864").Err())
	require.NoError(t, rc.Set(ctx, "big", strings.Repeat("x", 1<<20), 0).Err())
	before := nodes[0].Used
	require.NoError(t, c.Refresh(ctx))
	nodes = c.Nodes()
	require.EqualValues(t, 64<<20, nodes[0].Max)
	require.Greater(t, nodes[0].Used, before+float64(1<<19), "a 1 MiB value shows in used_memory")
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP taskforge_redis_memory_max_bytes Redis's memory limit (maxmemory; 0: none set), by primary.
# TYPE taskforge_redis_memory_max_bytes gauge
taskforge_redis_memory_max_bytes{node="`+srv.Addr+`"} 6.7108864e+07
# HELP taskforge_redis_memory_refresh_errors_total Reads of the Redis memory figures that failed (the previous values were kept).
# TYPE taskforge_redis_memory_refresh_errors_total counter
taskforge_redis_memory_refresh_errors_total 0
`), "taskforge_redis_memory_max_bytes", "taskforge_redis_memory_refresh_errors_total"))
	require.Equal(t, 3, testutil.CollectAndCount(c), "used, max and the error counter")

	srv.Stop()
	require.Error(t, c.Refresh(ctx))
	require.Equal(t, nodes, c.Nodes(), "the last figures stay while Redis is away")
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP taskforge_redis_memory_refresh_errors_total Reads of the Redis memory figures that failed (the previous values were kept).
# TYPE taskforge_redis_memory_refresh_errors_total counter
taskforge_redis_memory_refresh_errors_total 1
`), "taskforge_redis_memory_refresh_errors_total"))
}

package httpresult_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/lifecycle/lifecycletest"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// queryCounter counts the queries GORM sends on db.
func queryCounter(t testing.TB, db *gorm.DB) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	count := func(*gorm.DB) { n.Add(1) }
	require.NoError(t, db.Callback().Query().Before("gorm:query").Register("test:count_query", count))
	require.NoError(t, db.Callback().Row().Before("gorm:row").Register("test:count_row", count))
	require.NoError(t, db.Callback().Raw().Before("gorm:raw").Register("test:count_raw", count))
	return &n
}

// cachedServer serves the result routes of a store with cache (nil: none)
// and two tasks of alice's: task_done (completed, a JSON result) and
// task_busy (running).
func cachedServer(t testing.TB, pg testenv.Postgres, cache *result.Cache) (*httptest.Server, *result.Store) {
	t.Helper()
	l, err := result.NewLocal(t.TempDir())
	require.NoError(t, err)
	srv, st := serve(t, pg, l, cache)
	for _, tk := range []struct{ id, status string }{{"task_done", "completed"}, {"task_busy", "running"}} {
		require.NoError(t, pg.DB.Exec(`INSERT INTO tasks (id, type, status, priority, max_retries, retry_policy, timeout_seconds, created_by, result)
			VALUES (?, 'generate_reports', ?, 'low', 3, '{}', 60, 'key_alice', '{"rows": 7}')`, tk.id, tk.status).Error)
	}
	return srv, st
}

// TestCachedResultReadsSkipPostgres: the second read of an ended task's
// result comes from Redis without a PostgreSQL query, still authorised per
// caller; If-None-Match with its ETag is a 304; a retry (the lifecycle's
// change back to pending) and Forget drop the entry; a running task's view
// is never cached.
func TestCachedResultReadsSkipPostgres(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	rd := testenv.NewRedis(t)
	reg := prometheus.NewRegistry()
	cache, err := result.NewCache(rd.Client, result.CacheOptions{TTL: time.Minute, Registerer: reg})
	require.NoError(t, err)
	srv, st := cachedServer(t, pg, cache)
	queries := queryCounter(t, pg.DB)
	get := func(id, caller, etag string) (*http.Response, string) {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/tasks/"+id+"/result", nil)
		require.NoError(t, err)
		req.Header.Set("X-Test-Caller", caller)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var sb strings.Builder
		_, _ = io.Copy(&sb, resp.Body)
		return resp, sb.String()
	}

	first, body := get("task_done", "alice", "")
	require.Equal(t, http.StatusOK, first.StatusCode)
	require.Contains(t, body, `"rows":7`)
	require.NotZero(t, queries.Load(), "a miss reads PostgreSQL")
	tag := first.Header.Get("ETag")
	require.NotEmpty(t, tag)

	queries.Store(0)
	again, body2 := get("task_done", "alice", "")
	require.Equal(t, http.StatusOK, again.StatusCode)
	require.Equal(t, body, body2)
	require.Equal(t, tag, again.Header.Get("ETag"))
	notModified, empty := get("task_done", "alice", tag)
	require.Equal(t, http.StatusNotModified, notModified.StatusCode)
	require.Empty(t, empty)
	other, _ := get("task_done", "bob", "")
	require.Equal(t, http.StatusNotFound, other.StatusCode, "the cache does not skip authorisation")
	require.Zero(t, queries.Load(), "hits make no PostgreSQL query")
	require.Equal(t, 3.0, cacheRequests(t, reg, "hit"))

	// A running task's view is read each time and never cached.
	_, _ = get("task_busy", "alice", "")
	queries.Store(0)
	_, _ = get("task_busy", "alice", "")
	require.NotZero(t, queries.Load())
	require.Zero(t, rd.Client.Exists(context.Background(), "taskforge:result-cache:task_busy").Val())

	// The retry's change (back to pending, a later version) drops the entry.
	require.EqualValues(t, 1, rd.Client.Exists(context.Background(), "taskforge:result-cache:task_done").Val())
	cache.Publish(event.Task("task_done", 1, "pending")) // a new task: nothing to drop
	cache.Publish(event.Task("task_done", 5, "running"))
	require.EqualValues(t, 1, rd.Client.Exists(context.Background(), "taskforge:result-cache:task_done").Val())
	cache.Publish(event.Task("task_done", 6, "pending"))
	require.Eventually(t, func() bool {
		return rd.Client.Exists(context.Background(), "taskforge:result-cache:task_done").Val() == 0
	}, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, lifecycletest.Force(pg.DB, "task_done", `status = 'pending', result = NULL`))
	gone, _ := get("task_done", "alice", "")
	require.Equal(t, http.StatusNotFound, gone.StatusCode, "the retried task's old result is not served")

	// Forget (the cleanup's and a new file's) drops it too.
	require.NoError(t, lifecycletest.Force(pg.DB, "task_done", `status = 'completed', result = '{"rows": 8}'`))
	_, body3 := get("task_done", "alice", "")
	require.Contains(t, body3, `"rows":8`)
	require.EqualValues(t, 1, rd.Client.Exists(context.Background(), "taskforge:result-cache:task_done").Val())
	require.NoError(t, st.Forget(context.Background(), "task_done"))
	require.Zero(t, rd.Client.Exists(context.Background(), "taskforge:result-cache:task_done").Val())
}

// cacheRequests reads taskforge_result_cache_requests_total{outcome}.
func cacheRequests(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "taskforge_result_cache_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s count", outcome)
	return 0
}

// BenchmarkTaskResultRead reads one ended task's JSON result over and over
// through the result route, without and with the result cache, and reports
// PostgreSQL queries per read: 0 with the cache. An in-process
// micro-benchmark: it leaves out authentication, rate limits, the audit of
// admin reads and a network between client and API.
func BenchmarkTaskResultRead(b *testing.B) {
	for _, cached := range []bool{false, true} {
		name := "postgres"
		if cached {
			name = "cache"
		}
		b.Run(name, func(b *testing.B) {
			pg := testenv.NewPostgres(b)
			var cache *result.Cache
			if cached {
				var err error
				cache, err = result.NewCache(testenv.NewRedis(b).Client, result.CacheOptions{})
				require.NoError(b, err)
			}
			srv, _ := cachedServer(b, pg, cache)
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/tasks/task_done/result", nil)
			require.NoError(b, err)
			req.Header.Set("X-Test-Caller", "alice")
			read := func() {
				resp, err := http.DefaultClient.Do(req)
				require.NoError(b, err)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				require.Equal(b, http.StatusOK, resp.StatusCode)
			}
			read() // fills the cache
			queries := queryCounter(b, pg.DB)
			b.ResetTimer()
			for b.Loop() {
				read()
			}
			b.ReportMetric(float64(queries.Load())/float64(b.N), "pg-queries/op")
		})
	}
}

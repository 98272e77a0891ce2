package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/api/client"
)

// TestWorkerProcessScaling measures, with the real binaries, how fast 1, 2
// and 4 worker processes drain TASKFORGE_SCALING_TASKS webhook_callback tasks
// that were created through the API while their queue was paused (each task
// POSTs to a loopback receiver). It is a measurement, not a check: it is
// skipped unless TASKFORGE_SCALING_TASKS is set (scripts/bench/worker-processes.sh
// sets it). TASKFORGE_SCALING_WORKERS lists the process counts (default
// "1 2 4"); every process runs worker.concurrency 50 with one Asynq server.
func TestWorkerProcessScaling(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TASKFORGE_SCALING_TASKS"))
	if n <= 0 || testing.Short() {
		t.Skip("a measurement: set TASKFORGE_SCALING_TASKS (scripts/bench/worker-processes.sh)")
	}
	counts := strings.Fields(os.Getenv("TASKFORGE_SCALING_WORKERS"))
	if len(counts) == 0 {
		counts = []string{"1", "2", "4"}
	}
	cfg := filepath.Join(t.TempDir(), "taskforge.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`ratelimit:
  per_address: {rps: 1000000, burst: 1000000}
  per_role:
    admin: {rps: 1000000, burst: 1000000}
`), 0o600))
	s := startStackOn(t, testenv.NewRedis(t), "TASKFORGE_CONFIG="+cfg,
		"TASKFORGE_WORKER_CONCURRENCY=50", "TASKFORGE_WORKER_SERVERS=1", "TASKFORGE_LOG_LEVEL=warn")
	for _, p := range s.procs {
		if strings.HasPrefix(p.name, "worker-") {
			require.NoError(t, p.Stop(t, syscall.SIGTERM, 20*time.Second), p.name)
		}
	}
	admin := s.client(s.adminKey)
	ctx := context.Background()
	pause := func(on bool) {
		for _, q := range []client.Priority{client.Critical, client.High, client.Normal, client.Low} {
			var code int
			if on {
				r, err := admin.PauseQueueWithResponse(ctx, q)
				require.NoError(t, err)
				code = r.StatusCode()
			} else {
				r, err := admin.ResumeQueueWithResponse(ctx, q)
				require.NoError(t, err)
				code = r.StatusCode()
			}
			require.Less(t, code, 300, "pause/resume %s", q)
		}
	}
	completed := func() int {
		var c int
		require.NoError(t, s.pg.DB.Raw(`SELECT count(*) FROM tasks WHERE status = 'completed'`).Scan(&c).Error)
		return c
	}
	t.Logf("%d webhook_callback tasks per run, worker.concurrency 50, 1 Asynq server per process, on %d CPUs", n, runtime.NumCPU())
	for _, c := range counts {
		k, err := strconv.Atoi(c)
		require.NoError(t, err)
		var workers []*proc
		for i := range k {
			admin := testenv.FreeAddr(t)
			p := s.start(fmt.Sprintf("scale-%d-worker-%d", k, i+1), "worker", "http://"+admin+"/readyz", "TASKFORGE_WORKER_ADMIN_ADDR="+admin)
			s.waitReady(p)
			workers = append(workers, p)
		}
		pause(true)
		done0 := completed()
		path := fmt.Sprintf("/scale/%d", k)
		var next atomic.Int64
		var wg sync.WaitGroup
		createStart := time.Now()
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(n) {
					resp, err := s.client(s.adminKey).CreateTaskWithResponse(ctx, nil, newTask("webhook_callback", params{"url": s.hooks.srv.URL + path, "payload": map[string]any{"k": k}}))
					if err != nil || resp.StatusCode() != http.StatusCreated {
						t.Errorf("create: %v %v", err, resp.Status())
						return
					}
				}
			}()
		}
		wg.Wait()
		created := time.Since(createStart)
		time.Sleep(time.Second)
		require.Equal(t, done0, completed(), "tasks completed while the queues were paused")
		start := time.Now()
		pause(false)
		for completed() < done0+n {
			require.Less(t, time.Since(start), 10*time.Minute, "drain with %d workers", k)
			time.Sleep(50 * time.Millisecond)
		}
		took := time.Since(start)
		require.Len(t, s.hooks.received(path), n)
		t.Logf("%d worker process(es): drained %d tasks in %.2f s: %.0f tasks/s (created through the API in %.1f s: %.0f/s)",
			k, n, took.Seconds(), float64(n)/took.Seconds(), created.Seconds(), float64(n)/created.Seconds())
		for _, p := range workers {
			require.NoError(t, p.Stop(t, syscall.SIGTERM, 20*time.Second), p.name)
		}
	}
}

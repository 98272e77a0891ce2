package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/api/client"
)

// killAfterAcks is how many creates the API acknowledges before
// TestAPIKilledDuringCreates kills it.
const killAfterAcks = 150

// TestAPIKilledDuringCreates kills the API process (SIGKILL) in the middle of
// a burst of concurrent creates of webhook_callback tasks, restarts it, and
// checks by the tasks' side effect — each delivery to the recorder carries the
// task id in its Idempotency-Key header — that every acknowledged (201) task
// ran exactly once, that no task row is left pending (a row inserted by a
// request that never got its answer is enqueued by the reconciler, run once,
// and completed), and that nothing without a row ran.
func TestAPIKilledDuringCreates(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs redis-server and PostgreSQL")
	}
	s := startStack(t)

	// Rate limits raised so that the burst is not refused (every client
	// comes from 127.0.0.1), and a reconciler that passes every second (it
	// leaves rows younger than its 10 s minimum age alone).
	cfg := filepath.Join(t.TempDir(), "taskforge.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`ratelimit:
  per_address: {rps: 100000, burst: 100000}
  per_role:
    admin: {rps: 100000, burst: 100000}
`), 0o600))
	var own []*testenv.Process
	startOwn := func(bin, ready string, extra ...string) *testenv.Process {
		t.Helper()
		env := append(append([]string{}, s.env...), extra...)
		p := testenv.StartProcess(t, filepath.Join(binDir, bin), nil, env)
		own = append(own, p)
		// Registered after StartProcess's clean-up, which kills, so that it
		// runs first (clean-ups run last first), and before the stack's.
		t.Cleanup(func() {
			if p.Exited() {
				return // the killed API
			}
			if err := p.Stop(t, syscall.SIGTERM, 20*time.Second); err != nil {
				t.Errorf("%s (pid %d) did not exit cleanly on SIGTERM: %v", bin, p.Pid(), err)
			}
		})
		p.WaitHTTP(t, ready, 60*time.Second)
		return p
	}
	for _, p := range s.procs {
		if p.name == "api" || p.name == "scheduler" {
			require.NoError(t, p.Stop(t, syscall.SIGTERM, 20*time.Second), p.name)
		}
	}
	startOwn("scheduler", s.sched+"/readyz", "TASKFORGE_SCHEDULER_RECONCILE_INTERVAL=1s")
	apiEnv := "TASKFORGE_CONFIG=" + cfg
	api := startOwn("api", s.api+"/readyz", apiEnv)
	logs := lazy(func() string {
		out := s.logTails().String()
		for i, p := range own {
			out += fmt.Sprintf("\n---- process %d (scheduler, api, restarted api):\n%s", i, p.Tail(15))
		}
		return out
	})

	var before []string
	require.NoError(t, s.pg.DB.Raw(`SELECT id FROM tasks`).Scan(&before).Error)
	known := map[string]bool{}
	for _, id := range before {
		known[id] = true
	}

	// The burst: 32 clients create as fast as the API answers until it is
	// killed, which happens as soon as killAfterAcks creates were
	// acknowledged. Requests in flight at that moment get no answer.
	admin := s.client(s.adminKey)
	task := func(n int64) client.CreateTaskRequest {
		return newTask("webhook_callback", params{
			"url": s.hooks.srv.URL + "/webhook/kill", "method": "POST", "payload": map[string]any{"n": n},
		})
	}
	var (
		mu       sync.Mutex
		acked    []string
		answered = map[int]int{}
		lost     atomic.Int64 // requests with no answer
		seq      atomic.Int64
		killed   atomic.Bool
		killOnce sync.Once
	)
	kill := func() {
		killOnce.Do(func() {
			if err := api.Signal(syscall.SIGKILL); err != nil {
				t.Errorf("kill the API: %v", err)
			}
			killed.Store(true)
		})
	}
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !killed.Load() {
				resp, err := admin.CreateTaskWithResponse(context.Background(), nil, task(seq.Add(1)))
				if err != nil {
					lost.Add(1)
					continue
				}
				mu.Lock()
				answered[resp.StatusCode()]++
				if resp.StatusCode() == http.StatusCreated {
					acked = append(acked, resp.JSON201.TaskId)
					if len(acked) >= killAfterAcks {
						go kill()
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	select {
	case <-api.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the API did not exit after SIGKILL")
	}
	t.Logf("burst: %d requests, %d acknowledged, answers by status %v, %d without an answer", seq.Load(), len(acked), answered, lost.Load())
	require.Equal(t, len(acked), answered[http.StatusCreated])
	for code := range answered {
		// 503: the enqueue timed out and the row was removed (not acknowledged).
		require.Containsf(t, []int{http.StatusCreated, http.StatusServiceUnavailable}, code, "answers by status: %v", answered)
	}
	require.GreaterOrEqual(t, len(acked), killAfterAcks)

	// The restarted API acknowledges creates again.
	startOwn("api", s.api+"/readyz", apiEnv)
	for range 5 {
		acked = append(acked, create(t, admin, task(seq.Add(1))))
	}

	// Every row of the burst ends completed: none stays pending.
	burstRows := func() map[string]string {
		var rows []struct{ ID, Status string }
		require.NoError(t, s.pg.DB.Raw(`SELECT id, status FROM tasks`).Scan(&rows).Error)
		out := map[string]string{}
		for _, r := range rows {
			if !known[r.ID] {
				out[r.ID] = r.Status
			}
		}
		return out
	}
	var rows map[string]string
	deadline := time.Now().Add(45 * time.Second)
	for {
		rows = burstRows()
		open := 0
		for _, st := range rows {
			if st != string(client.StatusCompleted) {
				open++
			}
		}
		if open == 0 {
			break
		}
		require.Truef(t, time.Now().Before(deadline), "%d of %d task rows of the burst are not completed after 45 s: %v%s", open, len(rows), notCompleted(rows), logs)
		time.Sleep(pollEvery)
	}
	for _, id := range acked {
		require.Containsf(t, rows, id, "acknowledged task %s has no row", id)
	}
	unacked := len(rows) - len(acked)
	t.Logf("%d task rows: %d acknowledged, %d written by requests that got no answer (enqueued before the kill or by the reconciler)", len(rows), len(acked), unacked)

	// The queues drain, so that no delivery is still on its way.
	waitQueuesDrained(t, admin, 30*time.Second)

	// Exactly one delivery per row, none for a task without a row.
	deliveries := map[string]int{}
	for _, r := range s.hooks.received("/webhook/kill") {
		deliveries[r.Header.Get("Idempotency-Key")]++
	}
	for id, n := range deliveries {
		require.Containsf(t, rows, id, "a delivery for %q, which has no task row", id)
		require.Equalf(t, 1, n, "task %s delivered %d times", id, n)
	}
	for id := range rows {
		require.Equalf(t, 1, deliveries[id], "task %s (completed) delivered %d times", id, deliveries[id])
	}
	require.Len(t, deliveries, len(rows))
}

// notCompleted lists the rows whose status is not completed.
func notCompleted(rows map[string]string) map[string]string {
	out := map[string]string{}
	for id, st := range rows {
		if st != string(client.StatusCompleted) && len(out) < 20 {
			out[id] = st
		}
	}
	return out
}

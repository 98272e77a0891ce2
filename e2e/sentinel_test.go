package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/api/client"
)

// failoverBound is how soon after the master's death every service must
// work on the new master: the Sentinels need DownAfter (1 s) to judge it
// down and a moment to elect and promote; the rest is the services'.
const failoverBound = 30 * time.Second

// redisEnv configures the services for a Sentinel-watched Redis.
func sentinelEnv(sen *testenv.Sentinels) []string {
	return []string{
		"TASKFORGE_REDIS_MODE=sentinel",
		"TASKFORGE_REDIS_ADDRS=" + strings.Join(sen.Addrs, ","),
		"TASKFORGE_REDIS_MASTER_NAME=" + sen.MasterName,
	}
}

// startSentinelStack starts a master, a replica and three Sentinels, and the
// services in sentinel mode on them, with the reconciler's repairs of what a
// failover lost coming within seconds.
func startSentinelStack(t *testing.T) (*testenv.Sentinels, *stack) {
	sen := testenv.StartSentinels(t)
	env := append(sentinelEnv(sen),
		"TASKFORGE_SCHEDULER_RECONCILE_INTERVAL=2s",
		"TASKFORGE_SCHEDULER_LOST_GRACE=5s",
	)
	return sen, startStackOn(t, testenv.Redis{Addr: sen.Master.Addr}, env...)
}

// readiness follows one service's /readyz from the moment of a failure:
// when it first answered other than 200, and when it answered 200 again.
type readiness struct {
	name, url     string
	down, back    time.Time
	sawDown, done bool
}

// TestSentinelFailover runs the api, two workers, the scheduler and the
// monitor with redis.mode sentinel on a master, a replica and three
// Sentinels, creates webhook_callback tasks from four clients, kills the
// master with SIGKILL under that load and checks: every service's /readyz
// answers 503 while there is no master and 200 again once the replica is
// promoted, within failoverBound (the times are printed); every create
// answered 201 or 503 within 2 s; every acknowledged task completes (the
// reconciler enqueues again what the asynchronous replication lost), its
// webhook delivered exactly once and one attempt completed; and no refused
// create left a row.
func TestSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs redis-server, redis-sentinel and PostgreSQL")
	}
	sen, s := startSentinelStack(t)
	admin := s.client(s.adminKey)
	timeout := 15
	task := func(n int) client.CreateTaskRequest {
		req := newTask("webhook_callback", params{
			"url": s.hooks.srv.URL + "/webhook/sentinel", "method": "POST", "payload": map[string]any{"n": n},
		})
		req.TimeoutSeconds = &timeout
		return req
	}
	first := create(t, admin, task(0))
	s.waitStatus(t, admin, first, client.StatusCompleted, taskWithin)

	// Readiness of every service, polled from before the kill.
	probes := []*readiness{{name: "api", url: s.api + "/readyz"}, {name: "scheduler", url: s.sched + "/readyz"}, {name: "monitor", url: s.monitor + "/readyz"}}
	for i, w := range s.workers {
		probes = append(probes, &readiness{name: fmt.Sprintf("worker-%d", i+1), url: w + "/readyz"})
	}
	var killedAt atomic.Pointer[time.Time]
	var probeMu sync.Mutex
	stopProbes := make(chan struct{})
	var probesDone sync.WaitGroup
	hc := &http.Client{Timeout: 3 * time.Second}
	for _, p := range probes {
		probesDone.Add(1)
		go func() {
			defer probesDone.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stopProbes:
					return
				case <-tick.C:
				}
				k := killedAt.Load()
				if k == nil {
					continue
				}
				at := time.Now()
				ok := false
				if resp, err := hc.Get(p.url); err == nil {
					ok = resp.StatusCode == http.StatusOK
					_ = resp.Body.Close()
				}
				probeMu.Lock()
				switch {
				case !ok && !p.sawDown:
					p.sawDown, p.down = true, at
				case ok && p.sawDown && !p.done:
					p.done, p.back = true, at
				}
				probeMu.Unlock()
			}
		}()
	}

	// The load: four clients creating tasks until the failover is over.
	var (
		mu          sync.Mutex
		acked       []string
		ackedAt     [][2]time.Time // sent, answered
		refused     int
		bad         []string
		n           atomic.Int64
		stopLoad    = make(chan struct{})
		loadDone    sync.WaitGroup
		firstRefuse time.Time
	)
	for range 4 {
		loadDone.Add(1)
		go func() {
			defer loadDone.Done()
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				start := time.Now()
				resp, err := admin.CreateTaskWithResponse(context.Background(), nil, task(int(n.Add(1))))
				took := time.Since(start)
				mu.Lock()
				switch {
				case err != nil:
					bad = append(bad, "create: "+err.Error())
				case took > answerBound:
					bad = append(bad, fmt.Sprintf("create answered %d after %s", resp.StatusCode(), took))
				}
				if err == nil {
					switch resp.StatusCode() {
					case http.StatusCreated:
						acked = append(acked, resp.JSON201.TaskId)
						ackedAt = append(ackedAt, [2]time.Time{start, time.Now()})
					case http.StatusServiceUnavailable:
						if refused == 0 {
							firstRefuse = time.Now()
						}
						refused++
					default:
						bad = append(bad, "create answered "+resp.Status()+": "+string(resp.Body))
					}
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}

	time.Sleep(2 * time.Second)
	killed := time.Now()
	killedAt.Store(&killed)
	sen.Master.Kill()
	sen.WaitMaster(sen.Replica.Addr, failoverBound)
	promoted := time.Since(killed)

	// Every service ready again, then 2 s more of load on the new master.
	deadline := killed.Add(failoverBound)
	for {
		probeMu.Lock()
		all := true
		for _, p := range probes {
			all = all && p.done
		}
		probeMu.Unlock()
		if all {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	close(stopLoad)
	loadDone.Wait()
	close(stopProbes)
	probesDone.Wait()

	// Readiness reported the failover window, and each came back in time.
	t.Logf("the Sentinels promoted the replica %s after the master was killed", promoted.Round(time.Millisecond))
	for _, p := range probes {
		require.Truef(t, p.sawDown, "%s: /readyz never reported the failover window%s", p.name, s.logTails())
		require.Truef(t, p.done, "%s: /readyz not ready again within %s of the kill%s\n%s", p.name, failoverBound, s.logTails(), sen.Logs())
		t.Logf("%s: /readyz not ready %s after the kill, ready again after %s",
			p.name, p.down.Sub(killed).Round(time.Millisecond), p.back.Sub(killed).Round(time.Millisecond))
	}
	mu.Lock()
	var firstAck time.Duration = -1
	before, after := 0, 0
	for _, at := range ackedAt {
		if at[0].Before(killed) {
			before++
			continue
		}
		after++
		if firstAck < 0 || at[1].Sub(killed) < firstAck {
			firstAck = at[1].Sub(killed)
		}
	}
	mu.Unlock()
	t.Logf("creates: %d acknowledged sent before the kill, %d sent after it (the first answered 201 %s after it), %d refused with 503",
		before, after, firstAck.Round(time.Millisecond), refused)
	require.Empty(t, bad, "every create answered 201 or 503 within %s%s", answerBound, s.logTails())
	require.Positive(t, before)
	require.Positive(t, after, "no create was acknowledged after the failover")
	require.LessOrEqual(t, firstAck, failoverBound)
	if refused > 0 {
		t.Logf("the first 503 came %s after the kill", firstRefuse.Sub(killed).Round(time.Millisecond))
	}

	// Every acknowledged task completes, with one completed attempt. Read
	// from PostgreSQL: hundreds of tasks polled through the API would hit
	// its rate limits.
	all := append([]string{first}, acked...)
	s.waitAllCompleted(t, all, 90*time.Second)
	var attempts []struct {
		Outcome string
		N       int
	}
	require.NoError(t, s.pg.DB.Raw(`SELECT outcome, count(*) AS n FROM task_attempts GROUP BY outcome ORDER BY outcome`).Scan(&attempts).Error)
	t.Logf("attempts by outcome: %v", attempts)
	var twiceDone []string
	require.NoError(t, s.pg.DB.Raw(`SELECT task_id FROM task_attempts WHERE outcome = 'completed' GROUP BY task_id HAVING count(*) > 1`).Scan(&twiceDone).Error)
	require.Empty(t, twiceDone, "tasks with more than one completed attempt")
	// The rows are exactly the acknowledged tasks: a refused create left none.
	var ids []string
	require.NoError(t, s.pg.DB.Raw(`SELECT id FROM tasks`).Scan(&ids).Error)
	require.ElementsMatch(t, all, ids)
	// Each webhook was delivered exactly once (the receiver sees the task id
	// as the Idempotency-Key); a late duplicate would come within seconds.
	time.Sleep(3 * time.Second)
	perTask := map[string]int{}
	for _, r := range s.hooks.received("/webhook/sentinel") {
		perTask[r.Header.Get("Idempotency-Key")]++
	}
	var twice []string
	for id, c := range perTask {
		if c != 1 {
			twice = append(twice, fmt.Sprintf("%s×%d", id, c))
		}
	}
	sort.Strings(twice)
	require.Empty(t, twice, "webhooks delivered more than once")
	require.Len(t, perTask, len(all), "one delivery per acknowledged task")
	for _, id := range all {
		require.Contains(t, perTask, id)
	}
	_, metrics := s.get(t, s.sched+"/metrics", "")
	var repairs []string
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "taskforge_reconciler_repairs_total{") {
			repairs = append(repairs, line)
		}
	}
	t.Logf("%d acknowledged tasks completed, each delivered once; reconciler repairs: %v", len(all), repairs)
}

// waitAllCompleted waits until every task of ids is completed, reading
// PostgreSQL; a task that ends otherwise fails the test at once.
func (s *stack) waitAllCompleted(t *testing.T, ids []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var rows []struct{ ID, Status string }
		require.NoError(t, s.pg.DB.Raw(`SELECT id, status FROM tasks WHERE id IN ? AND status <> 'completed' ORDER BY id`, ids).Scan(&rows).Error)
		var open []string
		for _, r := range rows {
			if terminal[client.Status(r.Status)] {
				task, _ := getTask(t, s.client(s.adminKey), r.ID)
				t.Fatalf("task %s ended %s: %s%s", r.ID, r.Status, taskJSON(task), s.logTails())
			}
			open = append(open, r.ID+" "+r.Status)
		}
		if len(open) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d tasks not completed after %s: %v%s", len(open), len(ids), within, open[:min(len(open), 10)], s.logTails())
		}
		time.Sleep(pollEvery)
	}
}

// TestSentinelLossyFailover makes the asynchronous replication lose tasks
// and checks the repair: with the low queue paused (and the pause
// replicated), the replica is frozen and cut off (the master drops its
// replication link), tasks are created (acknowledged: their
// rows committed and their messages on the master only), the master is
// killed with SIGKILL and the replica thawed and promoted without them. The
// test checks that the new master has none of those messages — the loss
// happened — and that after the queue is resumed the reconciler enqueues
// every one again: each completes with one completed attempt and its webhook
// delivered once.
func TestSentinelLossyFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs redis-server, redis-sentinel and PostgreSQL")
	}
	sen, s := startSentinelStack(t)
	admin := s.client(s.adminKey)
	ctx := context.Background()
	low := client.Low
	task := func(n int) client.CreateTaskRequest {
		req := newTask("webhook_callback", params{
			"url": s.hooks.srv.URL + "/webhook/lossy", "method": "POST", "payload": map[string]any{"n": n},
		})
		req.Priority = &low
		return req
	}

	pause, err := admin.PauseQueueWithResponse(ctx, client.Low)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, pause.StatusCode(), string(pause.Body))
	master := redis.NewClient(&redis.Options{Addr: sen.Master.Addr})
	defer master.Close()
	// The pause reaches the replica before it is frozen.
	replicated, err := master.Do(ctx, "WAIT", 1, 5000).Int()
	require.NoError(t, err)
	require.Equal(t, 1, replicated, "the replica acknowledged the writes so far")

	// Frozen, the replica would still find in its socket what the master
	// sent it meanwhile: the master also drops the replication link, so
	// nothing written from now on reaches the replica.
	sen.Replica.Freeze()
	_, err = master.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Result()
	require.NoError(t, err)
	var acked []string
	for i := range 20 {
		acked = append(acked, create(t, admin, task(i)))
	}
	for _, id := range acked {
		n, err := master.Exists(ctx, "asynq:{low}:t:"+id).Result()
		require.NoError(t, err)
		require.EqualValues(t, 1, n, "task %s enqueued on the master", id)
	}
	killed := time.Now()
	sen.Master.Kill()
	sen.Replica.Thaw()
	sen.WaitMaster(sen.Replica.Addr, failoverBound)
	t.Logf("the replica was promoted %s after the master was killed", time.Since(killed).Round(time.Millisecond))

	promoted := redis.NewClient(&redis.Options{Addr: sen.Replica.Addr})
	defer promoted.Close()
	lost := 0
	for _, id := range acked {
		n, err := promoted.Exists(ctx, "asynq:{low}:t:"+id).Result()
		require.NoError(t, err)
		lost += int(n ^ 1)
	}
	require.Equal(t, len(acked), lost, "the new master lacks the messages sent while its replica was frozen")
	paused, err := promoted.Exists(ctx, "asynq:{low}:paused").Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, paused, "the pause was replicated")

	// The services follow the new master; then the queue runs again.
	deadline := time.Now().Add(failoverBound)
	for {
		resume, err := admin.ResumeQueueWithResponse(ctx, client.Low)
		require.NoError(t, err)
		if resume.StatusCode() == http.StatusOK {
			break
		}
		require.Truef(t, time.Now().Before(deadline), "resume the low queue: %s %s%s", resume.Status(), resume.Body, s.logTails())
		time.Sleep(200 * time.Millisecond)
	}
	s.waitAllCompleted(t, acked, 90*time.Second)
	var twiceDone []string
	require.NoError(t, s.pg.DB.Raw(`SELECT task_id FROM task_attempts WHERE outcome = 'completed' GROUP BY task_id HAVING count(*) > 1`).Scan(&twiceDone).Error)
	require.Empty(t, twiceDone, "tasks with more than one completed attempt")
	time.Sleep(2 * time.Second)
	perTask := map[string]int{}
	for _, r := range s.hooks.received("/webhook/lossy") {
		perTask[r.Header.Get("Idempotency-Key")]++
	}
	for _, id := range acked {
		require.Equalf(t, 1, perTask[id], "task %s delivered once", id)
	}
	_, metrics := s.get(t, s.sched+"/metrics", "")
	var repairs float64
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "taskforge_reconciler_repairs_total{") {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				repairs += v
			}
		}
	}
	require.GreaterOrEqual(t, repairs, float64(len(acked)), "the reconciler repaired every lost task")
	t.Logf("%d tasks lost by the failover, each enqueued again by the reconciler and completed once", lost)
}

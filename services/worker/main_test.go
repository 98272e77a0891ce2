package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/taskservice/taskservicetest"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/worker/internal/handlers"
)

func TestBinaryDescribesItself(t *testing.T) {
	t.Parallel()
	testenv.RequireSelfDescribingService(t, testenv.BuildBinary(t, "."), "taskforge-worker")
}

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// env is a test's database, Redis database and task service.
type env struct {
	t   *testing.T
	pg  testenv.Postgres
	rd  testenv.Redis
	svc *taskservice.Service
	ins *asynq.Inspector
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ts := taskservicetest.New(t)
	return &env{t: t, pg: ts.PG, rd: ts.RD, svc: ts.Service, ins: ts.Inspector}
}

// proc is a worker process.
type proc struct {
	*testenv.Process
	admin string
}

// start runs a worker process on the test's databases with the scripted test
// handlers; extra are more environment variables.
func (e *env) start(extra ...string) *proc {
	e.t.Helper()
	p := &proc{admin: testenv.FreeAddr(e.t)}
	env := append(os.Environ(),
		"TASKFORGE_DATABASE_URL="+e.pg.URL,
		"TASKFORGE_REDIS_ADDR="+e.rd.Addr,
		"TASKFORGE_REDIS_DB="+strconv.Itoa(e.rd.DB),
		"TASKFORGE_WORKER_ADMIN_ADDR="+p.admin,
		"TASKFORGE_LOG_FORMAT=json",
		"TASKFORGE_LOG_LEVEL=warn",
		"TASKFORGE_STORAGE_LOCAL_DIR="+e.t.TempDir(),
		handlers.EnvTestHandlers+"=1",
	)
	p.Process = testenv.StartProcess(e.t, testenv.BuildBinary(e.t, "."), nil, append(env, extra...))
	p.WaitHTTP(e.t, "http://"+p.admin+"/healthz", 30*time.Second)
	return p
}

// backup creates a backup_data task running the scripted command.
func (e *env) backup(cmd string, policy tasks.RetryPolicy) string {
	e.t.Helper()
	c, err := e.svc.Create(context.Background(), taskservice.CreateRequest{
		Type: tasks.TypeBackupData, Params: json.RawMessage(`{"tables":["` + cmd + `"]}`), RetryPolicy: &policy,
	})
	require.NoError(e.t, err)
	return c.Task.ID
}

func (e *env) task(id string) store.Task {
	e.t.Helper()
	var row store.Task
	require.NoError(e.t, e.pg.DB.Where("id = ?", id).Take(&row).Error)
	return row
}

func (e *env) attempts(id string) []store.TaskAttempt {
	e.t.Helper()
	var rows []store.TaskAttempt
	require.NoError(e.t, e.pg.DB.Where("task_id = ?", id).Order("attempt").Find(&rows).Error)
	return rows
}

func (e *env) waitStatus(id, status string, within time.Duration) store.Task {
	e.t.Helper()
	require.Eventuallyf(e.t, func() bool { return e.task(id).Status == status }, within, 100*time.Millisecond,
		"task %s never reached %s", id, status)
	return e.task(id)
}

var policy = tasks.RetryPolicy{MaxRetries: 2, RetryDelay: 1, MaxRetryDelay: 1}

// TestSIGKILLRecovery kills a worker in the middle of a task: Asynq's lease
// recovery hands the task to another worker (60–120 s), whose start closes the
// dead attempt as lost and completes the task.
func TestSIGKILLRecovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.start()
	id := e.backup("sleep_3000", policy)
	require.Eventually(t, func() bool { r := e.task(id); return r.Status == tasks.StatusRunning && r.Progress > 0 },
		20*time.Second, 50*time.Millisecond)
	a.Kill()
	killed := time.Now()
	e.start()
	row := e.waitStatus(id, tasks.StatusCompleted, 150*time.Second)
	t.Logf("task recovered and completed %s after the kill", time.Since(killed).Round(time.Second))
	require.Equal(t, 2, row.Attempt)
	att := e.attempts(id)
	require.Len(t, att, 2)
	require.Equal(t, "lost", att[0].Outcome)
	require.NotNil(t, att[0].FinishedAt)
	require.Equal(t, "completed", att[1].Outcome)
}

// TestSIGTERMDrainLosesNoTask stops a worker while it runs short and long
// tasks: the short ones finish within the shutdown timeout, the long ones are
// pushed back to the queue and another worker completes them.
func TestSIGTERMDrainLosesNoTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// backup_data (the scripted type) is limited to 2 by default: lift that.
	lift := "TASKFORGE_WORKER_TYPE_LIMITS=backup_data=6"
	a := e.start("TASKFORGE_WORKER_SHUTDOWN_TIMEOUT=3s", "TASKFORGE_WORKER_CONCURRENCY=6", lift)
	var short, long []string
	for i := 0; i < 4; i++ {
		short = append(short, e.backup("sleep_1500", policy))
	}
	for i := 0; i < 2; i++ {
		long = append(long, e.backup("sleep_8000", policy))
	}
	all := append(append([]string{}, short...), long...)
	require.Eventually(t, func() bool {
		running := true
		for _, id := range all {
			running = running && e.task(id).Status == tasks.StatusRunning
		}
		return running
	}, 20*time.Second, 50*time.Millisecond, "tasks not all running")
	stopped := time.Now()
	require.NoError(t, a.Stop(t, syscall.SIGTERM, 30*time.Second), "the worker exits cleanly")
	t.Logf("worker drained in %s", time.Since(stopped).Round(100*time.Millisecond))
	for _, id := range short {
		require.Equal(t, tasks.StatusCompleted, e.task(id).Status, "short tasks finish within the shutdown timeout")
	}
	for _, id := range long {
		r := e.task(id)
		require.Equal(t, tasks.StatusRetrying, r.Status)
		require.Contains(t, string(r.Error), "interrupted")
		info, err := e.ins.GetTaskInfo("low", id)
		require.NoError(t, err, "the interrupted task is back in its queue")
		require.Equal(t, asynq.TaskStatePending, info.State)
	}
	e.start(lift)
	for _, id := range long {
		row := e.waitStatus(id, tasks.StatusCompleted, 30*time.Second)
		require.Equal(t, 2, row.Attempt)
	}
}

// TestTypeLimitAcrossProcesses runs two worker processes with backup_data
// limited to 2 at once cluster-wide.
func TestTypeLimitAcrossProcesses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	limits := "TASKFORGE_WORKER_TYPE_LIMITS=backup_data=2"
	p1 := e.start(limits)
	p2 := e.start(limits)
	var ids []string
	for i := 0; i < 6; i++ {
		ids = append(ids, e.backup("sleep_1200", policy))
	}
	peak := 0
	workers := map[string]bool{}
	require.Eventually(t, func() bool {
		var running int64
		require.NoError(t, e.pg.DB.Model(&store.Task{}).Where("status = 'running'").Count(&running).Error)
		peak = max(peak, int(running))
		var done int64
		require.NoError(t, e.pg.DB.Model(&store.Task{}).Where("status = 'completed'").Count(&done).Error)
		return done == int64(len(ids))
	}, 60*time.Second, 20*time.Millisecond)
	require.LessOrEqual(t, peak, 2, "at most two backup_data run at once across both workers")
	require.Equal(t, 2, peak)
	for _, id := range ids {
		r := e.task(id)
		require.Equal(t, 1, r.Attempt, "waiting for a slot spends no attempt")
		workers[r.WorkerID] = true
	}
	t.Logf("tasks ran on %d workers", len(workers))

	// Both export their state; the completions are counted by whichever
	// process ran them (one may have run all six).
	var all string
	for _, p := range []*proc{p1, p2} {
		resp, err := http.Get("http://" + p.admin + "/metrics")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Contains(t, string(body), "taskforge_worker_up 1")
		require.Contains(t, string(body), testenv.BuildInfoMetric())
		all += string(body)
	}
	require.Contains(t, all, `taskforge_tasks_processed_total{outcome="completed",type="backup_data"}`)
	resp, err := http.Get("http://" + p1.admin + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

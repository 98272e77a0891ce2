package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"

	"github.com/taskforge/taskforge/services/api/client"
)

// TestWorkflowSurvivesASchedulerKill: the scheduler, which advances
// workflows, is killed (SIGKILL) while a step runs; the step completes with
// nobody to advance its workflow, and the scheduler started again creates the
// next step's task, exactly one, and the workflow completes.
func TestWorkflowSurvivesASchedulerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs PostgreSQL and Redis")
	}
	s := startStack(t)
	admin := s.client(s.adminKey)
	ctx := context.Background()
	hook, release := heldReceiver(t, "")
	deps := []string{"a"}
	resp, err := admin.CreateWorkflowWithResponse(ctx, client.WorkflowInput{Name: "crash", Steps: []client.WorkflowStepInput{
		{Id: "a", Type: "webhook_callback", Params: hook("/a")},
		{Id: "b", Type: "webhook_callback", Params: hook("/b"), DependsOn: &deps},
	}})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode(), string(resp.Body))
	id := resp.JSON201.WorkflowId
	a := *(*resp.JSON201.Steps)[0].TaskId
	s.waitStatus(t, admin, a, client.StatusRunning, taskWithin)

	// The killed scheduler leaves the stack's processes: it exits by no
	// SIGTERM of the stack's.
	var sched *proc
	for i, p := range s.procs {
		if p.name == "scheduler" {
			sched = p
			s.procs = append(s.procs[:i], s.procs[i+1:]...)
			break
		}
	}
	require.NotNil(t, sched)
	sched.Kill()
	release() // a completes, and the next step waits for an advance
	s.waitStatus(t, admin, a, client.StatusCompleted, taskWithin)
	var wakeups int64
	require.Eventually(t, func() bool {
		require.NoError(t, s.pg.DB.Table("workflow_wakeups").Where("workflow_id = ?", id).Count(&wakeups).Error)
		return wakeups > 0
	}, eventWithin, pollEvery, "a's completion left its workflow due")
	time.Sleep(time.Second) // nobody advances it meanwhile
	var tasks int64
	require.NoError(t, s.pg.DB.Table("tasks").Where("workflow_id = ?", id).Count(&tasks).Error)
	require.EqualValues(t, 1, tasks, "no scheduler, no next step")

	s.waitReady(s.start("scheduler", "scheduler", s.sched+"/readyz"))
	require.Eventually(t, func() bool {
		w, err := admin.GetWorkflowWithResponse(ctx, id)
		require.NoError(t, err)
		return w.JSON200 != nil && w.JSON200.Status == client.WorkflowStatusCompleted
	}, taskWithin, pollEvery, "the restarted scheduler advanced the workflow%s", s.logTails())
	require.NoError(t, s.pg.DB.Table("tasks").Where("workflow_id = ?", id).Count(&tasks).Error)
	require.EqualValues(t, 2, tasks, "exactly one task for the next step")
}

// TestWorkflowSurvivesAWorkerKill: every worker is killed (SIGKILL) the
// moment a step's completion is in PostgreSQL — its handler may not even
// have told Asynq — and the next step (in the paused low queue, so that no
// worker takes it before the kill) still gets exactly one task, which a new
// worker runs once the queue resumes; the workflow completes.
func TestWorkflowSurvivesAWorkerKill(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs PostgreSQL and Redis")
	}
	s := startStack(t)
	admin := s.client(s.adminKey)
	ctx := context.Background()
	hook, release := heldReceiver(t, "/a")
	pause, err := admin.PauseQueueWithResponse(ctx, client.Low)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, pause.StatusCode(), string(pause.Body))
	deps, low := []string{"a"}, client.Low
	resp, err := admin.CreateWorkflowWithResponse(ctx, client.WorkflowInput{Name: "worker-crash", Steps: []client.WorkflowStepInput{
		{Id: "a", Type: "webhook_callback", Params: hook("/a")},
		{Id: "b", Type: "webhook_callback", Params: hook("/b"), DependsOn: &deps, Priority: &low},
	}})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode(), string(resp.Body))
	id := resp.JSON201.WorkflowId
	a := *(*resp.JSON201.Steps)[0].TaskId
	s.waitStatus(t, admin, a, client.StatusRunning, taskWithin)

	var workers []*proc
	kept := s.procs[:0]
	for _, p := range s.procs {
		if strings.HasPrefix(p.name, "worker-") {
			workers = append(workers, p)
		} else {
			kept = append(kept, p)
		}
	}
	s.procs = kept
	require.Len(t, workers, 2)
	release()
	require.Eventually(t, func() bool {
		var st string
		require.NoError(t, s.pg.DB.Table("tasks").Select("status").Where("id = ?", a).Scan(&st).Error)
		return st == string(client.StatusCompleted)
	}, taskWithin, time.Millisecond, "a never completed")
	for _, w := range workers {
		w.Kill()
	}

	var next []struct{ ID, Status string }
	require.Eventually(t, func() bool {
		require.NoError(t, s.pg.DB.Raw(`SELECT id, status FROM tasks WHERE workflow_id = ? AND step_id = 'b'`, id).Scan(&next).Error)
		return len(next) == 1
	}, taskWithin, pollEvery, "the next step's task was never created")
	require.Equal(t, string(client.StatusPending), next[0].Status, "b waits in the paused queue")

	admin2 := testenv.FreeAddr(t)
	s.waitReady(s.start("worker-3", "worker", "http://"+admin2+"/readyz", "TASKFORGE_WORKER_ADMIN_ADDR="+admin2))
	resume, err := admin.ResumeQueueWithResponse(ctx, client.Low)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resume.StatusCode(), string(resume.Body))
	require.Eventually(t, func() bool {
		w, err := admin.GetWorkflowWithResponse(ctx, id)
		require.NoError(t, err)
		return w.JSON200 != nil && w.JSON200.Status == client.WorkflowStatusCompleted
	}, taskWithin, pollEvery, "the workflow did not complete after the kill%s", s.logTails())
	var tasks int64
	require.NoError(t, s.pg.DB.Table("tasks").Where("workflow_id = ?", id).Count(&tasks).Error)
	require.EqualValues(t, 2, tasks, "exactly one task for the next step")
	var attempts int64
	require.NoError(t, s.pg.DB.Table("task_attempts").Where("task_id = ?", next[0].ID).Count(&attempts).Error)
	require.EqualValues(t, 1, attempts, "the next step ran once")
}

// heldReceiver is the webhook receiver of the steps: hook(path) is a
// webhook_callback's params posting to path; a request to held (every one
// when held is "") is answered only once release is called (at the end of
// the test at the latest).
func heldReceiver(t *testing.T, held string) (hook func(path string) *map[string]interface{}, release func()) {
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if held == "" || r.URL.Path == held {
			select {
			case <-ch:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(release)
	hook = func(path string) *map[string]interface{} {
		return &map[string]interface{}{"url": srv.URL + path, "payload": map[string]any{"step": path}}
	}
	return hook, release
}

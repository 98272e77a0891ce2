package workflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/taskservice/taskservicetest"
	"github.com/taskforge/taskforge/pkg/worker"
	"github.com/taskforge/taskforge/pkg/workflow"
)

var operator = auth.Principal{ID: "key_op", Name: "op", Role: auth.Operator}

// bench is a workflow service on a real PostgreSQL and Redis, a worker
// runtime running calculate_metrics as each test scripts it, and (when
// started) the advancer's listener.
type bench struct {
	t   *testing.T
	env taskservicetest.Env
	wf  *workflow.Service
	log *zap.Logger

	mu      sync.Mutex
	started map[string]time.Time // by portfolio id
	ended   map[string]time.Time
	// script says what calculate_metrics does for a portfolio id: nil
	// completes at once with {"portfolio_id", "next": id+"_next"}.
	script map[string]func(ctx context.Context) error
}

// creator wraps the task service; failAfterCreate makes the next creation
// report a failure after its task was created (an advancer that died between
// creating a step's task and committing its advance).
type creator struct {
	*taskservice.Service
	failAfterCreate atomic.Bool
	creates         atomic.Int32
}

func (c *creator) Create(ctx context.Context, req taskservice.CreateRequest) (taskservice.Created, error) {
	out, err := c.Service.Create(ctx, req)
	c.creates.Add(1)
	if err == nil && c.failAfterCreate.CompareAndSwap(true, false) {
		return taskservice.Created{}, errors.New("the advancer died")
	}
	return out, err
}

func newBench(t *testing.T) (*bench, *creator) {
	t.Helper()
	env := taskservicetest.New(t)
	b := &bench{t: t, env: env, log: env.Log, started: map[string]time.Time{}, ended: map[string]time.Time{},
		script: map[string]func(context.Context) error{}}
	handler := job.Typed(func(ctx context.Context, r job.Reporter, p *taskpb.CalculateMetricsParams) error {
		id := p.GetPortfolioId()
		b.mu.Lock()
		b.started[id] = time.Now()
		run := b.script[id]
		b.mu.Unlock()
		defer func() {
			b.mu.Lock()
			b.ended[id] = time.Now()
			b.mu.Unlock()
		}()
		if run != nil {
			if err := run(ctx); err != nil {
				return err
			}
		}
		return r.SetResult(map[string]any{"portfolio_id": id, "next": id + "_next", "window_days": p.GetWindowDays()})
	})
	rt, err := worker.New(env.PG.DB, env.RD.Client, env.Inspector, env.Log, worker.Options{
		WorkerID: "wf-worker", Handlers: map[string]job.Handler{tasks.TypeCalculateMetrics: handler},
		Registerer: prometheus.NewRegistry(), CancelPollInterval: 100 * time.Millisecond, StopGrace: time.Second,
		FlushInterval: 10 * time.Millisecond,
	})
	require.NoError(t, err)
	srv := asynq.NewServer(env.RD.Opt(), rt.AsynqConfig(worker.ServerOptions{
		Concurrency: 8, StrictPriority: true, ShutdownTimeout: 3 * time.Second, TaskCheckInterval: 20 * time.Millisecond,
	}))
	require.NoError(t, srv.Start(rt))
	t.Cleanup(func() {
		srv.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rt.Close(ctx)
	})
	c := &creator{Service: env.Service}
	metrics, err := workflow.NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	b.wf, err = workflow.New(env.PG.DB, c, env.Log, workflow.Options{Metrics: metrics})
	require.NoError(t, err)
	return b, c
}

// listen runs the advancer until the test ends.
func (b *bench) listen() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.wf.Run(ctx, 200*time.Millisecond) }()
	b.t.Cleanup(func() { cancel(); <-done })
}

func step(id, portfolio string, deps ...string) workflow.Step {
	return workflow.Step{ID: id, DependsOn: deps, Task: taskservice.CreateRequest{
		Type: tasks.TypeCalculateMetrics, Params: json.RawMessage(fmt.Sprintf(`{"portfolio_id":%q}`, portfolio))}}
}

func (b *bench) create(steps ...workflow.Step) workflow.View {
	b.t.Helper()
	v, err := b.wf.Create(context.Background(), operator, workflow.Definition{Name: b.t.Name(), Steps: steps}, "req-1")
	require.NoError(b.t, err)
	return v
}

// waitStatus waits until workflow id has status want and returns it.
func (b *bench) waitStatus(id, want string) workflow.View {
	b.t.Helper()
	var v workflow.View
	require.Eventuallyf(b.t, func() bool {
		var err error
		v, err = b.wf.Get(context.Background(), operator, id)
		require.NoError(b.t, err)
		return v.Status == want
	}, 30*time.Second, 20*time.Millisecond, "workflow %s never %s: %+v", id, want, &v)
	return v
}

func stepOf(v workflow.View, id string) workflow.StepView {
	for _, s := range v.Steps {
		if s.ID == id {
			return s
		}
	}
	return workflow.StepView{}
}

func (b *bench) taskCount(wfID string) int64 {
	var n int64
	require.NoError(b.t, b.env.PG.DB.Table("tasks").Where("workflow_id = ?", wfID).Count(&n).Error)
	return n
}

// TestDiamondRunsInDependencyOrder: a → b, c → d runs a first, b and c at the
// same time (each waits until the other has started), d last, and every step
// as one task owned by the workflow's creator.
func TestDiamondRunsInDependencyOrder(t *testing.T) {
	b, _ := newBench(t)
	b.listen()
	var both sync.WaitGroup
	both.Add(2)
	meet := func(ctx context.Context) error {
		both.Done()
		ok := make(chan struct{})
		go func() { both.Wait(); close(ok) }()
		select {
		case <-ok:
			return nil
		case <-time.After(10 * time.Second):
			return job.Permanent(errors.New("b and c did not run in parallel"))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.script["pf_b"], b.script["pf_c"] = meet, meet
	v := b.create(step("d", "pf_d", "b", "c"), step("b", "pf_b", "a"), step("c", "pf_c", "a"), step("a", "pf_a"))
	require.Equal(t, workflow.StatusRunning, v.Status)
	require.NotEmpty(t, stepOf(v, "a").TaskID, "a step without dependencies starts at once")
	// b may have its task already when a was quick; that it started only
	// after a ended is checked below.
	v = b.waitStatus(v.ID, workflow.StatusCompleted)
	for _, s := range v.Steps {
		require.Equal(t, workflow.StatusCompleted, s.Status, s.ID)
	}
	b.mu.Lock()
	started, ended := maps.Clone(b.started), maps.Clone(b.ended)
	b.mu.Unlock()
	require.False(t, started["pf_b"].Before(ended["pf_a"]), "b after a")
	require.False(t, started["pf_c"].Before(ended["pf_a"]), "c after a")
	require.False(t, started["pf_d"].Before(ended["pf_b"]), "d after b")
	require.False(t, started["pf_d"].Before(ended["pf_c"]), "d after c")
	var rows []store.Task
	require.NoError(t, b.env.PG.DB.Where("workflow_id = ?", v.ID).Find(&rows).Error)
	require.Len(t, rows, 4)
	for _, r := range rows {
		require.Equal(t, operator.ID, r.CreatedBy)
		require.NotNil(t, r.StepID)
	}
	// The advance that saw d completed may have read its wakeups just
	// before d's own was written; that one is served by the advance its
	// notification starts, a moment after the status reads completed.
	require.Eventually(t, func() bool {
		var wakeups int64
		require.NoError(t, b.env.PG.DB.Table("workflow_wakeups").Where("workflow_id = ?", v.ID).Count(&wakeups).Error)
		return wakeups == 0
	}, 10*time.Second, 20*time.Millisecond, "every wakeup was served")
}

// TestFailedStepCancelsItsDependents: a step that fails for good cancels its
// dependents, transitively, without running them; an independent branch
// still runs; the workflow ends failed. Retrying the failed step by hand
// re-opens the workflow and its dependents then run.
func TestFailedStepCancelsItsDependents(t *testing.T) {
	b, _ := newBench(t)
	b.listen()
	var fail atomic.Bool
	fail.Store(true)
	b.script["pf_a"] = func(context.Context) error {
		if fail.Load() {
			return job.Permanent(errors.New("no holdings"))
		}
		return nil
	}
	v := b.create(step("a", "pf_a"), step("b", "pf_b", "a"), step("c", "pf_c", "b"), step("x", "pf_x"))
	v = b.waitStatus(v.ID, workflow.StatusFailed)
	require.Equal(t, tasks.StatusFailed, stepOf(v, "a").Status)
	for _, id := range []string{"b", "c"} {
		require.Equal(t, workflow.StatusCancelled, stepOf(v, id).Status, id)
		require.Empty(t, stepOf(v, id).TaskID, "%s never got a task", id)
	}
	require.Equal(t, workflow.StatusCompleted, stepOf(v, "x").Status, "the independent branch ran")
	b.mu.Lock()
	_, ranB := b.started["pf_b"]
	b.mu.Unlock()
	require.False(t, ranB)

	fail.Store(false)
	_, err := b.env.Service.Retry(context.Background(), operator, stepOf(v, "a").TaskID)
	require.NoError(t, err)
	v = b.waitStatus(v.ID, workflow.StatusCompleted)
	require.NotNil(t, v.CompletedAt, "a completed workflow has its end time")
	require.EqualValues(t, 4, b.taskCount(v.ID))
}

// TestCancelStopsTheRunningStep: cancelling a workflow mid-run stops its
// running step (as a task cancel does) and creates no later step.
func TestCancelStopsTheRunningStep(t *testing.T) {
	b, _ := newBench(t)
	b.listen()
	running := make(chan struct{})
	b.script["pf_a"] = func(ctx context.Context) error {
		close(running)
		<-ctx.Done()
		return ctx.Err()
	}
	v := b.create(step("a", "pf_a"), step("b", "pf_b", "a"))
	<-running
	_, err := b.wf.Cancel(context.Background(), operator, v.ID, "req-2")
	require.NoError(t, err)
	v = b.waitStatus(v.ID, workflow.StatusCancelled)
	require.Equal(t, tasks.StatusCancelled, stepOf(v, "a").Status)
	require.Equal(t, workflow.StatusCancelled, stepOf(v, "b").Status)
	require.EqualValues(t, 1, b.taskCount(v.ID), "no later step was created")
	_, err = b.wf.Cancel(context.Background(), operator, v.ID, "req-3")
	require.ErrorIs(t, err, workflow.ErrConflict)
}

// TestAdvanceAfterACrashCreatesTheStepOnce: when nobody advances the
// workflow as its step completes (the advancer was down), the wakeup
// written with the completion stays; an advance that dies after creating
// the next step's task but before committing is repeated; concurrent
// advances then leave exactly one task for the step.
func TestAdvanceAfterACrashCreatesTheStepOnce(t *testing.T) {
	b, c := newBench(t)
	v := b.create(step("a", "pf_a"), step("b", "pf_b", "a"))
	require.Eventually(t, func() bool {
		var n int64
		require.NoError(t, b.env.PG.DB.Table("workflow_wakeups").Where("workflow_id = ?", v.ID).Count(&n).Error)
		return n > 0
	}, 20*time.Second, 20*time.Millisecond, "a's completion left a wakeup")
	require.EqualValues(t, 1, b.taskCount(v.ID))

	c.failAfterCreate.Store(true)
	require.Error(t, b.wf.Advance(context.Background(), v.ID, ""))
	require.EqualValues(t, 2, b.taskCount(v.ID), "the dead advance's task exists")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(t, b.wf.Advance(context.Background(), v.ID, "")) }()
	}
	wg.Wait()
	require.EqualValues(t, 2, b.taskCount(v.ID), "one task for b however many advances")
	b.listen()
	b.waitStatus(v.ID, workflow.StatusCompleted)
}

// TestParamsFromADependencysResult: a step takes a param from its
// dependency's result; a pointer to nothing fails its step with the reason,
// cancels its dependents, and the workflow ends failed.
func TestParamsFromADependencysResult(t *testing.T) {
	b, _ := newBench(t)
	b.listen()
	// b's required portfolio_id exists only once a has run.
	fromA := step("b", "", "a")
	fromA.Task.Params = json.RawMessage(`{"window_days":30}`)
	fromA.ParamsFrom = map[string]string{"portfolio_id": "/steps/a/result/next"}
	bad := step("c", "pf_c", "a")
	bad.ParamsFrom = map[string]string{"portfolio_id": "/steps/a/result/missing"}
	v := b.create(step("a", "pf_a"), fromA, bad, step("d", "pf_d", "c"))
	v = b.waitStatus(v.ID, workflow.StatusFailed)
	require.Equal(t, workflow.StatusCompleted, stepOf(v, "b").Status)
	var row store.Task
	require.NoError(t, b.env.PG.DB.Take(&row, "id = ?", stepOf(v, "b").TaskID).Error)
	require.JSONEq(t, `{"portfolio_id":"pf_a_next","window_days":30}`, string(row.Params))
	c := stepOf(v, "c")
	require.Equal(t, workflow.StatusFailed, c.Status)
	require.Empty(t, c.TaskID)
	require.Contains(t, c.Error, `has no member "missing"`)
	require.Equal(t, workflow.StatusCancelled, stepOf(v, "d").Status)
}

// TestCreateRefusesBadWorkflows: a cycle, an unknown dependency, a
// duplicate id, bad params and a pointer into a step not depended on are
// 422s naming the step and field; a viewer may not create one; an
// operator may not run an admin-only type.
func TestCreateRefusesBadWorkflows(t *testing.T) {
	b, _ := newBench(t)
	ctx := context.Background()
	fieldOf := func(def workflow.Definition, p auth.Principal) string {
		_, err := b.wf.Create(ctx, p, def, "")
		v, ok := tasks.AsValidation(err)
		require.Truef(t, ok, "want a validation error, got %v", err)
		return v.Errors[0].Field + ": " + v.Errors[0].Message
	}
	def := func(steps ...workflow.Step) workflow.Definition {
		return workflow.Definition{Name: "bad", Steps: steps}
	}
	require.Equal(t, "steps[0].depends_on: forms a cycle: a → c → b → a",
		fieldOf(def(step("a", "p", "c"), step("b", "p", "a"), step("c", "p", "b")), operator))
	require.Contains(t, fieldOf(def(step("a", "p", "zz")), operator), "steps[0].depends_on[0]: names no step")
	require.Contains(t, fieldOf(def(step("a", "p"), step("a", "p")), operator), "steps[1].id: repeats")
	badParams := step("a", "p")
	badParams.Task.Params = json.RawMessage(`{"portfolio_id":"p","window_days":1}`)
	require.Contains(t, fieldOf(def(badParams), operator), "steps[0].params.window_days")
	stray := step("b", "p")
	stray.ParamsFrom = map[string]string{"portfolio_id": "/steps/a/result/next"}
	require.Contains(t, fieldOf(def(step("a", "p"), stray), operator), "steps[1].params_from.portfolio_id: points into the result of \"a\"")
	admin := workflow.Step{ID: "m", Task: taskservice.CreateRequest{Type: tasks.TypeOptimizeDatabase}}
	require.Contains(t, fieldOf(def(admin), operator), "steps[0].type: only admins")
	_, err := b.wf.Create(ctx, auth.Principal{ID: "key_v", Role: auth.Viewer}, def(step("a", "p")), "")
	require.ErrorIs(t, err, workflow.ErrForbidden)
	var n int64
	require.NoError(t, b.env.PG.DB.Table("workflows").Count(&n).Error)
	require.Zero(t, n, "nothing refused was written")
}

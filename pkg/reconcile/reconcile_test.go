package reconcile_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/lifecycle/lifecycletest"
	"github.com/taskforge/taskforge/pkg/reconcile"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/taskservice/taskservicetest"
	"github.com/taskforge/taskforge/pkg/testenv"
)

type testBundle struct {
	pg        testenv.Postgres
	rd        testenv.Redis
	svc       *taskservice.Service
	inspector *asynq.Inspector
	rec       *reconcile.Reconciler
	reg       *prometheus.Registry
}

// setup builds a reconciler whose clock runs a minute ahead, so that rows
// just written count as old enough to repair.
func setup(t *testing.T) testBundle {
	t.Helper()
	e := taskservicetest.New(t)
	reg := prometheus.NewRegistry()
	rec, err := reconcile.New(e.PG.DB, e.RD.Client, e.Inspector, e.Service, e.Log, reg, reconcile.Options{
		BatchSize: 7, LostGrace: time.Minute, Now: func() time.Time { return time.Now().Add(time.Minute) },
	})
	require.NoError(t, err)
	return testBundle{pg: e.PG, rd: e.RD, svc: e.Service, inspector: e.Inspector, rec: rec, reg: reg}
}

func (b testBundle) createTask(t *testing.T, typ, params string) store.Task {
	t.Helper()
	c, err := b.svc.Create(context.Background(), taskservice.CreateRequest{Type: typ, Params: json.RawMessage(params), CreatedBy: "u1"})
	require.NoError(t, err)
	return c.Task
}

func (b testBundle) row(t *testing.T, id string) store.Task {
	t.Helper()
	var row store.Task
	require.NoError(t, b.pg.DB.Take(&row, "id = ?", id).Error)
	return row
}

func queued(t *testing.T, insp *asynq.Inspector, queue string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		insp.ListPendingTasks, insp.ListScheduledTasks, insp.ListRetryTasks,
	} {
		infos, err := list(queue, asynq.PageSize(1000))
		if err != nil {
			continue // queue gone
		}
		for _, i := range infos {
			out[i.ID]++
		}
	}
	return out
}

// TestFlushDBRestoresPendingTasks: Redis loses everything (FLUSHDB on the
// test's own database); one pass re-enqueues every pending task under its
// id, a second pass finds nothing to do, and no task is queued twice.
func TestFlushDBRestoresPendingTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const n = 40
	ids := map[string]bool{}
	for range n {
		ids[b.createTask(t, tasks.TypeRefreshPortfolio, `{"portfolio_id":"pf_1"}`).ID] = true
	}
	later := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	c, err := b.svc.Create(ctx, taskservice.CreateRequest{Type: tasks.TypeRefreshAllPrices, ScheduledFor: &later, CreatedBy: "u1"})
	require.NoError(t, err)
	require.NoError(t, b.rd.Client.FlushDB(ctx).Err())

	rep, err := b.rec.Pass(ctx)
	require.NoError(t, err)
	require.True(t, rep.Ran)
	require.Equal(t, n+1, rep.Repairs[reconcile.KindRequeued])
	require.Equal(t, float64(n+1), repairsCounted(t, b.reg, reconcile.KindRequeued))

	got := queued(t, b.inspector, "normal")
	require.Len(t, got, n+1)
	for id := range ids {
		require.Equal(t, 1, got[id], "task %s queued once", id)
	}
	info, err := b.inspector.GetTaskInfo("normal", c.Task.ID)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateScheduled, info.State, "a task for later keeps its time")
	require.WithinDuration(t, later, info.NextProcessAt, time.Second)
	env, err := tasks.DecodeEnvelope(info.Payload)
	require.NoError(t, err)
	require.Equal(t, c.Task.ID, env.GetTaskId())

	rep, err = b.rec.Pass(ctx)
	require.NoError(t, err)
	require.Empty(t, rep.Repairs, "nothing left to repair")
	require.Len(t, queued(t, b.inspector, "normal"), n+1)
}

// startAttempt makes a row look like a worker took it: running, attempt n,
// with its attempt row, and removes it from Asynq (the worker vanished with
// Redis' copy, or Redis lost it).
func (b testBundle) startAttempt(t *testing.T, task store.Task, attempt int, started time.Time) {
	t.Helper()
	require.NoError(t, lifecycletest.Force(b.pg.DB, task.ID, `status = 'running', attempt = ?, worker_id = 'w1', started_at = ?, updated_at = ?`,
		attempt, started, started))
	require.NoError(t, b.pg.DB.Create(&store.TaskAttempt{TaskID: task.ID, Attempt: attempt, Worker: "w1", StartedAt: started, Outcome: "running"}).Error)
	require.NoError(t, b.inspector.DeleteTask(task.Priority, task.ID))
}

// TestRunningTaskWhoseWorkerVanished is retried while it has budget left and
// fails with error kind "lost" when it has none.
func TestRunningTaskWhoseWorkerVanished(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	now := time.Now().UTC()
	withBudget := b.createTask(t, tasks.TypeRefreshPortfolio, `{"portfolio_id":"pf_1"}`)
	b.startAttempt(t, withBudget, 1, now)
	spent := b.createTask(t, tasks.TypeRefreshPortfolio, `{"portfolio_id":"pf_2"}`)
	b.startAttempt(t, spent, 4, now) // 1 + max_retries (3) attempts used

	rep, err := b.rec.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{reconcile.KindLostRetried: 1, reconcile.KindLostFailed: 1}, rep.Repairs)

	row := b.row(t, withBudget.ID)
	require.Equal(t, tasks.StatusRetrying, row.Status)
	require.JSONEq(t, `{"kind":"lost","attempt":1,"message":"task lost: its worker vanished and the queue no longer holds it"}`, string(row.Error))
	info, err := b.inspector.GetTaskInfo(row.Priority, row.ID)
	require.NoError(t, err)
	require.Equal(t, 2, info.MaxRetry, "the delivery carries what is left of the budget")
	var att store.TaskAttempt
	require.NoError(t, b.pg.DB.Take(&att, "task_id = ? AND attempt = 1", row.ID).Error)
	require.Equal(t, "lost", att.Outcome)
	require.Equal(t, "lost", att.ErrorKind)
	require.NotNil(t, att.FinishedAt)

	row = b.row(t, spent.ID)
	require.Equal(t, tasks.StatusFailed, row.Status)
	require.NotNil(t, row.CompletedAt)
	var lostErr struct {
		Kind    string `json:"kind"`
		Attempt int    `json:"attempt"`
	}
	require.NoError(t, json.Unmarshal(row.Error, &lostErr))
	require.Equal(t, "lost", lostErr.Kind)
	require.Equal(t, 4, lostErr.Attempt)
	_, err = b.inspector.GetTaskInfo(row.Priority, row.ID)
	require.ErrorIs(t, err, asynq.ErrTaskNotFound)

	rep, err = b.rec.Pass(ctx)
	require.NoError(t, err)
	require.Empty(t, rep.Repairs)
}

// TestCancelledTaskLeftInQueueIsRemoved: the row says cancelled, Asynq still
// holds the task (the cancel's Redis call never happened).
func TestCancelledTaskLeftInQueueIsRemoved(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	task := b.createTask(t, tasks.TypeRefreshPortfolio, `{"portfolio_id":"pf_1"}`)
	require.NoError(t, lifecycletest.Force(b.pg.DB, task.ID, `status = 'cancelled', cancel_requested = true, updated_at = now()`))
	rep, err := b.rec.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{reconcile.KindCancelRemoved: 1}, rep.Repairs)
	_, err = b.inspector.GetTaskInfo(task.Priority, task.ID)
	require.ErrorIs(t, err, asynq.ErrTaskNotFound)
}

// TestOneReplicaAtATime: while another replica holds the advisory lock, a
// pass does nothing.
func TestOneReplicaAtATime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	task := b.createTask(t, tasks.TypeRefreshPortfolio, `{"portfolio_id":"pf_1"}`)
	require.NoError(t, b.inspector.DeleteTask(task.Priority, task.ID))

	conn, err := b.pg.SQL.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	var got bool
	require.NoError(t, conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, 0x7ec0c11e).Scan(&got))
	require.True(t, got)
	rep, err := b.rec.Pass(ctx)
	require.NoError(t, err)
	require.False(t, rep.Ran)
	_, err = conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, 0x7ec0c11e)
	require.NoError(t, err)

	rep, err = b.rec.Pass(ctx)
	require.NoError(t, err)
	require.True(t, rep.Ran)
	require.Equal(t, 1, rep.Repairs[reconcile.KindRequeued])
}

// TestYoungRowsAreLeftAlone: a row written moments ago may be between its
// insert and its enqueue; the reconciler waits MinAge before touching it.
func TestYoungRowsAreLeftAlone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	task := b.createTask(t, tasks.TypeRefreshPortfolio, `{"portfolio_id":"pf_1"}`)
	require.NoError(t, b.inspector.DeleteTask(task.Priority, task.ID))
	rec, err := reconcile.New(b.pg.DB, b.rd.Client, b.inspector, b.svc, zap.NewNop(), nil, reconcile.Options{MinAge: time.Hour})
	require.NoError(t, err)
	rep, err := rec.Pass(ctx)
	require.NoError(t, err)
	require.True(t, rep.Ran)
	require.Empty(t, rep.Repairs)
}

func repairsCounted(t *testing.T, reg *prometheus.Registry, kind string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "taskforge_reconciler_repairs_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestRunningTaskPastTimeoutAndGrace: Asynq still shows the task active (a
// worker holds its lease) but the attempt started longer ago than its timeout
// plus the grace: the worker is told to stop and the task fails as lost.
func TestRunningTaskPastTimeoutAndGrace(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	task := b.createTask(t, tasks.TypeRefreshPortfolio, `{"portfolio_id":"pf_1"}`)
	started := make(chan struct{})
	stopped := make(chan struct{})
	srv := asynq.NewServer(b.rd.Opt(), asynq.Config{
		Concurrency: 1, Queues: map[string]int{"normal": 1}, TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.ErrorLevel,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour },
	})
	require.NoError(t, srv.Start(asynq.HandlerFunc(func(hctx context.Context, _ *asynq.Task) error {
		close(started)
		<-hctx.Done()
		close(stopped)
		return hctx.Err()
	})))
	t.Cleanup(srv.Shutdown)
	<-started
	// The attempt began two hours ago; refresh_portfolio times out after 10 minutes.
	long := time.Now().Add(-2 * time.Hour).UTC()
	require.NoError(t, lifecycletest.Force(b.pg.DB, task.ID, `status = 'running', attempt = 1, started_at = ?, updated_at = ?`, long, long))
	require.NoError(t, b.pg.DB.Create(&store.TaskAttempt{TaskID: task.ID, Attempt: 1, Worker: "w1", StartedAt: long, Outcome: "running"}).Error)

	rep, err := b.rec.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{reconcile.KindLostFailed: 1}, rep.Repairs)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the running handler was not told to stop")
	}
	row := b.row(t, task.ID)
	require.Equal(t, tasks.StatusFailed, row.Status)
	require.Contains(t, string(row.Error), "outlived its timeout")
}

// TestLostTaskThatFailsQueuesItsCallback: a task failed as lost has reached a
// terminal state, so its completion callback is queued; the one retried as
// lost has not, and queues none.
func TestLostTaskThatFailsQueuesItsCallback(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	now := time.Now().UTC()
	create := func() store.Task {
		c, err := b.svc.Create(ctx, taskservice.CreateRequest{Type: tasks.TypeRefreshPortfolio, Params: json.RawMessage(`{"portfolio_id":"pf_1"}`),
			CreatedBy: "u1", CallbackURL: "https://receiver.example.com/cb"})
		require.NoError(t, err)
		return c.Task
	}
	retried, failed := create(), create()
	b.startAttempt(t, retried, 1, now)
	b.startAttempt(t, failed, 4, now)

	rep, err := b.rec.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{reconcile.KindLostRetried: 1, reconcile.KindLostFailed: 1}, rep.Repairs)
	require.Equal(t, tasks.StatusFailed, b.row(t, failed.ID).Status)
	count := func(id string) (n int64) {
		require.NoError(t, b.pg.DB.Model(&store.TaskCallback{}).Where("task_id = ?", id).Count(&n).Error)
		return n
	}
	require.EqualValues(t, 1, count(failed.ID))
	require.Zero(t, count(retried.ID))
}

// inspections counts the commands of an inspector's Redis client: each
// GetTaskInfo asks whether the queue exists (SISMEMBER) first.
type inspections struct{ n atomic.Int64 }

func (h *inspections) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *inspections) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "sismember" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *inspections) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestPassOverHeldRowsInspectsNone: a pass over open rows that Asynq holds
// (due now and scheduled ahead) finds them with pipelined checks, without
// inspecting any one by one, and still repairs the one whose task vanished.
func TestPassOverHeldRowsInspectsNone(t *testing.T) {
	t.Parallel()
	e := taskservicetest.New(t)
	ctx := context.Background()
	counted := redis.NewClient(&redis.Options{Addr: e.RD.Addr, DB: e.RD.DB})
	t.Cleanup(func() { _ = counted.Close() })
	var h inspections
	counted.AddHook(&h)
	insp := asynq.NewInspectorFromRedisClient(counted)
	rec, err := reconcile.New(e.PG.DB, e.RD.Client, insp, e.Service, e.Log, nil, reconcile.Options{
		BatchSize: 7, Now: func() time.Time { return time.Now().Add(time.Minute) },
	})
	require.NoError(t, err)

	const n = 30
	later := time.Now().Add(time.Hour)
	var last string
	for i := range n {
		req := taskservice.CreateRequest{Type: tasks.TypeRefreshPortfolio, Params: json.RawMessage(`{"portfolio_id":"pf_1"}`), CreatedBy: "u1"}
		if i%2 == 0 {
			req.ScheduledFor = &later
		}
		c, err := e.Service.Create(ctx, req)
		require.NoError(t, err)
		last = c.Task.ID
	}
	rep, err := rec.Pass(ctx)
	require.NoError(t, err)
	require.True(t, rep.Ran)
	require.Empty(t, rep.Repairs)
	require.Zero(t, h.n.Load(), "held rows were inspected one by one")

	// One task vanishes from Redis: only it is inspected, and requeued.
	require.NoError(t, e.Inspector.DeleteTask("normal", last))
	rep, err = rec.Pass(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Repairs[reconcile.KindRequeued])
	require.EqualValues(t, 1, h.n.Load())
	_, err = e.Inspector.GetTaskInfo("normal", last)
	require.NoError(t, err, "requeued")
}

package worker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/taskservice/taskservicetest"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/pkg/worker"
)

// harness is one worker runtime with one Asynq server on a test's own
// PostgreSQL database and Redis database.
type harness struct {
	t    *testing.T
	pg   testenv.Postgres
	rd   testenv.Redis
	svc  *taskservice.Service
	insp *asynq.Inspector
	cli  *asynq.Client
	rt   *worker.Runtime
	srv  *asynq.Server
	reg  *prometheus.Registry
	log  *zap.Logger
}

func newHarness(t *testing.T, handlers map[string]job.Handler, tweak ...func(*worker.Options)) *harness {
	t.Helper()
	ts := taskservicetest.New(t)
	h := &harness{t: t, pg: ts.PG, rd: ts.RD, reg: prometheus.NewRegistry(),
		log: ts.Log, cli: ts.Client, insp: ts.Inspector, svc: ts.Service}
	opts := worker.Options{
		WorkerID: "test-worker", Handlers: handlers, Registerer: h.reg,
		CancelPollInterval: 200 * time.Millisecond, StopGrace: 2 * time.Second,
	}
	for _, f := range tweak {
		f(&opts)
	}
	rt, err := worker.New(h.pg.DB, h.rd.Client, h.insp, h.log, opts)
	require.NoError(t, err)
	h.rt = rt
	h.srv = asynq.NewServer(h.rd.Opt(), rt.AsynqConfig(worker.ServerOptions{
		Concurrency: 10, QueueWeights: map[string]int{"critical": 8, "high": 4, "normal": 2, "low": 1},
		StrictPriority: true, ShutdownTimeout: 5 * time.Second, TaskCheckInterval: 100 * time.Millisecond,
	}))
	require.NoError(t, h.srv.Start(rt))
	t.Cleanup(func() {
		h.srv.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rt.Close(ctx)
	})
	return h
}

// create makes a refresh_portfolio task (or of typ when given) with a retry
// policy and timeout.
func (h *harness) create(typ string, policy tasks.RetryPolicy, timeout int, callback string) store.Task {
	h.t.Helper()
	if typ == "" {
		typ = tasks.TypeRefreshPortfolio
	}
	params := map[string]json.RawMessage{
		tasks.TypeRefreshPortfolio: json.RawMessage(`{"all":true}`),
		tasks.TypeBackupData:       json.RawMessage(`{}`),
		tasks.TypeSendAlert:        json.RawMessage(`{"channel":"slack","title":"t","message":"m"}`),
	}[typ]
	req := taskservice.CreateRequest{Type: typ, Params: params, RetryPolicy: &policy, CallbackURL: callback}
	if timeout > 0 {
		req.TimeoutSeconds = &timeout
	}
	c, err := h.svc.Create(context.Background(), req)
	require.NoError(h.t, err)
	return c.Task
}

func (h *harness) task(id string) store.Task {
	h.t.Helper()
	var row store.Task
	require.NoError(h.t, h.pg.DB.Where("id = ?", id).Take(&row).Error)
	return row
}

func (h *harness) attempts(id string) []store.TaskAttempt {
	h.t.Helper()
	var rows []store.TaskAttempt
	require.NoError(h.t, h.pg.DB.Where("task_id = ?", id).Order("attempt").Find(&rows).Error)
	return rows
}

func (h *harness) logs(id string) []store.TaskLog {
	h.t.Helper()
	var rows []store.TaskLog
	require.NoError(h.t, h.pg.DB.Where("task_id = ?", id).Order("id").Find(&rows).Error)
	return rows
}

// waitStatus waits until the task reaches status.
func (h *harness) waitStatus(id, status string, within time.Duration) store.Task {
	h.t.Helper()
	var row store.Task
	require.Eventuallyf(h.t, func() bool {
		row = h.task(id)
		return row.Status == status
	}, within, 50*time.Millisecond, "task %s never reached %s (last %s)", id, status, func() string { return h.task(id).Status }())
	return row
}

// cancel follows the lifecycle protocol's cancel of a running task: set
// cancel_requested and, when pubsub is true, publish Asynq's cancel.
func (h *harness) cancel(id string, pubsub bool) {
	h.t.Helper()
	lc, err := lifecycle.New(h.pg.DB, nil)
	require.NoError(h.t, err)
	_, ok, err := lc.RequestCancel(context.Background(), id)
	require.NoError(h.t, err)
	require.True(h.t, ok, "task %s is running", id)
	if pubsub {
		require.NoError(h.t, h.insp.CancelProcessing(id))
	}
}

// retry follows the protocol's manual retry: failed|cancelled → pending with
// retry_base = attempt, delete from Asynq, enqueue under the same id.
func (h *harness) retry(id string) { h.t.Helper(); h.retryHolding(id, 0) }

// retryHolding retries id as the task service does (the enqueue inside the
// transaction that moves the row back to pending) and holds the commit for
// hold after the enqueue.
func (h *harness) retryHolding(id string, hold time.Duration) {
	h.t.Helper()
	lc, err := lifecycle.New(h.pg.DB, nil)
	require.NoError(h.t, err)
	_, ok, err := lc.Retry(context.Background(), id, func(_ *gorm.DB, row *store.Task) error {
		got, err := queue.Remove(h.insp, row.Priority, id)
		require.NoError(h.t, err)
		require.NotEqual(h.t, queue.Active, got)
		spec, _ := tasks.Lookup(row.Type)
		msg := spec.NewParams()
		require.NoError(h.t, protojson.Unmarshal(row.Params, msg))
		var policy tasks.RetryPolicy
		require.NoError(h.t, json.Unmarshal(row.RetryPolicy, &policy))
		payload, err := tasks.EncodeEnvelope(id, row.Type, msg, policy, row.TimeoutSeconds, row.KeyID, row.Attempt)
		require.NoError(h.t, err)
		_, err = h.cli.Enqueue(asynq.NewTask(row.Type, payload), asynq.TaskID(id), asynq.Queue(row.Priority),
			asynq.MaxRetry(policy.MaxRetries), asynq.Timeout(time.Duration(row.TimeoutSeconds)*time.Second))
		time.Sleep(hold)
		return err
	})
	require.NoError(h.t, err)
	require.True(h.t, ok, "task %s is failed or cancelled", id)
}

// asynqState is the task's state in Asynq, or "gone".
func (h *harness) asynqState(queue, id string) string {
	info, err := h.insp.GetTaskInfo(queue, id)
	if err != nil {
		return "gone"
	}
	return info.State.String()
}

// counter reads a counter of the registry.
func (h *harness) counter(name string, labels map[string]string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	require.NoError(h.t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

var fastRetry = tasks.RetryPolicy{MaxRetries: 2, RetryDelay: 1, MaxRetryDelay: 1}
var noRetry = tasks.RetryPolicy{MaxRetries: 0, RetryDelay: 1, MaxRetryDelay: 1}

func createReq(at *time.Time) taskservice.CreateRequest {
	return taskservice.CreateRequest{Type: tasks.TypeRefreshPortfolio, Params: json.RawMessage(`{"all":true}`), ScheduledFor: at, RetryPolicy: &fastRetry}
}

func asynqTask(typ string, payload []byte) *asynq.Task { return asynq.NewTask(typ, payload) }

func asynqQueue(q string) asynq.Option { return asynq.Queue(q) }

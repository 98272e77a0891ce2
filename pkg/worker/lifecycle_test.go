package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/lifecycle/lifecycletest"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
)

func TestCompletedRecordsResultProgressLogsAndAttempt(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: job.Typed(func(ctx context.Context, r job.Reporter, p *taskpb.RefreshPortfolioParams) error {
			require.True(t, p.GetAll())
			r.Progress(0.5, "half", "halfway there")
			r.Log(job.Info, "valued", map[string]any{"holdings": 3})
			return r.SetResult(map[string]any{"value": 42, "attempt": r.Attempt()})
		}),
	})
	task := h.create("", fastRetry, 0, "")
	row := h.waitStatus(task.ID, tasks.StatusCompleted, 15*time.Second)
	require.Equal(t, 1, row.Attempt)
	require.InDelta(t, 1.0, row.Progress, 1e-9)
	require.Equal(t, "half", row.CurrentStep)
	require.JSONEq(t, `["halfway there"]`, string(row.Messages))
	require.JSONEq(t, `{"value":42,"attempt":1}`, string(row.Result))
	require.Empty(t, row.Error)
	require.NotNil(t, row.StartedAt)
	require.NotNil(t, row.CompletedAt)
	require.NotNil(t, row.DurationMs)
	require.NotNil(t, row.QueueWaitMs)
	require.Equal(t, "test-worker", row.WorkerID)

	att := h.attempts(task.ID)
	require.Len(t, att, 1)
	require.Equal(t, "completed", att[0].Outcome)
	require.Equal(t, "test-worker", att[0].Worker)
	require.NotNil(t, att[0].FinishedAt)
	require.NotNil(t, att[0].QueueWaitMs)

	// The handler's line between the runtime's lines of the attempt's start and end.
	logs := h.logs(task.ID)
	require.Len(t, logs, 3)
	require.Equal(t, []string{"attempt 1 started", "valued", "attempt 1 completed"},
		[]string{logs[0].Message, logs[1].Message, logs[2].Message})
	for _, l := range logs {
		require.Equal(t, 1, l.Attempt)
	}
	require.JSONEq(t, `{"holdings":3}`, string(logs[1].Fields))
	require.JSONEq(t, `{"worker":"test-worker","queue":"normal"}`, string(logs[0].Fields))
	require.Equal(t, "info", logs[2].Level)
	require.Equal(t, 1.0, h.counter("taskforge_tasks_processed_total", map[string]string{"type": tasks.TypeRefreshPortfolio, "outcome": "completed"}))
	require.Equal(t, 1.0, h.counter("taskforge_worker_up", nil))
}

func TestProgressAndLogsVisibleWhileRunning(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
			for i := 1; i <= 120; i++ {
				r.Log(job.Debug, "line", map[string]any{"i": i})
				r.Progress(float64(i)/200, "step", "msg")
			}
			<-release
			return nil
		},
	})
	defer close(release)
	task := h.create("", fastRetry, 0, "")
	require.Eventually(t, func() bool {
		row := h.task(task.ID)
		lines := 0
		for _, l := range h.logs(task.ID) {
			if l.Message == "line" {
				lines++
			}
		}
		return row.Status == tasks.StatusRunning && row.Progress > 0.59 && lines == 120
	}, 10*time.Second, 50*time.Millisecond)
	row := h.task(task.ID)
	var msgs []string
	require.NoError(t, json.Unmarshal(row.Messages, &msgs))
	require.Len(t, msgs, 50, "messages are bounded by max_messages")
}

func TestRetriesSpacedByPolicyThenFailed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
			return errors.New("provider down")
		},
	})
	task := h.create("", fastRetry, 0, "")
	row := h.waitStatus(task.ID, tasks.StatusFailed, 30*time.Second)
	require.Equal(t, 3, row.Attempt, "1 + max_retries attempts")
	var e map[string]any
	require.NoError(t, json.Unmarshal(row.Error, &e))
	require.Equal(t, "provider down", e["message"])
	require.Equal(t, "error", e["kind"])
	require.EqualValues(t, 3, e["attempt"])
	att := h.attempts(task.ID)
	require.Len(t, att, 3)
	require.Equal(t, []string{"retrying", "retrying", "failed"}, []string{att[0].Outcome, att[1].Outcome, att[2].Outcome})
	for i := 1; i < len(att); i++ {
		// Asynq keeps retry times in whole seconds: a retry due at
		// finished + delay runs once the clock's second reaches it.
		due := att[i-1].FinishedAt.Add(time.Second)
		require.GreaterOrEqualf(t, att[i].StartedAt.Unix(), due.Unix(), "retry %d started at %s, before its due time %s", i, att[i].StartedAt, due)
		require.Less(t, att[i].StartedAt.Sub(due), 3*time.Second, "retry %d came late", i)
		require.Equal(t, "provider down", att[i].ErrorMessage)
	}
	require.Eventually(t, func() bool { return h.asynqState("normal", task.ID) == "archived" }, 5*time.Second, 50*time.Millisecond,
		"a task whose retries ran out is a dead letter")

	// Each attempt's start and end are in the log, with the error and what follows.
	logs := h.logs(task.ID)
	require.Len(t, logs, 6)
	for i := range 3 {
		start, end := logs[2*i], logs[2*i+1]
		require.Equal(t, fmt.Sprintf("attempt %d started", i+1), start.Message)
		require.Equal(t, i+1, end.Attempt)
		var f map[string]any
		require.NoError(t, json.Unmarshal(end.Fields, &f))
		if i < 2 {
			require.Equal(t, "warn", end.Level)
			next, err := time.Parse(time.RFC3339Nano, f["next_retry_at"].(string))
			require.NoError(t, err)
			require.WithinDuration(t, att[i+1].StartedAt, next, 3*time.Second, "the logged retry time is when it ran")
			require.Equal(t, fmt.Sprintf("attempt %d failed: provider down; retrying at %s", i+1, next.UTC().Format(time.RFC3339)), end.Message)
		} else {
			require.Equal(t, "error", end.Level)
			require.Equal(t, "attempt 3 failed: provider down; no retry follows", end.Message)
			require.NotContains(t, f, "next_retry_at")
		}
		require.Equal(t, "error", f["error_kind"])
	}
	require.Equal(t, 2.0, h.counter("taskforge_task_retries_total", map[string]string{"type": tasks.TypeRefreshPortfolio}))
}

func TestRetryingRowCarriesNextRetryAt(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
			if calls.Add(1) == 1 {
				return errors.New("flaky")
			}
			return nil
		},
	})
	policy := tasks.RetryPolicy{MaxRetries: 3, RetryDelay: 3, MaxRetryDelay: 3}
	task := h.create("", policy, 0, "")
	row := h.waitStatus(task.ID, tasks.StatusRetrying, 10*time.Second)
	require.NotNil(t, row.NextRetryAt)
	require.InDelta(t, 3.0, row.NextRetryAt.Sub(row.UpdatedAt).Seconds(), 0.5)
	row = h.waitStatus(task.ID, tasks.StatusCompleted, 15*time.Second)
	require.Equal(t, 2, row.Attempt)
	require.Nil(t, row.NextRetryAt)
	att := h.attempts(task.ID)
	require.Len(t, att, 2)
	require.GreaterOrEqual(t, att[1].StartedAt.Unix(), att[0].FinishedAt.Add(3*time.Second).Unix(), "the retry waits the policy's delay (whole seconds in Asynq)")
	require.NotNil(t, att[1].QueueWaitMs)
	require.Less(t, *att[1].QueueWaitMs, int64(2000), "queue wait of a retry runs from its due time")
}

func TestPermanentErrorIsNotRetried(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
			return job.Permanent(errors.New("portfolio does not exist"))
		},
	})
	task := h.create("", fastRetry, 0, "")
	row := h.waitStatus(task.ID, tasks.StatusFailed, 10*time.Second)
	require.Equal(t, 1, row.Attempt)
	att := h.attempts(task.ID)
	require.Len(t, att, 1)
	require.Equal(t, "failed", att[0].Outcome)
	require.Equal(t, "permanent", att[0].ErrorKind)
	require.Eventually(t, func() bool { return h.asynqState("normal", task.ID) == "archived" }, 5*time.Second, 50*time.Millisecond)
}

func TestNoHandlerFailsPermanently(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	task := h.create(tasks.TypeSendAlert, fastRetry, 0, "")
	row := h.waitStatus(task.ID, tasks.StatusFailed, 10*time.Second)
	require.Equal(t, 1, row.Attempt)
	require.Contains(t, string(row.Error), "no handler registered for type send_alert")
	require.Equal(t, "no_handler", h.attempts(task.ID)[0].ErrorKind)
}

func TestPanicIsAFailedAttemptWithStack(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
			if calls.Add(1) == 1 {
				var m map[string]int
				m["boom"] = 1 // nil map write
			}
			return nil
		},
	})
	task := h.create("", fastRetry, 0, "")
	row := h.waitStatus(task.ID, tasks.StatusCompleted, 15*time.Second)
	require.Equal(t, 2, row.Attempt)
	att := h.attempts(task.ID)
	require.Len(t, att, 2)
	require.Equal(t, "retrying", att[0].Outcome)
	require.Equal(t, "panic", att[0].ErrorKind)
	require.Contains(t, att[0].ErrorMessage, "assignment to entry in nil map")
	require.Contains(t, att[0].Stack, "lifecycle_test.go")
	require.Equal(t, "completed", att[1].Outcome)
}

func TestTimeoutIsAFailedAttemptOfKindTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
			<-ctx.Done()
			return ctx.Err()
		},
	})
	task := h.create("", noRetry, 1, "")
	row := h.waitStatus(task.ID, tasks.StatusFailed, 15*time.Second)
	require.Equal(t, 1, row.Attempt)
	require.Contains(t, string(row.Error), `"kind": "timeout"`)
	att := h.attempts(task.ID)
	require.Len(t, att, 1)
	require.Equal(t, "timeout", att[0].Outcome)
	require.Equal(t, "timeout", att[0].ErrorKind)
}

func TestHandlerIgnoringItsContextIsGivenUp(t *testing.T) {
	t.Parallel()
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
			<-stuck
			return nil
		},
	})
	task := h.create("", noRetry, 1, "")
	row := h.waitStatus(task.ID, tasks.StatusFailed, 15*time.Second)
	require.Contains(t, string(row.Error), "did not stop")
	require.Equal(t, "timeout", h.attempts(task.ID)[0].Outcome)
	require.Eventually(t, func() bool {
		return h.counter("taskforge_task_running_over_timeout", map[string]string{"type": tasks.TypeRefreshPortfolio}) == 1
	}, 5*time.Second, 50*time.Millisecond, "the stuck handler is counted as running over its timeout")
}

func TestCancelRunningTask(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		pubsub     bool
		maxRetries int
	}{
		{"pubsub", true, 2},
		{"pubsub on the last delivery", true, 0},
		{"poll only", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var runs atomic.Int32
			cleanedUp := make(chan struct{}, 1)
			h := newHarness(t, map[string]job.Handler{
				tasks.TypeRefreshPortfolio: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
					runs.Add(1)
					r.Progress(0.1, "working", "")
					<-ctx.Done()
					cleanedUp <- struct{}{}
					return ctx.Err()
				},
			})
			policy := tasks.RetryPolicy{MaxRetries: tc.maxRetries, RetryDelay: 1, MaxRetryDelay: 1}
			task := h.create("", policy, 0, "")
			require.Eventually(t, func() bool { return h.task(task.ID).Progress > 0 }, 10*time.Second, 50*time.Millisecond)
			h.cancel(task.ID, tc.pubsub)
			row := h.waitStatus(task.ID, tasks.StatusCancelled, 10*time.Second)
			select {
			case <-cleanedUp:
			case <-time.After(5 * time.Second):
				t.Fatal("the handler's context was not cancelled")
			}
			require.NotNil(t, row.CompletedAt)
			att := h.attempts(task.ID)
			require.Len(t, att, 1)
			require.Equal(t, "cancelled", att[0].Outcome)
			require.Eventually(t, func() bool { return h.asynqState("normal", task.ID) == "gone" }, 10*time.Second, 100*time.Millisecond,
				"a cancelled task leaves Asynq: neither retried nor a dead letter")
			require.Never(t, func() bool { return runs.Load() > 1 }, 2500*time.Millisecond, 100*time.Millisecond,
				"a cancelled task never runs again (watched for longer than the retry delay)")
			require.Equal(t, tasks.StatusCancelled, h.task(task.ID).Status)
			require.Len(t, h.attempts(task.ID), 1)
		})
	}
}

// brokenHarness runs refresh_portfolio tasks that fail while fail is set
// (it starts set).
func brokenHarness(t *testing.T) (*harness, *atomic.Bool) {
	t.Helper()
	fail := new(atomic.Bool)
	fail.Store(true)
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
			if fail.Load() {
				return errors.New("still broken")
			}
			return nil
		},
	})
	return h, fail
}

func TestManualRetryGetsAFreshBudgetAndNextAttempt(t *testing.T) {
	t.Parallel()
	h, fail := brokenHarness(t)
	policy := tasks.RetryPolicy{MaxRetries: 1, RetryDelay: 1, MaxRetryDelay: 1}
	task := h.create("", policy, 0, "")
	h.waitStatus(task.ID, tasks.StatusFailed, 15*time.Second)
	require.Len(t, h.attempts(task.ID), 2)

	// Retried by hand while still broken: two more attempts (a fresh budget).
	h.retry(task.ID)
	row := h.waitStatus(task.ID, tasks.StatusFailed, 15*time.Second)
	require.Equal(t, 4, row.Attempt)
	require.Equal(t, 2, row.RetryBase)

	fail.Store(false)
	h.retry(task.ID)
	row = h.waitStatus(task.ID, tasks.StatusCompleted, 15*time.Second)
	require.Equal(t, 5, row.Attempt)
	att := h.attempts(task.ID)
	require.Len(t, att, 5)
	require.Equal(t, "completed", att[4].Outcome)
}

// TestManualRetryDeliveredBeforeItsCommit: a retry's delivery that reaches
// the worker before the retry's transaction commits (the row still reads
// failed) is not dropped: the worker reads the row again a moment later and
// runs the task.
func TestManualRetryDeliveredBeforeItsCommit(t *testing.T) {
	t.Parallel()
	h, fail := brokenHarness(t)
	task := h.create("", tasks.RetryPolicy{MaxRetries: 0, RetryDelay: 1, MaxRetryDelay: 1}, 0, "")
	h.waitStatus(task.ID, tasks.StatusFailed, 15*time.Second)

	fail.Store(false)
	// The worker polls every 100 ms (±50 %): it takes the delivery while
	// the commit is held.
	h.retryHolding(task.ID, 200*time.Millisecond)
	row := h.waitStatus(task.ID, tasks.StatusCompleted, 10*time.Second)
	require.Equal(t, 2, row.Attempt)
}

func TestManualRetryOfCancelledTask(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
			if runs.Add(1) == 1 {
				r.Progress(0.1, "", "")
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		},
	})
	task := h.create("", fastRetry, 0, "")
	require.Eventually(t, func() bool { return h.task(task.ID).Progress > 0 }, 10*time.Second, 50*time.Millisecond)
	h.cancel(task.ID, true)
	h.waitStatus(task.ID, tasks.StatusCancelled, 10*time.Second)
	require.Eventually(t, func() bool { return h.asynqState("normal", task.ID) == "gone" }, 10*time.Second, 100*time.Millisecond)
	h.retry(task.ID)
	row := h.waitStatus(task.ID, tasks.StatusCompleted, 10*time.Second)
	require.Equal(t, 2, row.Attempt)
	require.False(t, row.CancelRequested)
}

func TestCancelledPendingTaskIsRevoked(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
			runs.Add(1)
			return nil
		},
	})
	// The row is cancelled but its Asynq task was not removed (Redis was
	// away during the cancel): the delivery must be revoked.
	future := time.Now().Add(1500 * time.Millisecond)
	c, err := h.svc.Create(context.Background(), createReq(&future))
	require.NoError(t, err)
	require.NoError(t, lifecycletest.Force(h.pg.DB, c.Task.ID, `status = 'cancelled', cancel_requested = true`))
	require.Eventually(t, func() bool { return h.asynqState("normal", c.Task.ID) == "gone" }, 10*time.Second, 100*time.Millisecond)
	require.EqualValues(t, 0, runs.Load())
	require.Empty(t, h.attempts(c.Task.ID))
	require.Equal(t, tasks.StatusCancelled, h.task(c.Task.ID).Status)
}

func TestInternalTypeBypassesTheLifecycle(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeScheduleFire: job.Typed(func(ctx context.Context, r job.Reporter, p *taskpb.ScheduleFireParams) error {
			got <- p.GetScheduleId()
			return nil
		}),
	})
	payload, err := tasks.EncodeEnvelope("fire_1", tasks.TypeScheduleFire, &taskpb.ScheduleFireParams{ScheduleId: "sch_1"},
		tasks.RetryPolicy{MaxRetries: 1, RetryDelay: 1, MaxRetryDelay: 1}, 30, "", 0)
	require.NoError(t, err)
	_, err = h.cli.Enqueue(asynqTask(tasks.TypeScheduleFire, payload), asynqQueue("critical"))
	require.NoError(t, err)
	select {
	case id := <-got:
		require.Equal(t, "sch_1", id)
	case <-time.After(10 * time.Second):
		t.Fatal("internal task not run")
	}
}

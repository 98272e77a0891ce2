package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// setRetried rewrites the retried counter (field 6 of Asynq's TaskMessage) of
// a queued message: what Asynq's recoverer does when the lease of a delivery
// whose worker was killed expires.
func setRetried(t *testing.T, msg []byte, n int) []byte {
	t.Helper()
	var out []byte
	for len(msg) > 0 {
		num, typ, l := protowire.ConsumeTag(msg)
		require.GreaterOrEqual(t, l, 0)
		vl := protowire.ConsumeFieldValue(num, typ, msg[l:])
		require.GreaterOrEqual(t, vl, 0)
		if num != 6 {
			out = append(out, msg[:l+vl]...)
		}
		msg = msg[l+vl:]
	}
	out = protowire.AppendTag(out, 6, protowire.VarintType)
	return protowire.AppendVarint(out, uint64(n))
}

// TestAttemptsCountRunsAKilledWorkerNeverRecorded: a delivery that Asynq
// counted (a worker ran it, then died before its start was written) shows as a
// lost attempt before the next one, so attempts counts every run.
func TestAttemptsCountRunsAKilledWorkerNeverRecorded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: job.Typed(func(ctx context.Context, r job.Reporter, _ *taskpb.RefreshPortfolioParams) error {
			return r.SetResult(map[string]any{"attempt": r.Attempt()})
		}),
	})
	later := time.Now().Add(time.Hour)
	c, err := h.svc.Create(context.Background(), createReq(&later))
	require.NoError(t, err)
	id := c.Task.ID

	// Two deliveries of the message ran and left nothing in the record.
	key := "asynq:{normal}:t:" + id
	msg, err := h.rd.Client.HGet(context.Background(), key, "msg").Bytes()
	require.NoError(t, err)
	require.NoError(t, h.rd.Client.HSet(context.Background(), key, "msg", setRetried(t, msg, 2)).Err())
	require.NoError(t, h.insp.RunTask("normal", id))

	row := h.waitStatus(id, tasks.StatusCompleted, 15*time.Second)
	require.Equal(t, 3, row.Attempt, "two runs nobody recorded, then this one")
	require.JSONEq(t, `{"attempt":3}`, string(row.Result))
	att := h.attempts(id)
	require.Len(t, att, 3)
	for i, want := range []string{"lost", "lost", "completed"} {
		require.Equal(t, i+1, att[i].Attempt)
		require.Equal(t, want, att[i].Outcome, "attempt %d", i+1)
	}
	require.Contains(t, att[0].ErrorMessage, "stopped before recording it")
}

// TestManualRetryStartsANewBase: a message enqueued by a manual retry starts
// from the row's attempts so far; nothing is taken for lost.
func TestManualRetryStartsANewBase(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: job.Typed(func(ctx context.Context, r job.Reporter, _ *taskpb.RefreshPortfolioParams) error {
			if r.Attempt() == 1 {
				return job.Permanent(errors.New("first attempt fails"))
			}
			return nil
		}),
	})
	task := h.create("", noRetry, 0, "")
	h.waitStatus(task.ID, tasks.StatusFailed, 15*time.Second)
	h.retry(task.ID)
	row := h.waitStatus(task.ID, tasks.StatusCompleted, 15*time.Second)
	require.Equal(t, 2, row.Attempt)
	att := h.attempts(task.ID)
	require.Len(t, att, 2)
	require.Equal(t, "failed", att[0].Outcome)
	require.Equal(t, "completed", att[1].Outcome)
}

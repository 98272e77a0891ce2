package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/lifecycle/lifecycletest"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/worker"
)

// TestEventsFollowCommittedChanges: the runtime publishes the start, each
// flushed progress, every log line and the outcome, in that order, each task
// event with the version the row has after the change; the last one is the
// row's final version.
func TestEventsFollowCommittedChanges(t *testing.T) {
	t.Parallel()
	rec := &lifecycletest.Recorder{}
	step := make(chan struct{})
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
			r.Progress(0.5, "half", "halfway")
			r.Log(job.Info, "working", nil)
			<-step
			return r.SetResult(map[string]any{"ok": true})
		},
	}, func(o *worker.Options) { o.Events = rec })
	task := h.create("", fastRetry, 0, "")
	require.Eventually(t, func() bool {
		for _, e := range rec.Events(task.ID) {
			if e.Kind == event.KindLog && e.Log.Message == "working" {
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond)
	close(step)
	row := h.waitStatus(task.ID, tasks.StatusCompleted, 10*time.Second)
	var evs []event.Event
	require.Eventually(t, func() bool {
		evs = rec.Events(task.ID)
		return len(evs) > 0 && evs[len(evs)-1].Status == tasks.StatusCompleted
	}, 5*time.Second, 20*time.Millisecond)

	var kinds []string
	var last int64
	for _, e := range evs {
		if e.Kind == event.KindTask {
			require.Greater(t, e.Version, last, "versions grow")
			last = e.Version
			kinds = append(kinds, "task:"+e.Status)
		} else {
			kinds = append(kinds, "log:"+e.Log.Message)
			require.Equal(t, 1, e.Log.Attempt)
		}
	}
	require.Equal(t, row.Version, last, "the last event names the final row version")
	require.Equal(t, "task:running", kinds[0])
	require.Contains(t, kinds, "log:working")
	require.Equal(t, "task:completed", kinds[len(kinds)-1])
	require.Equal(t, "log:attempt 1 completed", kinds[len(kinds)-2], "the attempt's last line comes before its outcome")
}

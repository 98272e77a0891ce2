package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/worker"
)

// TestCapacityMetrics: the worker exports its capacity beside what is in use
// (taskforge_worker_concurrency, the Asynq server's concurrency), the
// configured type limits with the slots it holds, and the age of the oldest
// running attempt of a type; the gauges fall back once the task ends.
func TestCapacityMetrics(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeBackupData: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
			close(started)
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		},
	}, func(o *worker.Options) {
		o.TypeLimits = map[string]int{tasks.TypeBackupData: 3, tasks.TypeSendEmail: 0}
	})
	backup := map[string]string{"type": tasks.TypeBackupData}
	require.EqualValues(t, 10, h.counter("taskforge_worker_concurrency", nil), "the harness's server runs 10 at once")
	require.EqualValues(t, 3, h.counter("taskforge_task_type_limit", backup))
	require.Zero(t, h.counter("taskforge_task_type_slots_in_use", backup))
	require.False(t, h.hasSeries("taskforge_task_type_limit", map[string]string{"type": tasks.TypeSendEmail}), "a zero limit is no limit")

	id := h.create(tasks.TypeBackupData, noRetry, 0, "").ID
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the backup_data handler never started")
	}
	require.EqualValues(t, 1, h.counter("taskforge_worker_concurrency_in_use", nil))
	require.EqualValues(t, 1, h.counter("taskforge_task_type_slots_in_use", backup))
	// The cancel poller (every 200ms in the harness) refreshes the age.
	require.Eventually(t, func() bool {
		return h.counter("taskforge_task_oldest_running_seconds", backup) >= 0.3
	}, 10*time.Second, 50*time.Millisecond, "the oldest running backup_data attempt's age")

	close(release)
	h.waitStatus(id, tasks.StatusCompleted, 30*time.Second)
	require.Eventually(t, func() bool {
		return h.counter("taskforge_task_type_slots_in_use", backup) == 0 &&
			!h.hasSeries("taskforge_task_oldest_running_seconds", backup)
	}, 10*time.Second, 50*time.Millisecond, "the slot is given back and no attempt runs")
	require.Zero(t, h.counter("taskforge_worker_concurrency_in_use", nil))
	require.EqualValues(t, 10, h.counter("taskforge_worker_concurrency", nil), "the capacity stays")
}

// hasSeries reports whether the registry holds a series of name with labels.
func (h *harness) hasSeries(name string, labels map[string]string) bool {
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
			return true
		}
	}
	return false
}

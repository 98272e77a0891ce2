package queuemetrics_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/monitor/internal/queuemetrics"
)

// value returns the value of the metric name whose labels are exactly labels,
// and whether it exists.
func value(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := g.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !labelsEqual(m.GetLabel(), labels) {
				continue
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			default:
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func labelsEqual(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}

func metricType(t *testing.T, g prometheus.Gatherer, name string) dto.MetricType {
	t.Helper()
	families, err := g.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			return f.GetType()
		}
	}
	t.Fatalf("metric %s not gathered", name)
	return 0
}

// TestCollectorAgainstRedis puts tasks in every state with a real Asynq server
// and checks what the collector exports.
func TestCollectorAgainstRedis(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	in := asynq.NewInspector(r.Opt())
	t.Cleanup(func() { _ = in.Close() })
	client := asynq.NewClient(r.Opt())
	t.Cleanup(func() { _ = client.Close() })

	// A server on "high" only: "ok" completes (kept by Retention), "fail" goes to
	// the retry set for an hour, "dead" is archived at once, "block" stays active.
	release := make(chan struct{})
	srv := asynq.NewServer(r.Opt(), asynq.Config{
		Concurrency: 4, Queues: map[string]int{queue.High: 1},
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return time.Hour },
		LogLevel:       asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc("ok", func(context.Context, *asynq.Task) error { return nil })
	mux.HandleFunc("fail", func(context.Context, *asynq.Task) error { return errors.New("boom") })
	mux.HandleFunc("dead", func(context.Context, *asynq.Task) error { return fmt.Errorf("bad: %w", asynq.SkipRetry) })
	mux.HandleFunc("block", func(ctx context.Context, _ *asynq.Task) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	require.NoError(t, srv.Start(mux))
	t.Cleanup(srv.Shutdown)
	t.Cleanup(func() { close(release) })

	enqueue := func(typ, q string, opts ...asynq.Option) {
		t.Helper()
		_, err := client.Enqueue(asynq.NewTask(typ, nil), append(opts, asynq.Queue(q))...)
		require.NoError(t, err)
	}
	enqueue("ok", queue.High, asynq.Retention(time.Hour))
	enqueue("ok", queue.High, asynq.Retention(time.Hour))
	enqueue("fail", queue.High, asynq.MaxRetry(5))
	enqueue("dead", queue.High)
	enqueue("block", queue.High)
	enqueue("later", queue.Normal) // pending: no server reads normal
	enqueue("later", queue.Normal)
	enqueue("later", queue.Normal, asynq.ProcessIn(time.Hour))
	enqueue("other", "custom") // a queue outside the four
	require.NoError(t, queue.Register(ctx, r.Client))
	require.NoError(t, in.PauseQueue(queue.Low))

	require.Eventually(t, func() bool {
		info, err := in.GetQueueInfo(queue.High)
		return err == nil && info.Completed == 2 && info.Retry == 1 && info.Archived == 1 && info.Active == 1
	}, 15*time.Second, 50*time.Millisecond, "tasks did not reach their states")

	col, err := queuemetrics.New(in, queue.Queues)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(col)
	require.NoError(t, col.Refresh(ctx))

	sizes := []struct {
		queue, state string
		want         float64
	}{
		{queue.High, "pending", 0}, {queue.High, "active", 1}, {queue.High, "scheduled", 0},
		{queue.High, "retry", 1}, {queue.High, "archived", 1}, {queue.High, "completed", 2},
		{queue.Normal, "pending", 2}, {queue.Normal, "scheduled", 1}, {queue.Normal, "active", 0},
		{queue.Critical, "pending", 0}, {queue.Low, "pending", 0}, {"custom", "pending", 1},
	}
	for _, tc := range sizes {
		got, ok := value(t, reg, "taskforge_queue_size", map[string]string{"queue": tc.queue, "state": tc.state})
		require.True(t, ok, "%s/%s missing", tc.queue, tc.state)
		require.Equal(t, tc.want, got, "%s/%s", tc.queue, tc.state)
	}

	// ok, ok, fail and dead were processed; fail and dead failed.
	processed, _ := value(t, reg, "taskforge_queue_processed_total", map[string]string{"queue": queue.High})
	failed, _ := value(t, reg, "taskforge_queue_failed_total", map[string]string{"queue": queue.High})
	require.Equal(t, 4.0, processed)
	require.Equal(t, 2.0, failed)
	require.Equal(t, dto.MetricType_COUNTER, metricType(t, reg, "taskforge_queue_processed_total"))
	require.Equal(t, dto.MetricType_COUNTER, metricType(t, reg, "taskforge_queue_failed_total"))

	latency, ok := value(t, reg, "taskforge_queue_latency_seconds", map[string]string{"queue": queue.Normal})
	require.True(t, ok)
	require.Greater(t, latency, 0.0, "normal has waiting tasks")
	latency, _ = value(t, reg, "taskforge_queue_latency_seconds", map[string]string{"queue": queue.Critical})
	require.Zero(t, latency)

	for q, want := range map[string]float64{queue.Low: 1, queue.Normal: 0, queue.High: 0} {
		got, ok := value(t, reg, "taskforge_queue_paused", map[string]string{"queue": q})
		require.True(t, ok, q)
		require.Equal(t, want, got, q)
	}
	ts, _ := value(t, reg, "taskforge_queue_metrics_last_success_timestamp_seconds", map[string]string{})
	require.InDelta(t, float64(time.Now().Unix()), ts, 60)
}

// TestCollectorReportsUnknownFixedQueues shows the four queues with zeros before
// Asynq has seen any of them.
func TestCollectorReportsUnknownFixedQueues(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	in := asynq.NewInspector(r.Opt())
	t.Cleanup(func() { _ = in.Close() })
	col, err := queuemetrics.New(in, queue.Queues)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(col)
	require.NoError(t, col.Refresh(context.Background()))
	for _, q := range queue.Queues {
		for _, state := range queuemetrics.States {
			got, ok := value(t, reg, "taskforge_queue_size", map[string]string{"queue": q, "state": state})
			require.True(t, ok, "%s/%s", q, state)
			require.Zero(t, got)
		}
	}
}

// flaky is an Inspector whose answers the test switches.
type flaky struct {
	err  error
	info map[string]*asynq.QueueInfo
}

func (f *flaky) Queues() ([]string, error) {
	if f.err != nil {
		return nil, f.err
	}
	return []string{"critical"}, nil
}

func (f *flaky) GetQueueInfo(q string) (*asynq.QueueInfo, error) {
	if f.err != nil {
		return nil, f.err
	}
	return f.info[q], nil
}

func TestCollectorKeepsLastValuesWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	f := &flaky{info: map[string]*asynq.QueueInfo{"critical": {Queue: "critical", Pending: 7, ProcessedTotal: 11}}}
	col, err := queuemetrics.New(f, []string{"critical"})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(col)
	ctx := context.Background()

	require.NoError(t, col.Refresh(ctx))
	f.err = errors.New("dial tcp: connection refused")
	require.ErrorContains(t, col.Refresh(ctx), "connection refused")
	require.Error(t, col.Refresh(ctx))

	// The scrape still works and shows the values from before the outage.
	pending, ok := value(t, reg, "taskforge_queue_size", map[string]string{"queue": "critical", "state": "pending"})
	require.True(t, ok)
	require.Equal(t, 7.0, pending)
	processed, _ := value(t, reg, "taskforge_queue_processed_total", map[string]string{"queue": "critical"})
	require.Equal(t, 11.0, processed)
	errs, _ := value(t, reg, "taskforge_queue_metrics_refresh_errors_total", map[string]string{})
	require.Equal(t, 2.0, errs)

	f.err = nil
	f.info["critical"] = &asynq.QueueInfo{Queue: "critical", Pending: 1}
	require.NoError(t, col.Refresh(ctx))
	pending, _ = value(t, reg, "taskforge_queue_size", map[string]string{"queue": "critical", "state": "pending"})
	require.Equal(t, 1.0, pending)
}

func TestRunRefreshesEveryIntervalAndProbes(t *testing.T) {
	t.Parallel()
	f := &flaky{info: map[string]*asynq.QueueInfo{"critical": {Queue: "critical", Pending: 1}}}
	col, err := queuemetrics.New(f, nil)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(col)

	ctx, cancel := context.WithCancel(context.Background())
	probes := make(chan struct{}, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		col.Run(ctx, 10*time.Millisecond, func(context.Context) { probes <- struct{}{} }, zapNop())
	}()
	require.Eventually(t, func() bool { return len(probes) >= 3 }, 5*time.Second, 5*time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	pending, ok := value(t, reg, "taskforge_queue_size", map[string]string{"queue": "critical", "state": "pending"})
	require.True(t, ok)
	require.Equal(t, 1.0, pending)
}

func TestNewRefusesNilInspector(t *testing.T) {
	t.Parallel()
	_, err := queuemetrics.New(nil, queue.Queues)
	require.Error(t, err)
}

func zapNop() *zap.Logger { return zap.NewNop() }

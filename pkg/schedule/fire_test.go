package schedule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/schedule"
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
	store     *schedule.Store
	inspector *asynq.Inspector
	log       *zap.Logger
}

func setup(t *testing.T) testBundle {
	t.Helper()
	e := taskservicetest.New(t)
	st, err := schedule.NewStore(e.PG.DB)
	require.NoError(t, err)
	return testBundle{pg: e.PG, rd: e.RD, svc: e.Service, store: st, inspector: e.Inspector, log: e.Log}
}

func (b testBundle) firer(t *testing.T, opts schedule.FireOptions) *schedule.Firer {
	t.Helper()
	f, err := schedule.NewFirer(b.pg.DB, b.svc, b.log, opts)
	require.NoError(t, err)
	return f
}

// startRunner runs one scheduler replica (Asynq's periodic task manager and
// the catch-up loop) until the test ends.
func (b testBundle) startRunner(t *testing.T, f *schedule.Firer, sync time.Duration) {
	t.Helper()
	p, err := schedule.NewProvider(b.pg.DB, b.log)
	require.NoError(t, err)
	r, err := schedule.NewRunner(b.rd.Opt(), p, f, b.log, schedule.RunnerOptions{SyncInterval: sync})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// startFireWorker processes fire jobs with the package's handler, as the
// worker does, polling the queue every 10ms. It returns the count of fire
// jobs handled.
func (b testBundle) startFireWorker(t *testing.T, f *schedule.Firer) *atomic.Int64 {
	t.Helper()
	poll := 10 * time.Millisecond
	if v := os.Getenv("TASKFORGE_SCHEDULER_BENCH_POLL"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err)
		poll = d
	}
	var jobs atomic.Int64
	h := schedule.NewFireHandler(f)
	srv := asynq.NewServer(b.rd.Opt(), asynq.Config{
		Concurrency: 4, Queues: map[string]int{"critical": 1}, TaskCheckInterval: poll,
		Logger: schedule.AsynqLogger(b.log), LogLevel: asynq.WarnLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeScheduleFire, func(ctx context.Context, task *asynq.Task) error {
		jobs.Add(1)
		return h.ProcessTask(ctx, task)
	})
	require.NoError(t, srv.Start(mux))
	t.Cleanup(srv.Shutdown)
	return &jobs
}

func ptr[T any](v T) *T { return &v }

func (b testBundle) create(t *testing.T, name, cron, typ, params string) schedule.Schedule {
	t.Helper()
	s, err := b.store.Create(context.Background(), schedule.Input{
		Name: &name, Cron: &cron, Type: &typ, Params: json.RawMessage(params),
	}, "admin")
	require.NoError(t, err)
	return s
}

type fireRow struct {
	FireTime  time.Time
	N         int
	CreatedAt time.Time
}

func fires(t *testing.T, b testBundle, id string) []fireRow {
	t.Helper()
	var rows []fireRow
	require.NoError(t, b.pg.DB.Raw(`SELECT fire_time, count(*) AS n, min(created_at) AS created_at FROM tasks
		WHERE schedule_id = ? GROUP BY fire_time ORDER BY fire_time`, id).Scan(&rows).Error)
	return rows
}

// TestTwoReplicasFireOncePerSecond runs two scheduler replicas and a fire
// worker on a one-second schedule: every second gets exactly one task, and
// the fire delay (task creation minus intended fire time) is logged.
func TestTwoReplicasFireOncePerSecond(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := b.create(t, "every-second", "@every 1s", tasks.TypeRefreshPortfolio, `{"portfolio_id":"pf_1"}`)
	f := b.firer(t, schedule.FireOptions{CatchUp: 1})
	jobs := b.startFireWorker(t, f)
	// A long sync interval: the catch-up runs once at start, so every task
	// below comes from a fire job, and no second may be missing.
	b.startRunner(t, f, time.Hour)
	b.startRunner(t, f, time.Hour)

	// scripts/bench/scheduler-fire-delay.sh asks for more fires.
	want := 8
	if v := os.Getenv("TASKFORGE_SCHEDULER_BENCH_FIRES"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		want = n
	}
	require.Eventually(t, func() bool { return len(fires(t, b, s.ID)) >= want }, time.Duration(want+12)*time.Second, 100*time.Millisecond)
	rows := fires(t, b, s.ID)
	var delays []time.Duration
	for i, r := range rows {
		require.Equal(t, 1, r.N, "fire %s has %d tasks", r.FireTime, r.N)
		require.Zero(t, r.FireTime.Nanosecond(), "fire times are whole seconds")
		if i > 0 {
			require.Equal(t, time.Second, r.FireTime.Sub(rows[i-1].FireTime), "no second skipped")
		}
		delays = append(delays, r.CreatedAt.Sub(r.FireTime))
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	p99 := delays[min(len(delays)-1, len(delays)*99/100)]
	t.Logf("fire delay over %d fires with 2 replicas: p50 %s, p99 %s, max %s", len(delays),
		delays[len(delays)/2], p99, delays[len(delays)-1])
	// Both replicas fired: more fire jobs ran than tasks were created.
	require.Greater(t, jobs.Load(), int64(len(rows)))

	// The tasks are ordinary tasks: a row like any other, in Asynq under its id.
	var task store.Task
	require.NoError(t, b.pg.DB.Where("schedule_id = ?", s.ID).Order("fire_time").First(&task).Error)
	require.Equal(t, tasks.TypeRefreshPortfolio, task.Type)
	require.Equal(t, "schedule:"+s.ID, task.CreatedBy)
	require.JSONEq(t, `{"portfolio_id":"pf_1"}`, string(task.Params))
	require.Equal(t, 10, task.EstimatedDuration)
	info, err := b.inspector.GetTaskInfo(task.Priority, task.ID)
	require.NoError(t, err)
	require.Equal(t, tasks.TypeRefreshPortfolio, info.Type)

	got, err := b.store.Get(context.Background(), s.ID)
	require.NoError(t, err)
	require.NotNil(t, got.LastRunAt)
	require.NotNil(t, got.LastTaskID)
	require.NotNil(t, got.NextRunAt)
	require.True(t, got.NextRunAt.After(*got.LastRunAt))
}

// TestChangesApplyWithoutRestart disables, re-enables and edits a running
// schedule through the store; the replica follows within its sync interval.
func TestChangesApplyWithoutRestart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	s := b.create(t, "editable", "@every 1s", tasks.TypeRefreshPortfolio, `{"portfolio_id":"pf_1"}`)
	f := b.firer(t, schedule.FireOptions{CatchUp: 1})
	b.startFireWorker(t, f)
	b.startRunner(t, f, 200*time.Millisecond)
	count := func() int {
		var n int64
		require.NoError(t, b.pg.DB.Model(&store.Task{}).Where("schedule_id = ?", s.ID).Count(&n).Error)
		return int(n)
	}
	require.Eventually(t, func() bool { return count() >= 2 }, 10*time.Second, 50*time.Millisecond)

	// Disabled: no fire after the sync interval has passed.
	_, err := b.store.Patch(ctx, s.ID, schedule.Input{Enabled: ptr(false)})
	require.NoError(t, err)
	// The fires have stopped once no task appeared for one sync interval and
	// a fire in flight, counted from the change at the earliest.
	stopped, quiet := count(), time.Now()
	require.Eventually(t, func() bool {
		if n := count(); n != stopped {
			stopped, quiet = n, time.Now()
		}
		return time.Since(quiet) > 600*time.Millisecond
	}, 10*time.Second, 50*time.Millisecond)
	require.Never(t, func() bool { return count() > stopped }, 2500*time.Millisecond, 100*time.Millisecond)
	off, err := b.store.Get(ctx, s.ID)
	require.NoError(t, err)
	require.Nil(t, off.NextRunAt, "a disabled schedule has no next run")

	// Re-enabled with new params and a two-second period: the fires resume
	// with the new definition, and the seconds it was off are not made up.
	reenabled := time.Now()
	_, err = b.store.Patch(ctx, s.ID, schedule.Input{
		Enabled: ptr(true), Cron: ptr("@every 2s"), Params: json.RawMessage(`{"all":true}`),
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return count() >= stopped+2 }, 10*time.Second, 50*time.Millisecond)
	var fresh []store.Task
	require.NoError(t, b.pg.DB.Where("schedule_id = ? AND created_at > ?", s.ID, reenabled).Order("fire_time").Find(&fresh).Error)
	require.GreaterOrEqual(t, len(fresh), 2)
	for _, task := range fresh {
		require.JSONEq(t, `{"all":true}`, string(task.Params))
		require.Zero(t, task.FireTime.Unix()%2, "fire time %s is a tick of @every 2s", task.FireTime)
		require.False(t, task.FireTime.Before(reenabled.Truncate(time.Second)), "no fire from the disabled period")
	}
}

// TestCatchUpAfterDowntime: a scheduler that was down for several ticks makes
// up only the latest scheduler.catch_up of them, and a second pass (another
// replica, or a restart) creates nothing more.
func TestCatchUpAfterDowntime(t *testing.T) {
	t.Parallel()
	cases := []struct {
		catchUp int
		want    []string
	}{
		{0, nil},
		{1, []string{"2030-01-01T11:00:00Z"}},
		{2, []string{"2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint("catch_up=", tc.catchUp), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			s := b.create(t, "hourly", "0 * * * *", tasks.TypeRefreshAllPrices, `{}`)
			// Last fired at 07:00; the scheduler comes back at 11:30.
			require.NoError(t, b.pg.DB.Exec(`UPDATE schedules SET fired_through = '2030-01-01T07:00:00Z' WHERE id = ?`, s.ID).Error)
			now := time.Date(2030, 1, 1, 11, 30, 0, 0, time.UTC)
			f := b.firer(t, schedule.FireOptions{CatchUp: tc.catchUp, Now: func() time.Time { return now }})
			for range 2 {
				require.NoError(t, f.CatchUp(context.Background()))
			}
			var got []string
			for _, r := range fires(t, b, s.ID) {
				require.Equal(t, 1, r.N)
				got = append(got, r.FireTime.UTC().Format(time.RFC3339))
			}
			require.Equal(t, tc.want, got)
			row, err := b.store.Row(context.Background(), s.ID)
			require.NoError(t, err)
			require.Equal(t, "2030-01-01T11:00:00Z", row.FiredThrough.UTC().Format(time.RFC3339), "skipped ticks are behind the watermark")
			// The on-time tick at noon is created once, however many fire jobs.
			now = time.Date(2030, 1, 1, 12, 0, 0, 5e6, time.UTC)
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := f.FireJob(context.Background(), s.ID)
					require.NoError(t, err)
				}()
			}
			wg.Wait()
			rows := fires(t, b, s.ID)
			require.Equal(t, "2030-01-01T12:00:00Z", rows[len(rows)-1].FireTime.UTC().Format(time.RFC3339))
			require.Equal(t, 1, rows[len(rows)-1].N)
		})
	}
}

// TestFireJobOfMissingOrDisabledSchedule does nothing, without error.
func TestFireJobOfMissingOrDisabledSchedule(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.firer(t, schedule.FireOptions{CatchUp: 1})
	out, err := f.FireJob(context.Background(), "sch_missing")
	require.NoError(t, err)
	require.Empty(t, out.Created)
	s := b.create(t, "off", "@every 1s", tasks.TypeRefreshAllPrices, `{}`)
	_, err = b.store.Patch(context.Background(), s.ID, schedule.Input{Enabled: ptr(false)})
	require.NoError(t, err)
	// Across a tick of the disabled schedule, its fire job creates nothing.
	require.Never(t, func() bool {
		out, err := f.FireJob(context.Background(), s.ID)
		return err != nil || len(out.Created) > 0
	}, 1100*time.Millisecond, 100*time.Millisecond)
}

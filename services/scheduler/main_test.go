package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice/taskservicetest"
	"github.com/taskforge/taskforge/pkg/testenv"
)

func TestBinaryDescribesItself(t *testing.T) {
	t.Parallel()
	testenv.RequireSelfDescribingService(t, testenv.BuildBinary(t, "."), "taskforge-scheduler")
}

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// proc is a running scheduler binary.
type proc struct {
	*testenv.Process
	admin string
}

// logs returns the JSON log lines the scheduler wrote so far.
func (p *proc) logs() []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(p.Output(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// at returns the log lines at level.
func (p *proc) at(level string) []map[string]any {
	var out []map[string]any
	for _, m := range p.logs() {
		if m["level"] == level {
			out = append(out, m)
		}
	}
	return out
}

// has reports whether a line with msg was logged.
func (p *proc) has(msg string) bool {
	for _, m := range p.logs() {
		if m["msg"] == msg {
			return true
		}
	}
	return false
}

// start runs the binary against the test's PostgreSQL and Redis with its
// admin port on a free port, and waits until it serves /healthz.
func start(t *testing.T, pg testenv.Postgres, rd testenv.Redis, extra ...string) *proc {
	t.Helper()
	env := append(os.Environ(),
		"TASKFORGE_CONFIG=", "TASKFORGE_ENV=development", "TASKFORGE_LOG_FORMAT=json", "TASKFORGE_LOG_LEVEL=info",
		"TASKFORGE_DATABASE_URL="+pg.URL, "TASKFORGE_REDIS_ADDR="+rd.Addr, fmt.Sprintf("TASKFORGE_REDIS_DB=%d", rd.DB),
		"TASKFORGE_SCHEDULER_ADMIN_ADDR=127.0.0.1:0", "TASKFORGE_SCHEDULER_SYNC_INTERVAL=500ms",
	)
	p := &proc{Process: testenv.StartProcess(t, testenv.BuildBinary(t, "."), nil, append(env, extra...))}
	require.Eventually(t, func() bool {
		if p.Exited() {
			return true // Reported below.
		}
		for _, m := range p.logs() {
			if a, ok := m["admin_addr"].(string); ok && m["msg"] == "scheduler started" {
				p.admin = a
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "scheduler did not start")
	require.False(t, p.Exited(), "scheduler exited early: %s", p.Output())
	require.Eventually(t, func() bool { return get(p.admin+"/healthz") == http.StatusOK }, 10*time.Second, 50*time.Millisecond)
	return p
}

func get(url string) int {
	resp, err := http.Get("http://" + url)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// stop sends SIGTERM and returns the exit error and how long it took.
func (p *proc) stop(t *testing.T) (error, time.Duration) {
	t.Helper()
	began := time.Now()
	err := p.Stop(t, syscall.SIGTERM, 30*time.Second)
	return err, time.Since(began)
}

// TestBinarySeedsServesAndStopsOnSIGTERM runs the real binary: it seeds the
// specification's four schedules, answers its admin endpoints, and exits 0
// promptly on SIGTERM.
func TestBinarySeedsServesAndStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	rd := testenv.NewRedis(t)
	p := start(t, pg, rd)

	require.Eventually(t, func() bool {
		var n int64
		pg.DB.Model(&store.Schedule{}).Count(&n)
		return n == 4
	}, 10*time.Second, 50*time.Millisecond)
	var names []string
	require.NoError(t, pg.DB.Model(&store.Schedule{}).Order("name").Pluck("name", &names).Error)
	require.Equal(t, []string{"daily_refresh", "hourly_update", "monthly_cleanup", "weekly_report"}, names)
	require.Equal(t, http.StatusOK, get(p.admin+"/readyz"))
	require.Equal(t, http.StatusOK, get(p.admin+"/metrics"))
	resp, err := http.Get("http://" + p.admin + "/metrics")
	require.NoError(t, err)
	metrics, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	require.Contains(t, string(metrics), testenv.BuildInfoMetric())
	// The seeded schedules are registered with Asynq's scheduler.
	insp := asynq.NewInspector(rd.Opt())
	defer insp.Close()
	require.Eventually(t, func() bool {
		entries, err := insp.SchedulerEntries()
		return err == nil && len(entries) == 4
	}, 20*time.Second, 100*time.Millisecond)

	err, took := p.stop(t)
	require.NoError(t, err, "exit status after SIGTERM")
	require.True(t, p.has("scheduler stopping"))
	t.Logf("stopped %s after SIGTERM", took)

	// A second start finds schedules and seeds nothing more.
	p2 := start(t, pg, rd)
	err, _ = p2.stop(t)
	require.NoError(t, err)
	var n int64
	require.NoError(t, pg.DB.Model(&store.Schedule{}).Count(&n).Error)
	require.EqualValues(t, 4, n)
}

// TestTwoSchedulerProcesses runs two scheduler binaries on one schedule that
// fires every second, with its fire jobs handled in this process by the
// package's handler (as the worker does): one task per fire time.
func TestTwoSchedulerProcesses(t *testing.T) {
	t.Parallel()
	env := taskservicetest.New(t)
	pg, rd, svc := env.PG, env.RD, env.Service
	ctx := context.Background()

	st, err := schedule.NewStore(pg.DB)
	require.NoError(t, err)
	name, cron, typ := "every-second", "@every 1s", tasks.TypeRefreshAllPrices
	s, err := st.Create(ctx, schedule.Input{Name: &name, Cron: &cron, Type: &typ}, "admin")
	require.NoError(t, err)

	firer, err := schedule.NewFirer(pg.DB, svc, zap.NewNop(), schedule.FireOptions{CatchUp: 1})
	require.NoError(t, err)
	srv := asynq.NewServer(rd.Opt(), asynq.Config{
		Concurrency: 4, Queues: map[string]int{"critical": 1}, TaskCheckInterval: 10 * time.Millisecond,
		LogLevel: asynq.ErrorLevel,
	})
	mux := asynq.NewServeMux()
	mux.Handle(tasks.TypeScheduleFire, schedule.NewFireHandler(firer))
	require.NoError(t, srv.Start(mux))
	t.Cleanup(srv.Shutdown)

	noSeeds := "TASKFORGE_SCHEDULER_SEED_SCHEDULES=false"
	a, b := start(t, pg, rd, noSeeds), start(t, pg, rd, noSeeds)
	type fire struct {
		FireTime time.Time
		N        int
	}
	var fires []fire
	require.Eventually(t, func() bool {
		fires = nil
		require.NoError(t, pg.DB.Raw(`SELECT fire_time, count(*) AS n FROM tasks WHERE schedule_id = ? GROUP BY fire_time ORDER BY fire_time`, s.ID).Scan(&fires).Error)
		return len(fires) >= 6
	}, 30*time.Second, 100*time.Millisecond)
	for i, f := range fires {
		require.Equal(t, 1, f.N, "fire %s", f.FireTime)
		if i > 0 {
			require.Equal(t, time.Second, f.FireTime.Sub(fires[i-1].FireTime))
		}
	}
	for _, p := range []*proc{a, b} {
		err, _ := p.stop(t)
		require.NoError(t, err)
	}
	for _, p := range []*proc{a, b} {
		require.Empty(t, p.at("error"), "no errors logged")
	}
}

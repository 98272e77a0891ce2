package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestMain removes the built binary.
func TestBinaryDescribesItself(t *testing.T) {
	t.Parallel()
	testenv.RequireSelfDescribingService(t, testenv.BuildBinary(t, "."), "taskforge-monitor")
}

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

type process struct {
	*testenv.Process
	base string
	// adminKey is sent as the HTTP Basic password of requests to the UI.
	adminKey string
}

// testAdminKey is the bootstrap admin key every test monitor starts with.
const testAdminKey = "test-bootstrap-admin-key-0123456789"

// start runs the monitor with env (TASKFORGE_* keys) on a free port and waits
// until /healthz answers.
func start(t *testing.T, env map[string]string) *process {
	t.Helper()
	addr := testenv.FreeAddr(t)
	env["TASKFORGE_MONITOR_ADDR"] = addr
	env["TASKFORGE_LOG_FORMAT"] = "json"
	if _, ok := env["TASKFORGE_AUTH_BOOTSTRAP_ADMIN_KEY"]; !ok {
		env["TASKFORGE_AUTH_BOOTSTRAP_ADMIN_KEY"] = testAdminKey
	}
	var kv []string
	for k, v := range env {
		kv = append(kv, k+"="+v)
	}
	p := &process{base: "http://" + addr, adminKey: env["TASKFORGE_AUTH_BOOTSTRAP_ADMIN_KEY"]}
	p.Process = testenv.StartProcess(t, testenv.BuildBinary(t, "."), nil, testenv.Environ(kv...))
	p.WaitHTTP(t, p.base+"/healthz", 30*time.Second)
	return p
}

func (p *process) get(t *testing.T, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	require.NoError(t, err)
	if strings.HasPrefix(path, "/monitoring") && p.adminKey != "" {
		req.SetBasicAuth("admin", p.adminKey)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestMonitorReadinessFollowsRedis runs the monitor binary against a Redis of
// the test's own and stops and starts that Redis.
func TestMonitorReadinessFollowsRedis(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedisServer(t)
	p := start(t, map[string]string{
		"TASKFORGE_REDIS_ADDR":               rs.Addr,
		"TASKFORGE_REDIS_DIAL_TIMEOUT":       "500ms",
		"TASKFORGE_MONITOR_COLLECT_INTERVAL": "200ms",
	})

	require.Eventually(t, func() bool {
		code, body := p.get(t, "/readyz")
		return code == http.StatusOK && strings.Contains(body, `"redis":"ok"`)
	}, 15*time.Second, 50*time.Millisecond)
	// The four queues are registered and measured before any task exists.
	require.Eventually(t, func() bool {
		_, body := p.get(t, "/metrics")
		return strings.Contains(body, `taskforge_queue_size{queue="low",state="pending"} 0`) &&
			strings.Contains(body, `taskforge_dependency_up{dependency="redis"} 1`) &&
			strings.Contains(body, testenv.BuildInfoMetric())
	}, 15*time.Second, 50*time.Millisecond)
	code, body := p.get(t, "/monitoring/api/queues")
	require.Equal(t, http.StatusOK, code, body)
	for _, q := range []string{"critical", "high", "normal", "low"} {
		require.Contains(t, body, `"queue":"`+q+`"`)
	}

	rs.Stop()
	require.Eventually(t, func() bool {
		code, body := p.get(t, "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"down":["redis"]`)
	}, 30*time.Second, 100*time.Millisecond)
	// Scrapes still work, with the last queue values and redis marked down.
	require.Eventually(t, func() bool {
		code, body := p.get(t, "/metrics")
		return code == http.StatusOK &&
			strings.Contains(body, `taskforge_dependency_up{dependency="redis"} 0`) &&
			strings.Contains(body, `taskforge_queue_size{queue="critical",state="pending"} 0`)
	}, 30*time.Second, 100*time.Millisecond)

	rs.Start()
	require.Eventually(t, func() bool {
		code, _ := p.get(t, "/readyz")
		return code == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond)
	// A Redis restart without persistence forgot the queues; the monitor adds
	// them again.
	require.Eventually(t, func() bool {
		code, body := p.get(t, "/monitoring/api/queues")
		return code == http.StatusOK && strings.Contains(body, `"queue":"critical"`)
	}, 30*time.Second, 100*time.Millisecond)
}

// TestMonitorStopsOnSIGTERM checks the graceful stop: exit status 0 within
// monitor.shutdown_timeout.
func TestMonitorStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedisServer(t)
	const shutdownTimeout = 5 * time.Second
	p := start(t, map[string]string{
		"TASKFORGE_REDIS_ADDR":               rs.Addr,
		"TASKFORGE_MONITOR_SHUTDOWN_TIMEOUT": shutdownTimeout.String(),
	})
	require.Eventually(t, func() bool {
		code, _ := p.get(t, "/readyz")
		return code == http.StatusOK
	}, 15*time.Second, 50*time.Millisecond)

	sent := time.Now()
	require.NoError(t, p.Stop(t, syscall.SIGTERM, shutdownTimeout), "exit status: %s", p.Output())
	t.Logf("stopped %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
	require.Contains(t, p.Output(), "monitor stopped")
}

// TestMonitorRefusesBadConfig checks that a bad value stops the start with an
// error naming the key.
func TestMonitorRefusesBadConfig(t *testing.T) {
	t.Parallel()
	p := testenv.StartProcess(t, testenv.BuildBinary(t, "."), nil,
		[]string{"PATH=" + os.Getenv("PATH"), "TASKFORGE_MONITOR_COLLECT_INTERVAL=soon"})
	err := p.Wait(30 * time.Second)
	require.NotErrorIs(t, err, testenv.ErrStillRunning)
	require.Error(t, err)
	require.Contains(t, p.Output(), "monitor.collect_interval")
	require.Contains(t, p.Output(), "soon")
}

func TestRunPrintsConfigWithSecretsMasked(t *testing.T) {
	t.Setenv("TASKFORGE_REDIS_PASSWORD", "hunter2-redis")
	var out, errOut bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"--print-config"}, &out, &errOut))
	require.Contains(t, out.String(), "collect_interval: 5s")
	require.NotContains(t, out.String(), "hunter2-redis")
}

package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// build compiles the monitor once per test binary.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "taskforge-monitor-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "taskforge-monitor")
		buildOut, buildErr = exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	})
	require.NoError(t, buildErr, "go build: %s", buildOut)
	return binPath
}

// TestMain removes the built binary.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

type process struct {
	cmd    *exec.Cmd
	base   string
	out    *syncBuffer
	exited chan error
	// adminKey is sent as the HTTP Basic password of requests to the UI.
	adminKey string
}

// testAdminKey is the bootstrap admin key every test monitor starts with.
const testAdminKey = "test-bootstrap-admin-key-0123456789"

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs the monitor with env (TASKFORGE_* keys) on a free port and waits
// until /healthz answers.
func start(t *testing.T, env map[string]string) *process {
	t.Helper()
	bin := build(t)
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(bin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TASKFORGE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	env["TASKFORGE_MONITOR_ADDR"] = addr
	env["TASKFORGE_LOG_FORMAT"] = "json"
	if _, ok := env["TASKFORGE_AUTH_BOOTSTRAP_ADMIN_KEY"]; !ok {
		env["TASKFORGE_AUTH_BOOTSTRAP_ADMIN_KEY"] = testAdminKey
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &process{cmd: cmd, base: "http://" + addr, out: &syncBuffer{}, exited: make(chan error, 1),
		adminKey: env["TASKFORGE_AUTH_BOOTSTRAP_ADMIN_KEY"]}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	require.NoError(t, cmd.Start())
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("monitor output:\n%s", p.out.String())
		}
	})
	require.Eventually(t, func() bool {
		code, _ := p.get(t, "/healthz")
		return code == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "monitor did not start: %s", p.out)
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
			strings.Contains(body, `taskforge_dependency_up{dependency="redis"} 1`)
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
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.exited:
		p.exited <- err // for the cleanup
		require.NoError(t, err, "exit status: %s", p.out)
		t.Logf("stopped %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
	case <-time.After(shutdownTimeout):
		t.Fatalf("monitor still running %v after SIGTERM", shutdownTimeout)
	}
	require.Contains(t, p.out.String(), "monitor stopped")
}

// TestMonitorRefusesBadConfig checks that a bad value stops the start with an
// error naming the key.
func TestMonitorRefusesBadConfig(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(build(t))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TASKFORGE_MONITOR_COLLECT_INTERVAL=soon"}
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "monitor.collect_interval")
	require.Contains(t, string(out), "soon")
}

func TestRunPrintsConfigWithSecretsMasked(t *testing.T) {
	t.Setenv("TASKFORGE_REDIS_PASSWORD", "hunter2-redis")
	var out, errOut bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"--print-config"}, &out, &errOut))
	require.Contains(t, out.String(), "collect_interval: 5s")
	require.NotContains(t, out.String(), "hunter2-redis")
}

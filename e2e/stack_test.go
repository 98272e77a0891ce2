package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/notify/notifytest"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/api/client"
)

// services are the binaries the stack runs (and the CLI the tests drive it
// with), built once by TestMain.
var services = []string{"api", "worker", "scheduler", "monitor", "cli"}

// binDir holds the built binaries; buildErr says why they are missing.
var (
	binDir   string
	buildErr error
)

// TestMain builds the four services once, without the race detector (the
// services' own tests run with it), into a temporary directory.
func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		binDir, buildErr = buildServices()
	}
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildServices builds every service in one go build from the workspace root.
func buildServices() (string, error) {
	root, err := workspaceRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "taskforge-e2e-bin")
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, s := range services {
		args = append(args, "./services/"+s)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return dir, fmt.Errorf("go build %s: %v\n%s", strings.Join(args[3:], " "), err, out)
	}
	return dir, nil
}

// workspaceRoot is the nearest directory above the working directory holding
// go.work.
func workspaceRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.work above %s", wd)
		}
		dir = parent
	}
}

// proc is a running service process.
type proc struct {
	*testenv.Process
	name string
	// ready is the URL answering 200 once the process is ready.
	ready string
}

// recorder is an HTTP receiver that records every request and answers 200.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

// recorded is one request a recorder received.
type recorded struct {
	Method, Path string
	Header       http.Header
	Body         []byte
	At           time.Time
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, recorded{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, At: time.Now()})
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

// received returns the requests whose path has prefix.
func (r *recorder) received(prefix string) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recorded
	for _, q := range r.reqs {
		if strings.HasPrefix(q.Path, prefix) {
			out = append(out, q)
		}
	}
	return out
}

// stack is the running system: its processes, their addresses, the shared
// secrets and the local receivers the services talk to.
type stack struct {
	t        *testing.T
	pg       testenv.Postgres
	rd       testenv.Redis
	env      []string
	procs    []*proc
	api      string // base URL of the API
	monitor  string // base URL of the monitor
	workers  []string
	sched    string
	adminKey string
	// callbackSecret signs the callbacks POSTed to tasks' callback_url.
	callbackSecret string
	mail           *notifytest.Server
	alerts         *recorder // Slack, SMS and push
	hooks          *recorder // webhook_callback and callback_url receiver
	results        string    // storage.local_dir
}

// Stack settings the test relies on.
const (
	syncInterval = time.Second
	smsAccount   = "AC0123456789abcdef"
	smsToken     = "sms-token-e2e"
)

// randomHex returns n random bytes, hex encoded.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// startStack starts the SMTP server, the receivers and the four services (two
// workers) on one PostgreSQL and one Redis database, runs migrate up and
// seed-demo, and waits until every service answers /readyz.
func startStack(t *testing.T) *stack {
	t.Helper()
	return startStackOn(t, testenv.NewRedis(t))
}

// startStackOn is startStack on the Redis database rd (e.g. a redis-server of
// the test's own, which it may freeze). extraEnv ("KEY=value") is added to
// every service's environment after the stack's own, whose values it
// overrides (such as TASKFORGE_REDIS_MODE and its addresses).
func startStackOn(t *testing.T, rd testenv.Redis, extraEnv ...string) *stack {
	t.Helper()
	require.NoError(t, buildErr, "building the services")
	s := &stack{
		t: t, pg: testenv.NewPostgres(t), rd: rd,
		adminKey:       "tfe2e_admin_" + randomHex(t, 16),
		callbackSecret: "e2e-callback-secret-" + randomHex(t, 16),
		results:        t.TempDir(),
	}
	s.mail = notifytest.Start(t)
	s.alerts = newRecorder(t)
	s.hooks = newRecorder(t)

	key := make([]byte, 32)
	_, err := rand.Read(key)
	require.NoError(t, err)
	apiAddr, monitorAddr, schedAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	s.api, s.monitor, s.sched = "http://"+apiAddr, "http://"+monitorAddr, "http://"+schedAddr
	s.env = append(os.Environ(),
		"TASKFORGE_CONFIG=",
		"TASKFORGE_ENV=development",
		"TASKFORGE_LOG_FORMAT=json",
		"TASKFORGE_LOG_LEVEL=info",
		"TASKFORGE_DATABASE_URL="+s.pg.URL,
		"TASKFORGE_REDIS_ADDR="+s.rd.Addr,
		"TASKFORGE_REDIS_DB="+strconv.Itoa(s.rd.DB),
		"TASKFORGE_AUTH_BOOTSTRAP_ADMIN_KEY="+s.adminKey,
		"TASKFORGE_CRYPTO_KEYS=e2e="+base64.StdEncoding.EncodeToString(key),
		"TASKFORGE_CRYPTO_ACTIVE_KEY=e2e",
		"TASKFORGE_STORAGE_BACKEND=local",
		"TASKFORGE_STORAGE_LOCAL_DIR="+s.results,
		"TASKFORGE_STORAGE_SIGNING_KEY=e2e-signing-key-"+randomHex(t, 16),
		"TASKFORGE_API_ADDR="+apiAddr,
		"TASKFORGE_API_PUBLIC_URL="+s.api,
		"TASKFORGE_API_SHUTDOWN_TIMEOUT=5s",
		// A stream that heard nothing for this long re-reads its row (a
		// publication lost under load), well within the tests' waits.
		"TASKFORGE_EVENTS_KEEPALIVE=3s",
		"TASKFORGE_WORKER_CALLBACK_SECRET="+s.callbackSecret,
		"TASKFORGE_WORKER_SHUTDOWN_TIMEOUT=3s",
		"TASKFORGE_WORKER_CONCURRENCY=6",
		"TASKFORGE_SCHEDULER_ADMIN_ADDR="+schedAddr,
		"TASKFORGE_SCHEDULER_SYNC_INTERVAL="+syncInterval.String(),
		"TASKFORGE_SCHEDULER_SEED_SCHEDULES=false",
		"TASKFORGE_SCHEDULER_SHUTDOWN_TIMEOUT=3s",
		"TASKFORGE_MONITOR_ADDR="+monitorAddr,
		"TASKFORGE_MONITOR_COLLECT_INTERVAL=200ms",
		"TASKFORGE_MONITOR_SHUTDOWN_TIMEOUT=3s",
		"TASKFORGE_EGRESS_ALLOW_CIDRS=127.0.0.0/8",
		"TASKFORGE_EGRESS_TIMEOUT=20s",
		"TASKFORGE_SMTP_HOST=127.0.0.1",
		"TASKFORGE_SMTP_PORT="+strconv.Itoa(s.mail.SMTPPort),
		"TASKFORGE_SMTP_TLS=none",
		"TASKFORGE_SMTP_FROM=taskforge-e2e@example.test",
		"TASKFORGE_ALERTS_SLACK_WEBHOOK_URL="+s.alerts.srv.URL+"/slack/T000/B000/XXXX",
		"TASKFORGE_ALERTS_SMS_URL="+s.alerts.srv.URL+"/sms",
		"TASKFORGE_ALERTS_SMS_ACCOUNT="+smsAccount,
		"TASKFORGE_ALERTS_SMS_TOKEN="+smsToken,
		"TASKFORGE_ALERTS_SMS_FROM=+15550100",
		"TASKFORGE_ALERTS_PUSH_URL="+s.alerts.srv.URL+"/push",
		"TASKFORGE_ALERTS_PUSH_TOKEN=push-token-e2e",
		"TASKFORGE_PRICES_PROVIDER=simulated",
	)
	s.env = append(s.env, extraEnv...)

	// Schema and demo data.
	s.runOnce("api", "migrate", "up")
	s.runOnce("api", "seed-demo")

	// The services, each on its own ports.
	s.start("api", "api", s.api+"/readyz")
	for i := range 2 {
		admin := testenv.FreeAddr(t)
		s.workers = append(s.workers, "http://"+admin)
		s.start(fmt.Sprintf("worker-%d", i+1), "worker", "http://"+admin+"/readyz", "TASKFORGE_WORKER_ADMIN_ADDR="+admin)
	}
	s.start("scheduler", "scheduler", s.sched+"/readyz")
	s.start("monitor", "monitor", s.monitor+"/readyz")
	// Registered after the processes' own clean-ups, so that it runs before
	// them: they would kill what it stops with SIGTERM.
	t.Cleanup(s.stop)
	for _, p := range s.procs {
		s.waitReady(p)
	}
	return s
}

// runOnce runs a service's subcommand to completion.
func (s *stack) runOnce(name string, args ...string) {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	require.NoError(s.t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
}

// start starts the binary bin as the service name; ready is its readiness
// URL.
func (s *stack) start(name, bin, ready string, extraEnv ...string) *proc {
	s.t.Helper()
	env := append(append([]string{}, s.env...), extraEnv...)
	p := &proc{Process: testenv.StartProcess(s.t, filepath.Join(binDir, bin), nil, env), name: name, ready: ready}
	s.procs = append(s.procs, p)
	// A process started after the stack (a service started again, an extra
	// worker) is stopped with SIGTERM before StartProcess's clean-up kills it:
	// clean-ups run last first, and s.stop's comes before this one.
	s.t.Cleanup(func() {
		if p.Exited() {
			return
		}
		_ = p.Signal(syscall.SIGTERM)
		if err := p.Wait(20 * time.Second); err != nil {
			p.Kill()
			s.t.Errorf("%s did not exit cleanly on SIGTERM: %v", p.name, err)
		}
	})
	return p
}

// waitReady waits until p answers /readyz with 200, failing at once if it
// exits.
func (s *stack) waitReady(p *proc) {
	s.t.Helper()
	p.WaitHTTP(s.t, p.ready, 60*time.Second)
}

// stop sends SIGTERM to every service and waits for them, killing stragglers.
func (s *stack) stop() {
	for _, p := range s.procs {
		if !p.Exited() {
			_ = p.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range s.procs {
		err := p.Wait(time.Until(deadline))
		switch {
		case errors.Is(err, testenv.ErrStillRunning):
			p.Kill()
			s.t.Errorf("%s did not stop within 20s of SIGTERM", p.name)
		case err != nil:
			s.t.Errorf("%s did not exit cleanly on SIGTERM: %v", p.name, err)
		}
	}
	// On failure each process's clean-up logs the last lines of its output.
}

// logTails returns the recent log lines of every service, for failure
// messages.
func (s *stack) logTails() fmt.Stringer {
	return lazy(func() string {
		var b strings.Builder
		for _, p := range s.procs {
			fmt.Fprintf(&b, "\n---- %s:\n%s\n", p.name, p.Tail(15))
		}
		return b.String()
	})
}

// errorLines returns the log lines at level error or above of every service.
func (s *stack) errorLines() []string {
	var out []string
	for _, p := range s.procs {
		for _, line := range strings.Split(p.Output(), "\n") {
			for _, level := range []string{"error", "dpanic", "panic", "fatal"} {
				if strings.Contains(line, `"level":"`+level+`"`) {
					out = append(out, p.name+": "+line)
				}
			}
		}
	}
	return out
}

// lazy formats a message only when a failure prints it.
type lazy func() string

func (l lazy) String() string { return l() }

// client returns an API client authenticating with key. It does not follow
// redirects, so that the result route's 302 can be checked.
func (s *stack) client(key string) *client.ClientWithResponses {
	s.t.Helper()
	hc := &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c, err := client.NewClientWithResponses(s.api, client.WithHTTPClient(hc),
		client.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+key)
			return nil
		}))
	require.NoError(s.t, err)
	return c
}

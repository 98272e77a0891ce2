package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestBinaryServesAndShutsDown builds the binary, runs its migrate
// subcommands, serves against the test's PostgreSQL and Redis databases, and
// checks that SIGTERM ends it cleanly within api.shutdown_timeout.
func TestBinaryServesAndShutsDown(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	rd := testenv.NewRedis(t)
	bin := testenv.BuildBinary(t, ".")
	addr := testenv.FreeAddr(t)
	env := append(os.Environ(),
		"TASKFORGE_DATABASE_URL="+pg.URL,
		"TASKFORGE_REDIS_ADDR="+rd.Addr,
		fmt.Sprint("TASKFORGE_REDIS_DB=", rd.DB),
		"TASKFORGE_API_ADDR="+addr,
		"TASKFORGE_API_SHUTDOWN_TIMEOUT=5s",
		"TASKFORGE_API_MIGRATE_ON_START=true",
		"TASKFORGE_AUTH_BOOTSTRAP_ADMIN_KEY=bootstrap-key-for-tests",
		"TASKFORGE_LOG_LEVEL=warn",
	)

	// migrate up and migrate status.
	for _, args := range [][]string{{"migrate", "up"}, {"migrate", "status"}} {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		if args[1] == "status" {
			require.Contains(t, string(out), "00001 applied")
		}
	}
	bad := exec.Command(bin, "frobnicate")
	bad.Env = env
	out, err := bad.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "unknown command")

	// serve (the default).
	p := testenv.StartProcess(t, bin, nil, env)
	base := "http://" + addr
	p.WaitHTTP(t, base+"/readyz", 20*time.Second)

	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/tasks", strings.NewReader(`{"type":"refresh_all_prices"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer bootstrap-key-for-tests")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	// The build is exported for admins' scrapes.
	req, err = http.NewRequest(http.MethodGet, base+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer bootstrap-key-for-tests")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	metrics, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(metrics), testenv.BuildInfoMetric())

	require.NoError(t, p.Stop(t, syscall.SIGTERM, 10*time.Second), "clean exit; output: %s", p.Output())
	_, err = http.Get(base + "/healthz")
	require.Error(t, err, "the listener is closed")
}

// TestBinaryDescribesItself: help, version and each command's help answer
// without any database or Redis.
func TestBinaryDescribesItself(t *testing.T) {
	t.Parallel()
	bin := testenv.BuildBinary(t, ".")
	testenv.RequireSelfDescribing(t, bin, "taskforge-api",
		"migrate up", "migrate status", "seed-demo", "restore", "apikey create", "apikey list", "apikey revoke")
	// Nothing is listening here: help must not need it.
	env := append(os.Environ(), "TASKFORGE_DATABASE_URL=postgres://nobody@127.0.0.1:1/none", "TASKFORGE_REDIS_ADDR=127.0.0.1:1")
	for args, want := range map[string][]string{
		"apikey create --help": {"Usage: taskforge-api apikey create", "-name string", "-role string", "-expires-in duration"},
		"migrate --help":       {"migrate up", "migrate status"},
		"restore -h":           {"--result ID | --file PATH"},
		"seed-demo help":       {"seed-demo"},
	} {
		out, errOut, code := testenv.RunBinary(t, bin, env, strings.Fields(args)...)
		require.Equal(t, 0, code, "%s: %s", args, errOut)
		for _, w := range want {
			require.Contains(t, out, w, args)
		}
	}
	_, errOut, code := testenv.RunBinary(t, bin, env, "frobnicate")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "see taskforge-api --help")
}

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
	bin := filepath.Join(t.TempDir(), "api")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
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
	var stderr bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	base := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond, "readyz; stderr: %s", &stderr)

	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/tasks", strings.NewReader(`{"type":"refresh_all_prices"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer bootstrap-key-for-tests")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-done:
		require.NoError(t, err, "clean exit; stderr: %s", stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("no exit within the shutdown timeout; stderr: %s", stderr.String())
	}
	_, err = http.Get(base + "/healthz")
	require.Error(t, err, "the listener is closed")
}

package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/services/api/client"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ownRedis starts a redis-server of the test's own, which the test may stop.
func ownRedis(t *testing.T) (addr string, stop func()) {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	require.NoError(t, err, "redis-server is needed (scripts/test.sh installs it)")
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(path, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	require.NoError(t, cmd.Start())
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	require.Eventually(t, func() bool { return rc.Ping(context.Background()).Err() == nil }, 10*time.Second, 20*time.Millisecond)
	return addr, stop
}

func requireUnavailable(t *testing.T, status int, header http.Header, body []byte) {
	t.Helper()
	require.Equal(t, http.StatusServiceUnavailable, status, string(body))
	require.Equal(t, "2", header.Get("Retry-After"))
	require.NotContains(t, string(body), "127.0.0.1", "no internals in the answer")
}

func TestRedisDown(t *testing.T) {
	t.Parallel()
	addr, stop := ownRedis(t)
	b := setupWith(t, setupOptions{redisOpt: asynq.RedisClientOpt{Addr: addr, DialTimeout: 300 * time.Millisecond,
		ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}})
	op := b.client(t, tokOp)
	create(t, op, createBody("refresh_all_prices", nil))
	stop()

	resp, err := op.CreateTaskWithResponse(ctx, nil, createBody("refresh_all_prices", nil))
	require.NoError(t, err)
	requireUnavailable(t, resp.StatusCode(), resp.HTTPResponse.Header, resp.Body)
	var n int64
	require.NoError(t, b.pg.DB.Model(&store.Task{}).Count(&n).Error)
	require.EqualValues(t, 1, n, "the row of the refused task is gone")

	q, err := op.ListQueuesWithResponse(ctx)
	require.NoError(t, err)
	requireUnavailable(t, q.StatusCode(), q.HTTPResponse.Header, q.Body)
	rz, err := b.client(t, "").ReadyzWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, rz.StatusCode())
	require.Equal(t, []string{"redis"}, *rz.JSON503.Down)

	// Reads from PostgreSQL still work.
	l, err := op.ListTasksWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, l.StatusCode())
}

func TestPostgresDown(t *testing.T) {
	t.Parallel()
	down, err := store.Open(store.Options{URL: "postgres://taskforge@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"})
	require.NoError(t, err)
	b := setupWith(t, setupOptions{db: down})
	op := b.client(t, tokOp)

	resp, err := op.CreateTaskWithResponse(ctx, nil, createBody("refresh_all_prices", nil))
	require.NoError(t, err)
	requireUnavailable(t, resp.StatusCode(), resp.HTTPResponse.Header, resp.Body)
	qs, err := b.inspector.Queues()
	require.NoError(t, err)
	require.Empty(t, qs, "nothing was enqueued")

	l, err := op.ListTasksWithResponse(ctx, nil)
	require.NoError(t, err)
	requireUnavailable(t, l.StatusCode(), l.HTTPResponse.Header, l.Body)
	g, err := op.GetTaskWithResponse(ctx, "task_01hz3k8c2m4n5p6q7r8s9t0v1w")
	require.NoError(t, err)
	requireUnavailable(t, g.StatusCode(), g.HTTPResponse.Header, g.Body)
	d, err := op.CancelTaskWithResponse(ctx, "task_01hz3k8c2m4n5p6q7r8s9t0v1w")
	require.NoError(t, err)
	requireUnavailable(t, d.StatusCode(), d.HTTPResponse.Header, d.Body)
	s, err := op.GetStatsWithResponse(ctx, &client.GetStatsParams{})
	require.NoError(t, err)
	requireUnavailable(t, s.StatusCode(), s.HTTPResponse.Header, s.Body)
	rz, err := b.client(t, "").ReadyzWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, rz.StatusCode())
	require.Equal(t, []string{"postgres"}, *rz.JSON503.Down)
}

// TestCreateAuditRowWithTheTask: a created task's audit row is written with
// the task (one row, the request's actor, id and address, the type); a
// create refused because Redis is away leaves neither the task nor a
// success row, only the failure's.
func TestCreateAuditRowWithTheTask(t *testing.T) {
	t.Parallel()
	addr, stop := ownRedis(t)
	b := setupWith(t, setupOptions{secure: true, bootstrap: testBootstrap, redisOpt: asynq.RedisClientOpt{Addr: addr,
		DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}})
	rows := func() []store.AuditEntry {
		t.Helper()
		var out []store.AuditEntry
		require.NoError(t, b.pg.DB.Where("action = ?", audit.ActionTaskCreate).Order("id").Find(&out).Error)
		return out
	}
	post := func() (int, string, http.Header) {
		t.Helper()
		resp := b.raw(t, http.MethodPost, "/api/v1/tasks", testBootstrap, strings.NewReader(`{"type":"refresh_all_prices"}`),
			map[string]string{"Content-Type": "application/json"})
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body), resp.Header
	}
	code, body, header := post()
	require.Equal(t, http.StatusCreated, code, body)
	var task struct {
		TaskID string `json:"task_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &task))
	got := rows()
	require.Len(t, got, 1)
	require.Equal(t, task.TaskID, got[0].ResourceID)
	require.Equal(t, audit.ResourceTask, got[0].ResourceType)
	require.Equal(t, audit.Success, got[0].Outcome)
	require.Equal(t, auth.BootstrapPrincipalID, got[0].Actor)
	require.Equal(t, header.Get(echo.HeaderXRequestID), got[0].RequestID)
	require.Equal(t, "127.0.0.1", got[0].ClientIP)
	require.JSONEq(t, `{"type":"refresh_all_prices"}`, string(got[0].Details))

	stop()
	code, body, _ = post()
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	var n int64
	require.NoError(t, b.pg.DB.Model(&store.Task{}).Count(&n).Error)
	require.EqualValues(t, 1, n, "the refused task's row is gone")
	got = rows()
	require.Len(t, got, 2, "the first create's row and the refusal's")
	require.Equal(t, audit.Failure, got[1].Outcome)
	require.Empty(t, got[1].ResourceID)
}

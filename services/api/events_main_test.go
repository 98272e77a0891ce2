package main

import (
	"bufio"
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

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/api/client"
)

const eventsAdminKey = "bootstrap-key-for-event-tests"

// eventsEnv is the environment of the API and worker binaries of one test:
// short HTTP timeouts (which the streams outlive) and a short keep-alive.
func eventsEnv(t *testing.T) []string {
	pg := testenv.NewPostgres(t)
	rd := testenv.NewRedis(t)
	return append(os.Environ(),
		"TASKFORGE_DATABASE_URL="+pg.URL,
		"TASKFORGE_REDIS_ADDR="+rd.Addr,
		fmt.Sprint("TASKFORGE_REDIS_DB=", rd.DB),
		"TASKFORGE_API_MIGRATE_ON_START=true",
		"TASKFORGE_API_SHUTDOWN_TIMEOUT=5s",
		"TASKFORGE_API_READ_TIMEOUT=1s",
		"TASKFORGE_API_WRITE_TIMEOUT=1s",
		"TASKFORGE_EVENTS_KEEPALIVE=200ms",
		"TASKFORGE_AUTH_BOOTSTRAP_ADMIN_KEY="+eventsAdminKey,
		"TASKFORGE_LOG_LEVEL=warn",
		"TASKFORGE_WORKER_ADMIN_ADDR="+testenv.FreeAddr(t),
	)
}

func startEventsAPI(t *testing.T, bin string, env []string) (*testenv.Process, string) {
	t.Helper()
	addr := testenv.FreeAddr(t)
	p := testenv.StartProcess(t, bin, nil, append(append([]string{}, env...), "TASKFORGE_API_ADDR="+addr))
	base := "http://" + addr
	p.WaitHTTP(t, base+"/readyz", 30*time.Second)
	return p, base
}

func adminClient(t *testing.T, base string) *client.Client {
	t.Helper()
	c, err := client.NewClient(base, client.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+eventsAdminKey)
		return nil
	}))
	require.NoError(t, err)
	return c
}

// createAt creates a refresh_all_prices task due at when and returns its id.
func createAt(t *testing.T, base string, when time.Time) string {
	t.Helper()
	body := fmt.Sprintf(`{"type":"refresh_all_prices","scheduled_for":%q}`, when.UTC().Format(time.RFC3339Nano))
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/tasks", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+eventsAdminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(b))
	var created struct {
		TaskID string `json:"task_id"`
	}
	require.NoError(t, json.Unmarshal(b, &created))
	return created.TaskID
}

// untilEnd reads a stream until the server ends it and returns its task
// events' statuses.
func untilEnd(t *testing.T, s *client.EventStream, within time.Duration) []string {
	t.Helper()
	done := make(chan []string, 1)
	errc := make(chan error, 1)
	go func() {
		var out []string
		for {
			ev, err := s.Next()
			if err == io.EOF {
				done <- out
				return
			}
			if err != nil {
				errc <- err
				return
			}
			if ev.Type == client.EventTask {
				out = append(out, string(ev.Task.Status))
			}
		}
	}()
	select {
	case out := <-done:
		return out
	case err := <-errc:
		t.Fatalf("stream broke: %v", err)
	case <-time.After(within):
		t.Fatalf("stream did not end within %s", within)
	}
	return nil
}

// TestTwoReplicasStreamAWorkersTask: a task run by the worker binary reaches
// the streams of two API replicas, each from its snapshot to the terminal
// event; a dashboard stream on the other replica sees it too.
func TestTwoReplicasStreamAWorkersTask(t *testing.T) {
	t.Parallel()
	env := eventsEnv(t)
	apiBin := testenv.BuildBinary(t, ".")
	workerBin := testenv.BuildBinary(t, "../worker")
	_, a := startEventsAPI(t, apiBin, env)
	_, b := startEventsAPI(t, apiBin, env)
	testenv.StartProcess(t, workerBin, nil, env)

	// Due in a moment, so that both streams are open before it runs.
	id := createAt(t, a, time.Now().Add(2*time.Second))
	ctx := context.Background()
	sa, err := adminClient(t, a).TaskEvents(ctx, id, "")
	require.NoError(t, err)
	defer sa.Close()
	sb, err := adminClient(t, b).TaskEvents(ctx, id, "")
	require.NoError(t, err)
	defer sb.Close()
	dash, err := adminClient(t, b).Events(ctx, client.EventFilter{Type: "refresh_all_prices", Status: "completed"}, "")
	require.NoError(t, err)
	defer dash.Close()

	for name, s := range map[string]*client.EventStream{"replica a": sa, "replica b": sb} {
		got := untilEnd(t, s, 60*time.Second)
		require.GreaterOrEqual(t, len(got), 2, name)
		require.Equal(t, "pending", got[0], name+": the snapshot first")
		require.Equal(t, "completed", got[len(got)-1], name+": the terminal event last")
	}
	ev, err := dash.Next()
	require.NoError(t, err)
	require.Equal(t, id, ev.Task.TaskId)
	require.Equal(t, client.Status("completed"), ev.Task.Status)
}

// TestSIGTERMClosesStreams: open streams outlive the HTTP read and write
// timeouts (keep-alives keep coming) and end when the API gets SIGTERM, which
// then exits cleanly within its shutdown timeout.
func TestSIGTERMClosesStreams(t *testing.T) {
	t.Parallel()
	env := eventsEnv(t)
	bin := testenv.BuildBinary(t, ".")
	p, base := startEventsAPI(t, bin, env)
	id := createAt(t, base, time.Now().Add(time.Hour))

	req, err := http.NewRequest(http.MethodGet, base+"/api/v1/tasks/"+id+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+eventsAdminKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	r := bufio.NewReader(resp.Body)
	// Keep-alives past the 1 s read and write timeouts.
	start := time.Now()
	for time.Since(start) < 2500*time.Millisecond {
		line, err := r.ReadString('\n')
		require.NoError(t, err, "the stream outlives the server's timeouts")
		_ = line
	}

	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, r)
		ended <- err
	}()
	require.NoError(t, p.Signal(syscall.SIGTERM))
	select {
	case err := <-ended:
		require.NoError(t, err, "a clean end of the stream")
	case <-time.After(5 * time.Second):
		t.Fatal("the stream was not closed within the shutdown timeout")
	}
	require.NoError(t, p.Wait(10*time.Second), "clean exit; output: %s", p.Output())
}

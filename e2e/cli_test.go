package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/api/client"
)

// Exit codes of the CLI (services/cli/internal/cli).
const (
	cliOK        = 0
	cliUsage     = 2
	cliFailed    = 3
	cliCancelled = 4
)

// cli drives the built taskforge binary against the stack as a user would:
// typed params and --wait, watch of a failing task, JSON output, a bad param,
// cancel of a running task, and a token kept in the config file.
func (s *stack) cli(t *testing.T, operator *client.ClientWithResponses, key string) {
	home := t.TempDir()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"TASKFORGE_URL=" + s.api, "TASKFORGE_TOKEN=" + key}
	bin := filepath.Join(binDir, "cli")
	run := func(env []string, args ...string) (string, string, int) {
		t.Helper()
		return testenv.RunBinary(t, bin, env, args...)
	}

	t.Run("help of every command", func(t *testing.T) {
		// The command tree as the binary's own help lists it.
		queue, seen := [][]string{{}}, 0
		for len(queue) > 0 {
			path := queue[0]
			queue = queue[1:]
			out, errOut, code := run(env, append(append([]string{}, path...), "--help")...)
			require.Equalf(t, cliOK, code, "taskforge %s --help: %s", strings.Join(path, " "), errOut)
			require.Contains(t, out, "Usage:")
			seen++
			_, cmds, _ := strings.Cut(out, "Available Commands:\n")
			cmds, _, _ = strings.Cut(cmds, "\n\n")
			for _, line := range strings.Split(cmds, "\n") {
				if f := strings.Fields(line); len(f) > 0 && f[0] != "help" {
					queue = append(queue, append(append([]string{}, path...), f[0]))
				}
			}
		}
		require.Greater(t, seen, 30, "every command and subcommand")
		out, _, code := run(env, "--version")
		require.Equal(t, cliOK, code)
		require.Contains(t, out, "taskforge ")
	})

	t.Run("create with typed params and --wait prints the result", func(t *testing.T) {
		out, errOut, code := run(env, "tasks", "create", "--type", "refresh_benchmark",
			"--param", "benchmark=^NDX", "--param", "lookback_days=3", "--wait")
		require.Equalf(t, cliOK, code, "stdout %s\nstderr %s", out, errOut)
		var res map[string]any
		require.NoErrorf(t, json.Unmarshal([]byte(out), &res), "the result is printed as JSON: %s", out)
		require.NotEmpty(t, res, "the task's result")
		require.Contains(t, errOut, "created task_")
		id := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(errOut, "\n", 2)[0], "created "))
		task, ok := getTask(t, operator, id)
		require.True(t, ok)
		require.Equal(t, client.StatusCompleted, task.Status)
		require.EqualValues(t, 3, task.Params["lookback_days"], "the param was sent as a number: %v", task.Params)
	})

	t.Run("json output matches the API", func(t *testing.T) {
		id := create(t, operator, newTask("refresh_benchmark", params{"benchmark": "^NDX", "lookback_days": 2}))
		s.waitStatus(t, operator, id, client.StatusCompleted, taskWithin) // the two reads see the same row
		out, errOut, code := run(env, "tasks", "get", id, "--output", "json")
		require.Equalf(t, cliOK, code, "stderr %s", errOut)
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &got))
		resp, err := operator.GetTaskWithResponse(context.Background(), id)
		require.NoError(t, err)
		var want map[string]any
		require.NoError(t, json.Unmarshal(resp.Body, &want))
		require.ElementsMatch(t, keys(want), keys(got), "the same fields as GET /api/v1/tasks/{id}")
		require.Equal(t, want["task_id"], got["task_id"])
		require.Equal(t, want["type"], got["type"])

		out, _, code = run(env, "tasks", "list", "--type", "refresh_benchmark", "-o", "json")
		require.Equal(t, cliOK, code)
		var page map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &page))
		require.Contains(t, page, "items")
	})

	t.Run("a bad param names the field and is a usage error", func(t *testing.T) {
		out, errOut, code := run(env, "tasks", "create", "--type", "refresh_portfolio")
		require.Equalf(t, cliUsage, code, "stdout %s\nstderr %s", out, errOut)
		require.Contains(t, errOut, "portfolio_id", "the API's field error is shown")
		_, errOut, code = run(env, "tasks", "create", "--type", "refresh_benchmark", "--param", "lookback_days=five")
		require.Equal(t, cliUsage, code)
		require.Contains(t, errOut, `lookback_days: "five" is not an integer`)
		_, errOut, code = run(env, "tasks", "create", "--type", "refresh_benchmark", "--param", "no_such=1")
		require.Equal(t, cliUsage, code)
		require.Contains(t, errOut, "no such param")
	})

	t.Run("watch of a failing task exits with the failed code and the error", func(t *testing.T) {
		failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusInternalServerError)
		}))
		t.Cleanup(failing.Close)
		out, errOut, code := run(env, "tasks", "create", "--type", "webhook_callback",
			"--param", "url="+failing.URL+"/hook", "--param", `payload={"n":1}`, "--retries", "0", "-o", "json")
		require.Equalf(t, cliOK, code, "stderr %s", errOut)
		var created client.TaskCreated
		require.NoError(t, json.Unmarshal([]byte(out), &created))
		out, errOut, code = run(env, "tasks", "watch", created.TaskId)
		require.Equalf(t, cliFailed, code, "stdout %s\nstderr %s", out, errOut)
		require.Contains(t, errOut, "failed")
		require.Contains(t, errOut, "500", "the task's error is shown")
		_, _, code = run(env, "tasks", "wait", created.TaskId)
		require.Equal(t, cliFailed, code, "wait says the same silently")
	})

	t.Run("cancel of a running task", func(t *testing.T) {
		var arrived atomic.Int32
		release := make(chan struct{})
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			arrived.Add(1)
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(slow.Close)
		t.Cleanup(func() { close(release) })
		id := create(t, operator, newTask("webhook_callback", params{"url": slow.URL + "/slow", "payload": map[string]any{"n": 2}}))
		s.waitStatus(t, operator, id, client.StatusRunning, taskWithin)
		out, errOut, code := run(env, "tasks", "cancel", id)
		require.Equalf(t, cliOK, code, "stderr %s", errOut)
		require.Contains(t, out, id)
		_, errOut, code = run(env, "tasks", "wait", id)
		require.Equalf(t, cliCancelled, code, "stderr %s", errOut)
		require.Contains(t, errOut, "cancelled")
	})

	t.Run("queues pause and resume (admins)", func(t *testing.T) {
		admin := append(append([]string{}, env[:len(env)-1]...), "TASKFORGE_TOKEN="+s.adminKey)
		_, errOut, code := run(env, "queues", "pause", "low")
		require.NotEqualf(t, cliOK, code, "an operator may not pause a queue: %s", errOut)
		out, errOut, code := run(admin, "queues", "pause", "low")
		require.Equalf(t, cliOK, code, "stderr %s", errOut)
		require.Contains(t, out, "queue low paused")
		out, _, code = run(env, "queues", "-o", "json")
		require.Equal(t, cliOK, code)
		var list client.QueueList
		require.NoError(t, json.Unmarshal([]byte(out), &list))
		for _, q := range list.Items {
			require.Equal(t, q.Name == "low", q.Paused, "queue %s", q.Name)
		}
		out, errOut, code = run(admin, "queues", "resume", "low")
		require.Equalf(t, cliOK, code, "stderr %s", errOut)
		require.Contains(t, out, "queue low running")
		_, errOut, code = run(admin, "queues", "pause", "urgent")
		require.NotEqual(t, cliOK, code)
		require.Contains(t, errOut, "no such queue")
	})

	t.Run("a token in the config file", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "config.yaml")
		noToken := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TASKFORGE_CONFIG=" + cfg}
		_, errOut, code := run(noToken, "config", "set-context", "e2e", "--url", s.api, "--token", key)
		require.Equalf(t, cliOK, code, "stderr %s", errOut)
		st, err := os.Stat(cfg)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the config file is the owner's only")
		out, errOut, code := run(noToken, "task-types")
		require.Equalf(t, cliOK, code, "stderr %s", errOut)
		require.Contains(t, out, "refresh_portfolio")
		out, _, code = run(noToken, "config", "get-contexts")
		require.Equal(t, cliOK, code)
		require.NotContains(t, out, key, "a token is never printed")

		require.NoError(t, os.Chmod(cfg, 0o644))
		_, errOut, code = run(noToken, "task-types")
		require.Equal(t, cliUsage, code)
		require.Contains(t, errOut, "chmod 600")
		require.NotContains(t, errOut, key)

		_, _, code = run([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TASKFORGE_URL=" + s.api}, "task-types")
		require.NotEqual(t, cliOK, code, "without a token the API refuses")
	})
}

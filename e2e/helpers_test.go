package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/services/api/client"
)

// pollEvery is how often a waiting test reads a task again.
const pollEvery = 200 * time.Millisecond

// terminal are the statuses a task does not leave by itself.
var terminal = map[client.Status]bool{client.StatusCompleted: true, client.StatusFailed: true, client.StatusCancelled: true}

// params is a task's params.
type params = map[string]any

// create creates a task and returns its id; it fails unless the API answers
// 201.
func create(t *testing.T, c *client.ClientWithResponses, req client.CreateTaskRequest) string {
	t.Helper()
	resp, err := c.CreateTaskWithResponse(context.Background(), nil, req)
	require.NoError(t, err)
	require.Equalf(t, http.StatusCreated, resp.StatusCode(), "create %s: %s", req.Type, resp.Body)
	require.NotNil(t, resp.JSON201)
	require.Equal(t, client.StatusPending, resp.JSON201.Status)
	require.True(t, strings.HasPrefix(resp.JSON201.TaskId, "task_"), resp.JSON201.TaskId)
	return resp.JSON201.TaskId
}

// newTask is a creation request of typ with p.
func newTask(typ string, p params) client.CreateTaskRequest {
	return client.CreateTaskRequest{Type: typ, Params: &p}
}

// getTask reads a task; ok is false when the API rate limited the read.
func getTask(t *testing.T, c *client.ClientWithResponses, id string) (client.Task, bool) {
	t.Helper()
	resp, err := c.GetTaskWithResponse(context.Background(), id)
	require.NoError(t, err)
	if resp.StatusCode() == http.StatusTooManyRequests {
		return client.Task{}, false
	}
	require.Equalf(t, http.StatusOK, resp.StatusCode(), "GET task %s: %s", id, resp.Body)
	return *resp.JSON200, true
}

// waitStatus polls GET /api/v1/tasks/{id} until the task has status want. A
// task that reaches another terminal status fails the test at once, with the
// task and the services' recent logs.
func (s *stack) waitStatus(t *testing.T, c *client.ClientWithResponses, id string, want client.Status, within time.Duration) client.Task {
	t.Helper()
	var last client.Task
	deadline := time.Now().Add(within)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if task, ok := getTask(t, c, id); ok {
			last = task
			if task.Status == want {
				return task
			}
			if terminal[task.Status] {
				t.Fatalf("task %s (%s) ended %s, want %s: %s%s", id, task.Type, task.Status, want, taskJSON(task), s.logTails())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s (%s) is %s after %s, want %s: %s%s", id, last.Type, last.Status, within, want, taskJSON(last), s.logTails())
		}
		<-tick.C
	}
}

// taskJSON renders a task for failure messages.
func taskJSON(task client.Task) string {
	b, _ := json.Marshal(task)
	return string(b)
}

// result returns a completed task's JSON result as a map.
func result(t *testing.T, task client.Task) map[string]any {
	t.Helper()
	m, ok := task.Result.(map[string]any)
	require.Truef(t, ok, "task %s (%s) has no JSON object result: %s", task.TaskId, task.Type, taskJSON(task))
	return m
}

// num reads a number field of a result.
func num(t *testing.T, m map[string]any, key string) float64 {
	t.Helper()
	v, ok := m[key].(float64)
	require.Truef(t, ok, "result field %q is not a number: %v", key, m)
	return v
}

// str reads a string field of a result.
func str(t *testing.T, m map[string]any, key string) string {
	t.Helper()
	v, ok := m[key].(string)
	require.Truef(t, ok, "result field %q is not a string: %v", key, m)
	return v
}

// obj reads an object field of a result.
func obj(t *testing.T, m map[string]any, key string) map[string]any {
	t.Helper()
	v, ok := m[key].(map[string]any)
	require.Truef(t, ok, "result field %q is not an object: %v", key, m)
	return v
}

// logs reads a task's logs and attempts.
func logs(t *testing.T, c *client.ClientWithResponses, id string) client.TaskLogs {
	t.Helper()
	resp, err := c.GetTaskLogsWithResponse(context.Background(), id, nil)
	require.NoError(t, err)
	require.Equalf(t, http.StatusOK, resp.StatusCode(), "GET logs %s: %s", id, resp.Body)
	return *resp.JSON200
}

// outcomes lists the outcomes of a task's attempts in order.
func outcomes(l client.TaskLogs) []client.AttemptOutcome {
	out := []client.AttemptOutcome{}
	for _, a := range l.Attempts {
		out = append(out, a.Outcome)
	}
	return out
}

// checkCompleted asserts what every completed task shows: progress 1, a
// completion time and duration, and a completed attempt in /logs.
func checkCompleted(t *testing.T, c *client.ClientWithResponses, task client.Task) {
	t.Helper()
	require.Equal(t, client.StatusCompleted, task.Status)
	require.InDeltaf(t, 1.0, task.Progress, 1e-9, "progress of %s", task.Type)
	require.NotNil(t, task.StartedAt, task.Type)
	require.NotNil(t, task.CompletedAt, task.Type)
	require.NotNil(t, task.DurationMs, task.Type)
	require.GreaterOrEqual(t, task.Attempts, 1, task.Type)
	require.Nil(t, task.Error, task.Type)
	l := logs(t, c, task.TaskId)
	require.Equal(t, task.TaskId, l.TaskId)
	require.NotEmptyf(t, l.Attempts, "%s lists no attempt", task.Type)
	last := l.Attempts[len(l.Attempts)-1]
	require.Equalf(t, client.AttemptOutcomeCompleted, last.Outcome, "%s: attempts %v", task.Type, outcomes(l))
	require.NotEmpty(t, last.Worker, task.Type)
	require.NotNil(t, last.FinishedAt, task.Type)
}

// jsonResult checks GET /api/v1/tasks/{id}/result of a task with a JSON
// result: 200 with the task's result.
func jsonResult(t *testing.T, c *client.ClientWithResponses, task client.Task) {
	t.Helper()
	resp, err := c.GetTaskResultWithResponse(context.Background(), task.TaskId, nil)
	require.NoError(t, err)
	require.Equalf(t, http.StatusOK, resp.StatusCode(), "GET result of %s: %s", task.Type, resp.Body)
	require.NotNil(t, resp.JSON200)
	require.Equal(t, task.TaskId, resp.JSON200.TaskId)
	require.Equal(t, client.StatusCompleted, resp.JSON200.Status)
	require.Equal(t, task.Result, resp.JSON200.Result, task.Type)
}

// fileResult checks GET /api/v1/tasks/{id}/result of a task that stored a
// file: a 302 to a signed download link that serves the file (without a bearer
// token) with the size and SHA-256 the task's result names. It returns the
// file.
func fileResult(t *testing.T, c *client.ClientWithResponses, task client.Task) []byte {
	t.Helper()
	res := result(t, task)
	resp, err := c.GetTaskResultWithResponse(context.Background(), task.TaskId, nil)
	require.NoError(t, err)
	require.Equalf(t, http.StatusFound, resp.StatusCode(), "GET result of %s: %s", task.Type, resp.Body)
	link := resp.HTTPResponse.Header.Get("Location")
	require.NotEmpty(t, link)
	require.Contains(t, link, "/api/v1/results/"+str(t, res, "result_id")+"/download")

	get, err := http.Get(link)
	require.NoError(t, err)
	defer get.Body.Close()
	body, err := io.ReadAll(get.Body)
	require.NoError(t, err)
	require.Equalf(t, http.StatusOK, get.StatusCode, "download %s: %s", link, body)
	require.Contains(t, get.Header.Get("Content-Disposition"), "attachment")
	require.EqualValues(t, num(t, res, "size"), len(body), "size of %s", task.Type)
	sum := sha256.Sum256(body)
	require.Equal(t, str(t, res, "sha256"), hex.EncodeToString(sum[:]), "sha256 of %s", task.Type)

	// A link with a forged signature is refused.
	u, err := url.Parse(link)
	require.NoError(t, err)
	q := u.Query()
	require.NotEmpty(t, q.Get("sig"))
	q.Set("sig", "forged")
	u.RawQuery = q.Encode()
	forged, err := http.Get(u.String())
	require.NoError(t, err)
	_ = forged.Body.Close()
	require.Equal(t, http.StatusForbidden, forged.StatusCode)
	return body
}

// waitQueuesDrained waits until no Asynq queue holds a pending, running,
// retrying or scheduled task, so that no delivery is still on its way.
func waitQueuesDrained(t *testing.T, admin *client.ClientWithResponses, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		q, err := admin.ListQueuesWithResponse(context.Background())
		if err != nil || q.JSON200 == nil {
			return false
		}
		for _, info := range q.JSON200.Items {
			if info.Pending+info.Running+info.Retrying+info.Scheduled > 0 {
				return false
			}
		}
		return true
	}, within, pollEvery, "the queues did not drain")
}

// ptr returns a pointer to v (the client's optional fields).
func ptr[T any](v T) *T { return &v }

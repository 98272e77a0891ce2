package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/services/api/client"
)

var ctx = context.Background()

// TestRoutesMatchDocument holds the registered routes and openapi.yaml's
// operations to each other, both ways.
func TestRoutesMatchDocument(t *testing.T) {
	t.Parallel()
	doc, _ := contract(t)
	srv, err := New(Options{Tasks: nonNilService(t), Auth: principals, Checker: nonNilChecker(), Log: nopLog(), OpenAPI: openapiDoc(t)})
	require.NoError(t, err)
	param := regexp.MustCompile(`:([a-z_]+)`)
	registered := map[string]bool{}
	for _, r := range srv.Routes() {
		if strings.HasPrefix(r.Method, "echo_") {
			continue
		}
		registered[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	for k := range registered {
		require.Truef(t, documented[k], "route %s is registered but not in openapi.yaml", k)
	}
	for k := range documented {
		require.Truef(t, registered[k], "operation %s is in openapi.yaml but not registered", k)
	}
}

func createBody(typ string, params map[string]any) client.CreateTaskRequest {
	req := client.CreateTaskRequest{Type: typ}
	if params != nil {
		req.Params = &params
	}
	return req
}

func TestCreateAndGet(t *testing.T) {
	t.Parallel()
	b := setup(t)
	op := b.client(t, tokOp)
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	body := client.CreateTaskRequest{
		Type: "webhook_callback", Params: &map[string]any{"url": "https://hooks.example.com/x", "secret": "s3cr3t-value"},
		Priority: ptr(client.Priority("low")), ScheduledFor: &at, TimeoutSeconds: ptr(30),
		RetryPolicy: &client.RetryPolicyInput{MaxRetries: ptr(5)}, CallbackUrl: ptr("https://cb.example.com/done"),
	}
	resp, err := op.CreateTaskWithResponse(ctx, nil, body)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode(), string(resp.Body))
	c := resp.JSON201
	require.Regexp(t, `^task_[0-9a-z]{26}$`, c.TaskId)
	require.Equal(t, client.Status("pending"), c.Status)
	require.Equal(t, client.Priority("low"), c.Priority)
	require.True(t, c.ScheduledFor.Equal(at))
	require.Equal(t, 2, c.EstimatedDuration, "the type's default before any run")
	require.Equal(t, "/api/v1/tasks/"+c.TaskId, resp.HTTPResponse.Header.Get("Location"))
	require.NotContains(t, string(resp.Body), "s3cr3t")

	got, err := op.GetTaskWithResponse(ctx, c.TaskId)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, got.StatusCode())
	task := got.JSON200
	require.Equal(t, "webhook_callback", task.Type)
	require.Equal(t, "key_op", task.CreatedBy)
	require.Equal(t, "***", task.Params["secret"], "secret params are redacted")
	require.Equal(t, "https://hooks.example.com/x", task.Params["url"])
	require.NotContains(t, string(got.Body), "s3cr3t")
	require.Equal(t, 5, task.MaxRetries)
	require.Equal(t, 5, task.RetryPolicy.MaxRetries)
	require.Equal(t, 60, task.RetryPolicy.RetryDelay, "fields left out take the type's default")
	require.Equal(t, 30, task.TimeoutSeconds)
	require.Equal(t, "https://cb.example.com/done", *task.CallbackUrl)
	require.True(t, task.CreatedAt.Equal(c.CreatedAt), "creation response and details agree")
	require.Empty(t, task.Messages)
	require.Nil(t, task.Error)

	// The task is in Asynq's scheduled set of its queue.
	info, err := b.inspector.GetTaskInfo("low", c.TaskId)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateScheduled, info.State)
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	op := b.client(t, tokOp)
	cases := []struct {
		name   string
		body   string
		ctype  string
		header map[string]string
		status int
		field  string
	}{
		{"malformed JSON", `{"type":`, "application/json", nil, 400, "body"},
		{"not an object", `["refresh_all_prices"]`, "application/json", nil, 400, "body"},
		{"null body", `null`, "application/json", nil, 400, "body"},
		{"trailing data", `{"type":"refresh_all_prices"} {}`, "application/json", nil, 400, "body"},
		{"form content type", `type=refresh_all_prices`, "application/x-www-form-urlencoded", nil, 415, ""},
		{"text content type", `{"type":"refresh_all_prices"}`, "text/plain", nil, 415, ""},
		{"missing type", `{}`, "application/json", nil, 422, "type"},
		{"unknown type", `{"type":"mine_bitcoin"}`, "application/json", nil, 422, "type"},
		{"type not a string", `{"type":7}`, "application/json", nil, 422, "type"},
		{"unknown field", `{"type":"refresh_all_prices","colour":"red"}`, "application/json", nil, 422, "colour"},
		{"missing required param", `{"type":"send_email","params":{"subject":"x"}}`, "application/json", nil, 422, "params.to"},
		{"unknown param", `{"type":"refresh_portfolio","params":{"portfolio_id":"p","nope":1}}`, "application/json", nil, 422, "params.nope"},
		{"param wrong type", `{"type":"refresh_portfolio","params":{"portfolio_id":5}}`, "application/json", nil, 422, "params.portfolio_id"},
		{"params not an object", `{"type":"refresh_all_prices","params":[1]}`, "application/json", nil, 422, "params"},
		{"bad priority", `{"type":"refresh_all_prices","priority":"urgent"}`, "application/json", nil, 422, "priority"},
		{"bad scheduled_for", `{"type":"refresh_all_prices","scheduled_for":"tomorrow"}`, "application/json", nil, 422, "scheduled_for"},
		{"scheduled too far", `{"type":"refresh_all_prices","scheduled_for":"2999-01-01T00:00:00Z"}`, "application/json", nil, 422, "scheduled_for"},
		{"bad timeout", `{"type":"refresh_all_prices","timeout_seconds":0}`, "application/json", nil, 422, "timeout_seconds"},
		{"fractional timeout", `{"type":"refresh_all_prices","timeout_seconds":1.5}`, "application/json", nil, 422, "timeout_seconds"},
		{"bad retry field", `{"type":"refresh_all_prices","retry_policy":{"max_retries":99}}`, "application/json", nil, 422, "retry_policy.max_retries"},
		{"unknown retry field", `{"type":"refresh_all_prices","retry_policy":{"tries":1}}`, "application/json", nil, 422, "retry_policy.tries"},
		{"bad callback", `{"type":"refresh_all_prices","callback_url":"file:///etc/passwd"}`, "application/json", nil, 422, "callback_url"},
		{"long idempotency key", `{"type":"refresh_all_prices","idempotency_key":"` + strings.Repeat("k", 256) + `"}`, "application/json", nil, 422, "idempotency_key"},
		{"key differs from header", `{"type":"refresh_all_prices","idempotency_key":"a"}`, "application/json", map[string]string{"Idempotency-Key": "b"}, 400, "idempotency_key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := op.CreateTaskWithBodyWithResponse(ctx, nil, tc.ctype, strings.NewReader(tc.body), func(_ context.Context, r *http.Request) error {
				for k, v := range tc.header {
					r.Header.Set(k, v)
				}
				return nil
			})
			require.NoError(t, err)
			require.Equal(t, tc.status, resp.StatusCode(), string(resp.Body))
			var p client.Problem
			require.NoError(t, json.Unmarshal(resp.Body, &p))
			require.Equal(t, tc.status, p.Status)
			if tc.field != "" {
				require.Contains(t, fields(&p), tc.field, string(resp.Body))
			}
		})
	}
	var n int64
	require.NoError(t, b.pg.DB.Model(&store.Task{}).Count(&n).Error)
	require.Zero(t, n, "no row for a refused request")
}

func TestCreateBodyLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	big := `{"type":"refresh_all_prices","params":{"symbols":["` + strings.Repeat("A", 1<<20) + `"]}}`
	op := b.client(t, tokOp)
	resp, err := op.CreateTaskWithBodyWithResponse(ctx, nil, "application/json", strings.NewReader(big))
	require.NoError(t, err)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode())

	// Without a Content-Length (chunked), the limit holds while reading.
	r := b.raw(t, http.MethodPost, "/api/v1/tasks", tokOp, struct{ *strings.Reader }{strings.NewReader(big)},
		map[string]string{"Content-Type": "application/json"})
	require.Equal(t, http.StatusRequestEntityTooLarge, r.StatusCode)
}

func TestCreateIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	op := b.client(t, tokOp)
	body := createBody("refresh_portfolio", map[string]any{"portfolio_id": "pf_1"})
	withKey := func(k string) client.RequestEditorFn {
		return func(_ context.Context, r *http.Request) error { r.Header.Set("Idempotency-Key", k); return nil }
	}

	// Twenty at once with the same key and body: one creates, all get its id.
	const n = 20
	codes := make([]int, n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := op.CreateTaskWithResponse(ctx, nil, body, withKey("key-1"))
			if err != nil {
				t.Error(err)
				return
			}
			codes[i] = resp.StatusCode()
			switch resp.StatusCode() {
			case http.StatusCreated:
				ids[i] = resp.JSON201.TaskId
			case http.StatusOK:
				ids[i] = resp.JSON200.TaskId
			}
		}()
	}
	wg.Wait()
	sort.Ints(codes)
	require.Equal(t, http.StatusOK, codes[0])
	require.Equal(t, http.StatusCreated, codes[n-1])
	require.Equal(t, http.StatusOK, codes[n-2], "exactly one 201")
	for i := range n {
		require.Equal(t, ids[0], ids[i])
	}

	// The field works as the header does, and a replay says so.
	body2 := body
	body2.IdempotencyKey = ptr("key-1")
	resp, err := op.CreateTaskWithResponse(ctx, nil, body2)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode())
	require.Equal(t, ids[0], resp.JSON200.TaskId)
	require.Equal(t, "true", resp.HTTPResponse.Header.Get("Idempotent-Replayed"))
	// Header and field both, equal: fine.
	resp, err = op.CreateTaskWithResponse(ctx, nil, body2, withKey("key-1"))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode())

	// Same key, other body: 409.
	other := createBody("refresh_portfolio", map[string]any{"portfolio_id": "pf_2"})
	resp, err = op.CreateTaskWithResponse(ctx, nil, other, withKey("key-1"))
	require.NoError(t, err)
	require.Equal(t, http.StatusConflict, resp.StatusCode())
	require.Contains(t, fields(resp.ApplicationproblemJSON409), "idempotency_key")

	// Keys are scoped to the caller: another operator gets a task of its own.
	resp, err = b.client(t, tokOp2).CreateTaskWithResponse(ctx, nil, body, withKey("key-1"))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode())
	require.NotEqual(t, ids[0], resp.JSON201.TaskId)

	var count int64
	require.NoError(t, b.pg.DB.Model(&store.Task{}).Count(&count).Error)
	require.EqualValues(t, 2, count)
}

func TestRolesAndOwnership(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin, op, op2, viewer := b.client(t, tokAdmin), b.client(t, tokOp), b.client(t, tokOp2), b.client(t, tokViewer)

	// Viewers may not create; operators may not create maintenance tasks.
	resp, err := viewer.CreateTaskWithResponse(ctx, nil, createBody("refresh_all_prices", nil))
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, resp.StatusCode())
	resp, err = op.CreateTaskWithResponse(ctx, nil, createBody("optimize_database", nil))
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, resp.StatusCode())
	resp, err = admin.CreateTaskWithResponse(ctx, nil, createBody("optimize_database", nil))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode(), string(resp.Body))
	adminTask := resp.JSON201.TaskId

	resp, err = op.CreateTaskWithResponse(ctx, nil, createBody("refresh_all_prices", nil))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode())
	mine := resp.JSON201.TaskId

	// A viewer reads its own tasks (created here directly, as a viewer cannot).
	vt := insertTask(t, b, "key_viewer", "completed", time.Now())

	// Another operator: 404 on every task route, absent from lists and stats.
	g, err := op2.GetTaskWithResponse(ctx, mine)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, g.StatusCode())
	d, err := op2.CancelTaskWithResponse(ctx, mine)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, d.StatusCode())
	l, err := op2.GetTaskLogsWithResponse(ctx, mine, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, l.StatusCode())
	r, err := op2.RetryTaskWithResponse(ctx, mine)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, r.StatusCode())
	list, err := op2.ListTasksWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, list.JSON200.Items)
	require.Zero(t, list.JSON200.Total)
	st, err := op2.GetStatsWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Zero(t, st.JSON200.Total.Completed)

	// The owner sees its task; the admin sees all three.
	list, err = op.ListTasksWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Len(t, list.JSON200.Items, 1)
	require.Equal(t, mine, list.JSON200.Items[0].TaskId)
	list, err = admin.ListTasksWithResponse(ctx, nil)
	require.NoError(t, err)
	require.EqualValues(t, 3, list.JSON200.Total)
	g, err = admin.GetTaskWithResponse(ctx, mine)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, g.StatusCode())
	g, err = op.GetTaskWithResponse(ctx, adminTask)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, g.StatusCode())

	// The viewer reads its own, but may neither cancel nor retry it.
	g, err = viewer.GetTaskWithResponse(ctx, vt)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, g.StatusCode())
	st, err = viewer.GetStatsWithResponse(ctx, nil)
	require.NoError(t, err)
	require.EqualValues(t, 1, st.JSON200.Total.Completed)
	d, err = viewer.CancelTaskWithResponse(ctx, vt)
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, d.StatusCode())
	r, err = viewer.RetryTaskWithResponse(ctx, vt)
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, r.StatusCode())
	g, err = viewer.GetTaskWithResponse(ctx, mine)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, g.StatusCode())
	// Malformed ids are 404 too.
	g, err = admin.GetTaskWithResponse(ctx, "nope")
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, g.StatusCode())
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		name, header string
	}{
		{"none", ""}, {"bad token", "Bearer wrong"}, {"basic scheme", "Basic dXNlcjpwYXNz"}, {"empty bearer", "Bearer "},
	} {
		for _, path := range []string{"/api/v1/tasks", "/api/v1/task-types", "/api/v1/openapi.yaml", "/metrics", "/api/v1/queues", "/api/v1/stats"} {
			h := map[string]string{}
			if tc.header != "" {
				h["Authorization"] = tc.header
			}
			r := b.raw(t, http.MethodGet, path, "", nil, h)
			require.Equal(t, http.StatusUnauthorized, r.StatusCode, "%s %s", tc.name, path)
			require.Equal(t, "application/problem+json", r.Header.Get("Content-Type"))
			require.NotEmpty(t, r.Header.Get("WWW-Authenticate"))
		}
	}
	// Probes are open.
	anon := b.client(t, "")
	hz, err := anon.HealthzWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, hz.StatusCode())
	rz, err := anon.ReadyzWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, rz.StatusCode(), string(rz.Body))

	// /metrics is admin-only.
	m, err := b.client(t, tokOp).MetricsWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, m.StatusCode())
	m, err = b.client(t, tokAdmin).MetricsWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, m.StatusCode())
	require.Contains(t, string(m.Body), "taskforge_api_requests_total")
	require.Contains(t, string(m.Body), "taskforge_dependency_up")
}

func TestErrorsAreProblems(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Unknown route and wrong method.
	r := b.raw(t, http.MethodGet, "/api/v1/nothing", tokAdmin, nil, nil)
	require.Equal(t, http.StatusNotFound, r.StatusCode)
	r = b.raw(t, http.MethodPut, "/api/v1/tasks", tokAdmin, nil, nil)
	require.Equal(t, http.StatusMethodNotAllowed, r.StatusCode)
	var p client.Problem
	require.NoError(t, json.NewDecoder(r.Body).Decode(&p))
	require.Equal(t, http.StatusMethodNotAllowed, p.Status)
	require.Equal(t, "/api/v1/tasks", *p.Instance)

	// A panic is a 500 without details, with the request id.
	b.srv.echo.GET("/test/panic", func(echo.Context) error { panic("secret detail") })
	// (The route is not in the document, so the request skips the validator.)
	req, err := http.NewRequest(http.MethodGet, b.http.URL+"/test/panic", nil)
	require.NoError(t, err)
	req.Header.Set("X-Request-ID", "req-123")
	r, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer r.Body.Close()
	require.Equal(t, "application/problem+json", r.Header.Get("Content-Type"))
	require.Equal(t, http.StatusInternalServerError, r.StatusCode)
	require.Equal(t, "req-123", r.Header.Get("X-Request-ID"))
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(r.Body)
	require.NotContains(t, buf.String(), "secret detail")
	require.NotContains(t, buf.String(), "goroutine")
	require.Contains(t, buf.String(), `"request_id":"req-123"`)

	// A request id is made when none (or a bad one) is sent.
	r = b.raw(t, http.MethodGet, "/healthz", "", nil, map[string]string{"X-Request-ID": "bad id with spaces"})
	require.Regexp(t, `^[0-9a-f]{24}$`, r.Header.Get("X-Request-ID"))
}

// insertTask writes a task row directly, as a worker would leave it.
func insertTask(t *testing.T, b testBundle, owner, status string, created time.Time) string {
	t.Helper()
	return insertTaskWith(t, b, store.Task{CreatedBy: owner, Status: status, CreatedAt: created})
}

var idSeq struct {
	sync.Mutex
	n int
}

func insertTaskWith(t *testing.T, b testBundle, row store.Task) string {
	t.Helper()
	idSeq.Lock()
	idSeq.n++
	n := idSeq.n
	idSeq.Unlock()
	if row.ID == "" {
		row.ID = fmt.Sprintf("task_test%022d", n)
	}
	if row.Type == "" {
		row.Type = "refresh_all_prices"
	}
	if row.Priority == "" {
		row.Priority = "normal"
	}
	if row.CreatedAt.IsZero() {
		row.CreatedAt = time.Now()
	}
	row.CreatedAt = row.CreatedAt.UTC().Truncate(time.Microsecond)
	row.UpdatedAt = row.CreatedAt
	if row.ScheduledFor.IsZero() {
		row.ScheduledFor = row.CreatedAt
	}
	row.Params, row.Messages, row.RetryPolicy = store.JSON(`{}`), store.JSON(`[]`), store.JSON(`{"max_retries":3,"retry_delay":60,"exponential_backoff":true,"max_retry_delay":3600}`)
	row.MaxRetries, row.TimeoutSeconds, row.EstimatedDuration = 3, 600, 60
	if row.Status == "completed" || row.Status == "failed" || row.Status == "cancelled" {
		if row.CompletedAt == nil {
			done := time.Now().UTC()
			row.CompletedAt = &done
		}
	}
	require.NoError(t, b.pg.DB.Create(&row).Error)
	return row.ID
}

// TestRequestLog: one line per request with its id, route and status, never
// the Authorization header, the query or the body; a panic is logged as an
// error with the request id.
func TestRequestLog(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.InfoLevel)
	b := setupWith(t, setupOptions{log: zap.New(core)})
	body := `{"type":"webhook_callback","params":{"url":"https://h.example.com","secret":"body-secret-123"}}`
	r := b.raw(t, http.MethodPost, "/api/v1/tasks?token=query-secret-456", tokOp, strings.NewReader(body),
		map[string]string{"Content-Type": "application/json", "X-Request-ID": "req-log-1"})
	require.Equal(t, http.StatusCreated, r.StatusCode)
	b.srv.echo.GET("/test/panic", func(echo.Context) error { panic("boom") })
	req, err := http.NewRequest(http.MethodGet, b.http.URL+"/test/panic", nil)
	require.NoError(t, err)
	req.Header.Set("X-Request-ID", "req-log-2")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()

	var all strings.Builder
	for _, e := range logs.All() {
		fmt.Fprintf(&all, "%s %v\n", e.Message, e.ContextMap())
	}
	text := all.String()
	for _, secret := range []string{tokOp, "body-secret-123", "query-secret-456"} {
		require.NotContains(t, text, secret)
	}
	lines := logs.FilterMessage("request").FilterField(zap.String("request_id", "req-log-1")).All()
	require.Len(t, lines, 1)
	fields := lines[0].ContextMap()
	require.Equal(t, "/api/v1/tasks", fields["route"])
	require.EqualValues(t, http.StatusCreated, fields["status"])
	require.Equal(t, "key_op", fields["principal"])
	failed := logs.FilterMessage("request failed").FilterField(zap.String("request_id", "req-log-2")).All()
	require.Len(t, failed, 1)
	require.Equal(t, zap.ErrorLevel, failed[0].Level)
}

package schedules_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/problem"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/api/internal/schedules"
)

type auditLog struct {
	mu      sync.Mutex
	entries []audit.Entry
}

func (a *auditLog) Record(_ context.Context, e audit.Entry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, e)
	return nil
}

type testBundle struct {
	e     *echo.Echo
	pg    testenv.Postgres
	svc   *taskservice.Service
	audit *auditLog
}

// setup serves the handlers behind a test authenticator: the bearer token
// is the role.
func setup(t *testing.T) testBundle {
	t.Helper()
	pg := testenv.NewPostgres(t)
	st, err := schedule.NewStore(pg.DB)
	require.NoError(t, err)
	log := &auditLog{}
	h, err := schedules.New(st, log, zap.NewNop())
	require.NoError(t, err)
	e := echo.New()
	// A stand-in for the API's error handler: problems are written as the API
	// writes them, other errors reduced to their status.
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		var pe *problem.Error
		if errors.As(err, &pe) {
			problem.Write(c.Response(), c.Request(), pe)
			return
		}
		if errors.Is(err, schedule.ErrUnavailable) {
			_ = c.NoContent(http.StatusServiceUnavailable)
			return
		}
		var he *echo.HTTPError
		if errors.As(err, &he) {
			_ = c.NoContent(he.Code)
			return
		}
		_ = c.NoContent(http.StatusInternalServerError)
	}
	authed := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			role := auth.Role(strings.TrimPrefix(c.Request().Header.Get("Authorization"), "Bearer "))
			if !role.Valid() {
				return echo.NewHTTPError(http.StatusUnauthorized)
			}
			ctx := auth.WithPrincipal(c.Request().Context(), auth.Principal{ID: "key_" + string(role), Role: role})
			c.SetRequest(c.Request().WithContext(ctx))
			return next(c)
		}
	}
	h.Register(e.Group("/api/v1"), authed)

	rd := testenv.NewRedis(t)
	client := asynq.NewClient(rd.Opt())
	insp := asynq.NewInspector(rd.Opt())
	t.Cleanup(func() { _ = client.Close(); _ = insp.Close() })
	svc, err := taskservice.New(pg.DB, client, insp, zap.NewNop(), taskservice.Options{})
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	return testBundle{e: e, pg: pg, svc: svc, audit: log}
}

type response struct {
	code   int
	header http.Header
	body   map[string]any
}

func (b testBundle) do(t *testing.T, role, method, path, body string) response {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+role)
	rec := httptest.NewRecorder()
	b.e.ServeHTTP(rec, req)
	validate(t, req, rec)
	r := response{code: rec.Code, header: rec.Header()}
	if rec.Body.Len() > 0 {
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &r.body), rec.Body.String())
	}
	return r
}

func fieldOf(t *testing.T, r response) string {
	t.Helper()
	errs, ok := r.body["errors"].([]any)
	require.True(t, ok, "problem lists errors: %v", r.body)
	require.NotEmpty(t, errs)
	return errs[0].(map[string]any)["field"].(string)
}

const valid = `{"name":"nightly","cron":"0 9 * * *","timezone":"America/New_York","type":"refresh_portfolio","params":{"all":true}}`

func TestCreateReadUpdateDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)

	r := b.do(t, "admin", http.MethodPost, "/api/v1/schedules", valid)
	require.Equal(t, http.StatusCreated, r.code, r.body)
	id := r.body["id"].(string)
	require.Equal(t, "/api/v1/schedules/"+id, r.header.Get("Location"))
	require.Equal(t, "America/New_York", r.body["timezone"])
	require.Equal(t, "normal", r.body["priority"], "the type's default")
	require.EqualValues(t, 600, r.body["timeout_seconds"])
	require.Equal(t, true, r.body["enabled"])
	require.Nil(t, r.body["last_run_at"])
	next, err := time.Parse(time.RFC3339, r.body["next_run_at"].(string))
	require.NoError(t, err)
	ny, _ := time.LoadLocation("America/New_York")
	require.Equal(t, 9, next.In(ny).Hour(), "next run at 09:00 New York time")
	require.True(t, next.After(time.Now()))

	// Everyone may read.
	for _, role := range []string{"viewer", "operator", "admin"} {
		require.Equal(t, http.StatusOK, b.do(t, role, http.MethodGet, "/api/v1/schedules/"+id, "").code, role)
		list := b.do(t, role, http.MethodGet, "/api/v1/schedules", "")
		require.Equal(t, http.StatusOK, list.code)
		require.Len(t, list.body["items"], 1)
	}

	// Disabled: no next run.
	r = b.do(t, "admin", http.MethodPatch, "/api/v1/schedules/"+id, `{"enabled":false}`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Equal(t, false, r.body["enabled"])
	require.Nil(t, r.body["next_run_at"])
	require.Equal(t, "0 9 * * *", r.body["cron"], "PATCH keeps the other fields")

	// PUT replaces: absent optional fields go back to defaults.
	r = b.do(t, "admin", http.MethodPut, "/api/v1/schedules/"+id,
		`{"name":"nightly","cron":"@hourly","type":"refresh_all_prices","priority":"high","timeout_seconds":30}`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Equal(t, "UTC", r.body["timezone"])
	require.Equal(t, true, r.body["enabled"])
	require.Equal(t, "high", r.body["priority"])
	require.EqualValues(t, 30, r.body["timeout_seconds"])
	require.JSONEq(t, `{}`, mustJSON(t, r.body["params"]))

	// A partial retry policy keeps the type's other defaults.
	r = b.do(t, "admin", http.MethodPatch, "/api/v1/schedules/"+id, `{"retry_policy":{"max_retries":1}}`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.JSONEq(t, `{"max_retries":1,"retry_delay":60,"exponential_backoff":true,"max_retry_delay":3600}`, mustJSON(t, r.body["retry_policy"]))

	require.Equal(t, http.StatusNoContent, b.do(t, "admin", http.MethodDelete, "/api/v1/schedules/"+id, "").code)
	require.Equal(t, http.StatusNotFound, b.do(t, "admin", http.MethodGet, "/api/v1/schedules/"+id, "").code)
	require.Equal(t, http.StatusNotFound, b.do(t, "admin", http.MethodDelete, "/api/v1/schedules/"+id, "").code)

	var actions []string
	for _, e := range b.audit.entries {
		actions = append(actions, e.Action+"/"+e.Outcome)
	}
	require.Equal(t, []string{"schedule.create/success", "schedule.update/success", "schedule.update/success",
		"schedule.update/success", "schedule.delete/success", "schedule.delete/failure"}, actions)
}

func TestOnlyAdminsChangeSchedules(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.do(t, "admin", http.MethodPost, "/api/v1/schedules", valid).body["id"].(string)
	for _, role := range []string{"viewer", "operator"} {
		r := b.do(t, role, http.MethodPost, "/api/v1/schedules", strings.Replace(valid, "nightly", "other", 1))
		require.Equal(t, http.StatusForbidden, r.code)
		require.Equal(t, "urn:taskforge:problem:forbidden", r.body["type"])
		require.Equal(t, http.StatusForbidden, b.do(t, role, http.MethodPatch, "/api/v1/schedules/"+id, `{"enabled":false}`).code)
		require.Equal(t, http.StatusForbidden, b.do(t, role, http.MethodDelete, "/api/v1/schedules/"+id, "").code)
	}
	require.Equal(t, http.StatusUnauthorized, b.do(t, "nobody", http.MethodGet, "/api/v1/schedules", "").code)
	require.Equal(t, "denied", b.audit.entries[len(b.audit.entries)-1].Outcome)
}

func TestValidationErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, http.StatusCreated, b.do(t, "admin", http.MethodPost, "/api/v1/schedules", valid).code)
	cases := []struct {
		name, body string
		code       int
		field      string
	}{
		{"bad cron", `{"name":"a","cron":"99 * * * *","type":"refresh_all_prices"}`, 422, "cron"},
		{"six fields", `{"name":"a","cron":"0 0 9 * * *","type":"refresh_all_prices"}`, 422, "cron"},
		{"bad timezone", `{"name":"a","cron":"0 9 * * *","timezone":"Atlantis/Capital","type":"refresh_all_prices"}`, 422, "timezone"},
		{"missing cron", `{"name":"a","type":"refresh_all_prices"}`, 422, "cron"},
		{"missing name", `{"cron":"0 9 * * *","type":"refresh_all_prices"}`, 422, "name"},
		{"unknown type", `{"name":"a","cron":"0 9 * * *","type":"mine_bitcoin"}`, 422, "type"},
		{"internal type", `{"name":"a","cron":"0 9 * * *","type":"taskforge:schedule_fire"}`, 422, "type"},
		{"bad params", `{"name":"a","cron":"0 9 * * *","type":"refresh_portfolio","params":{}}`, 422, "params.portfolio_id"},
		{"unknown param", `{"name":"a","cron":"0 9 * * *","type":"refresh_all_prices","params":{"nope":1}}`, 422, "params.nope"},
		{"params not an object", `{"name":"a","cron":"0 9 * * *","type":"refresh_all_prices","params":[1]}`, 422, "params"},
		{"bad priority", `{"name":"a","cron":"0 9 * * *","type":"refresh_all_prices","priority":"urgent"}`, 422, "priority"},
		{"bad timeout", `{"name":"a","cron":"0 9 * * *","type":"refresh_all_prices","timeout_seconds":0}`, 422, "timeout_seconds"},
		{"bad retry", `{"name":"a","cron":"0 9 * * *","type":"refresh_all_prices","retry_policy":{"max_retries":99,"retry_delay":1,"max_retry_delay":1}}`, 422, "retry_policy.max_retries"},
		{"unknown retry field", `{"name":"a","cron":"0 9 * * *","type":"refresh_all_prices","retry_policy":{"tries":2}}`, 422, "retry_policy.tries"},
		{"unknown field", `{"name":"a","cron":"0 9 * * *","type":"refresh_all_prices","owner":"me"}`, 422, "owner"},
		{"wrong kind", `{"name":"a","cron":"0 9 * * *","type":"refresh_all_prices","enabled":"yes"}`, 422, "enabled"},
		{"name taken", valid, 409, "name"},
		{"malformed", `{"name":`, 400, "body"},
		{"not an object", `[]`, 400, "body"},
	}
	for _, tc := range cases {
		r := b.do(t, "admin", http.MethodPost, "/api/v1/schedules", tc.body)
		require.Equal(t, tc.code, r.code, "%s: %v", tc.name, r.body)
		require.Equal(t, tc.field, fieldOf(t, r), tc.name)
		require.EqualValues(t, tc.code, r.body["status"], tc.name)
	}
	// An invalid edit names the field too, and changes nothing.
	id := b.do(t, "admin", http.MethodGet, "/api/v1/schedules", "").body["items"].([]any)[0].(map[string]any)["id"].(string)
	r := b.do(t, "admin", http.MethodPatch, "/api/v1/schedules/"+id, `{"timezone":"Mars/Base"}`)
	require.Equal(t, 422, r.code)
	require.Equal(t, "timezone", fieldOf(t, r))
	require.Equal(t, "America/New_York", b.do(t, "admin", http.MethodGet, "/api/v1/schedules/"+id, "").body["timezone"])
	// Wrong content type, bad ids and bad query parameters.
	req := httptest.NewRequest(http.MethodPost, "/api/v1/schedules", strings.NewReader(valid))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer admin")
	rec := httptest.NewRecorder()
	b.e.ServeHTTP(rec, req)
	require.Equal(t, http.StatusUnsupportedMediaType, rec.Code)
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	require.Equal(t, http.StatusNotFound, b.do(t, "admin", http.MethodGet, "/api/v1/schedules/'%3B%20DROP%20TABLE%20x", "").code)
	require.Equal(t, "limit", fieldOf(t, b.do(t, "admin", http.MethodGet, "/api/v1/schedules?limit=0", "")))
	require.Equal(t, "cursor", fieldOf(t, b.do(t, "admin", http.MethodGet, "/api/v1/schedules?cursor=%25%25", "")))
}

func TestSecretParamsAreRedacted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, "admin", http.MethodPost, "/api/v1/schedules",
		`{"name":"hook","cron":"@daily","type":"webhook_callback","params":{"url":"https://example.com/h","secret":"s3cr3t"}}`)
	require.Equal(t, http.StatusCreated, r.code, r.body)
	require.Equal(t, schedule.Redacted, r.body["params"].(map[string]any)["secret"])
	require.Equal(t, "https://example.com/h", r.body["params"].(map[string]any)["url"])
	list := b.do(t, "viewer", http.MethodGet, "/api/v1/schedules", "")
	require.NotContains(t, mustJSON(t, list.body), "s3cr3t")
}

func TestRunsArePaged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.do(t, "admin", http.MethodPost, "/api/v1/schedules", valid).body["id"].(string)
	base := time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)
	var want []string
	for i := range 5 {
		ft := base.Add(time.Duration(i) * 24 * time.Hour)
		c, err := b.svc.Create(context.Background(), taskservice.CreateRequest{
			Type: "refresh_portfolio", Params: json.RawMessage(`{"all":true}`), ScheduleID: id, FireTime: &ft, CreatedBy: "schedule:" + id,
		})
		require.NoError(t, err)
		want = append([]string{c.Task.ID}, want...) // newest fire first
	}
	var got []string
	path := "/api/v1/schedules/" + id + "/runs?limit=2"
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5)
		r := b.do(t, "viewer", http.MethodGet, path, "")
		require.Equal(t, http.StatusOK, r.code, r.body)
		for _, it := range r.body["items"].([]any) {
			m := it.(map[string]any)
			require.Equal(t, "pending", m["status"])
			got = append(got, m["task_id"].(string))
		}
		next, ok := r.body["next_cursor"].(string)
		if !ok {
			break
		}
		path = "/api/v1/schedules/" + id + "/runs?limit=2&cursor=" + next
	}
	require.Equal(t, want, got)
	require.Equal(t, http.StatusNotFound, b.do(t, "viewer", http.MethodGet, "/api/v1/schedules/sch_01hzzzzzzzzzzzzzzzzzzzzzzz/runs", "").code)
	var n int64
	require.NoError(t, b.pg.DB.Model(&store.Task{}).Where("schedule_id = ?", id).Count(&n).Error)
	require.EqualValues(t, 5, n)
}

var (
	docOnce   sync.Once
	docRouter routers.Router
	docModel  *openapi3.T
	docErr    error
)

// contract loads and validates the API's openapi.yaml once.
func contract(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	docOnce.Do(func() {
		var doc *openapi3.T
		doc, docErr = openapi3.NewLoader().LoadFromFile("../../openapi.yaml")
		if docErr != nil {
			return
		}
		if docErr = doc.Validate(context.Background()); docErr != nil {
			return
		}
		doc.Servers = nil
		docModel = doc
		docRouter, docErr = gorillamux.NewRouter(doc)
	})
	require.NoError(t, docErr, "openapi.yaml")
	return docModel, docRouter
}

// validate holds a response to openapi.yaml: declared status, content type
// and body schema. 401s of the test authenticator are not the API's.
func validate(t *testing.T, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code == http.StatusUnauthorized {
		return
	}
	_, router := contract(t)
	route, params, err := router.FindRoute(req)
	if err != nil {
		require.Equal(t, http.StatusNotFound, rec.Code, "%s %s is not in openapi.yaml", req.Method, req.URL.Path)
		return
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, ExcludeRequestBody: true, MultiError: true}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts},
		Status:                 rec.Code, Header: rec.Header(), Body: io.NopCloser(bytes.NewReader(rec.Body.Bytes())), Options: opts,
	}
	require.NoError(t, openapi3filter.ValidateResponse(req.Context(), in), "%s %s answered %d: %s", req.Method, req.URL.Path, rec.Code, rec.Body.String())
}

// TestRoutesMatchOpenAPI: every schedules operation in openapi.yaml is
// registered, and every registered route is documented.
func TestRoutesMatchOpenAPI(t *testing.T) {
	t.Parallel()
	doc, _ := contract(t)
	e := echo.New()
	var h *schedules.Handlers // the nil handlers register the same routes
	h.Register(e.Group("/api/v1"), func(next echo.HandlerFunc) echo.HandlerFunc { return next })
	param := regexp.MustCompile(`:([a-z_]+)`)
	registered := map[string]bool{}
	for _, r := range e.Routes() {
		if strings.HasPrefix(r.Path, "/api/v1/schedules") {
			registered[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
		}
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		if strings.HasPrefix(path, "/api/v1/schedules") {
			for method := range item.Operations() {
				documented[method+" "+path] = true
			}
		}
	}
	require.Len(t, documented, 7)
	require.Equal(t, documented, registered)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

// scheduleTokens are the callers of the schedule tests by role; "nobody"
// sends a token no one holds.
var scheduleTokens = map[string]string{"admin": tokAdmin, "operator": tokOp, "viewer": tokViewer, "nobody": "tok-nobody"}

type scheduleResponse struct {
	code   int
	header http.Header
	body   map[string]any
}

// doSchedule sends a request as role to the API (validated against
// openapi.yaml) and decodes its JSON body.
func (b testBundle) doSchedule(t *testing.T, role, method, path, body string) scheduleResponse {
	t.Helper()
	var header map[string]string
	if body != "" {
		header = map[string]string{"Content-Type": "application/json"}
	}
	resp := b.raw(t, method, path, scheduleTokens[role], strings.NewReader(body), header)
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := scheduleResponse{code: resp.StatusCode, header: resp.Header}
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &r.body), string(raw))
	}
	return r
}

// scheduleAudit lists the audit rows of schedules, oldest first.
func (b testBundle) scheduleAudit(t *testing.T) []store.AuditEntry {
	t.Helper()
	page, err := b.audit.List(context.Background(), audit.Query{Limit: audit.MaxLimit})
	require.NoError(t, err)
	var out []store.AuditEntry
	for _, e := range page.Items {
		if e.ResourceType == audit.ResourceSchedule {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func problemField(t *testing.T, r scheduleResponse) string {
	t.Helper()
	errs, ok := r.body["errors"].([]any)
	require.True(t, ok, "problem lists errors: %v", r.body)
	require.NotEmpty(t, errs)
	return errs[0].(map[string]any)["field"].(string)
}

func scheduleJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

const validSchedule = `{"name":"nightly","cron":"0 9 * * *","timezone":"America/New_York","type":"refresh_portfolio","params":{"all":true}}`

func TestScheduleCreateReadUpdateDelete(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})

	r := b.doSchedule(t, "admin", http.MethodPost, "/api/v1/schedules", validSchedule)
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
		require.Equal(t, http.StatusOK, b.doSchedule(t, role, http.MethodGet, "/api/v1/schedules/"+id, "").code, role)
		list := b.doSchedule(t, role, http.MethodGet, "/api/v1/schedules", "")
		require.Equal(t, http.StatusOK, list.code)
		require.Len(t, list.body["items"], 1)
	}

	// Disabled: no next run.
	r = b.doSchedule(t, "admin", http.MethodPatch, "/api/v1/schedules/"+id, `{"enabled":false}`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Equal(t, false, r.body["enabled"])
	require.Nil(t, r.body["next_run_at"])
	require.Equal(t, "0 9 * * *", r.body["cron"], "PATCH keeps the other fields")

	// PUT replaces: absent optional fields go back to defaults.
	r = b.doSchedule(t, "admin", http.MethodPut, "/api/v1/schedules/"+id,
		`{"name":"nightly","cron":"@hourly","type":"refresh_all_prices","priority":"high","timeout_seconds":30}`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Equal(t, "UTC", r.body["timezone"])
	require.Equal(t, true, r.body["enabled"])
	require.Equal(t, "high", r.body["priority"])
	require.EqualValues(t, 30, r.body["timeout_seconds"])
	require.JSONEq(t, `{}`, scheduleJSON(t, r.body["params"]))

	// A partial retry policy keeps the type's other defaults.
	r = b.doSchedule(t, "admin", http.MethodPatch, "/api/v1/schedules/"+id, `{"retry_policy":{"max_retries":1}}`)
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.JSONEq(t, `{"max_retries":1,"retry_delay":60,"exponential_backoff":true,"max_retry_delay":3600}`, scheduleJSON(t, r.body["retry_policy"]))

	require.Equal(t, http.StatusNoContent, b.doSchedule(t, "admin", http.MethodDelete, "/api/v1/schedules/"+id, "").code)
	require.Equal(t, http.StatusNotFound, b.doSchedule(t, "admin", http.MethodGet, "/api/v1/schedules/"+id, "").code)
	require.Equal(t, http.StatusNotFound, b.doSchedule(t, "admin", http.MethodDelete, "/api/v1/schedules/"+id, "").code)

	var actions []string
	for _, e := range b.scheduleAudit(t) {
		actions = append(actions, e.Action+"/"+e.Outcome)
	}
	require.Equal(t, []string{"schedule.create/success", "schedule.update/success", "schedule.update/success",
		"schedule.update/success", "schedule.delete/success", "schedule.delete/failure"}, actions)
}

func TestOnlyAdminsChangeSchedules(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	id := b.doSchedule(t, "admin", http.MethodPost, "/api/v1/schedules", validSchedule).body["id"].(string)
	for _, role := range []string{"viewer", "operator"} {
		r := b.doSchedule(t, role, http.MethodPost, "/api/v1/schedules", strings.Replace(validSchedule, "nightly", "other", 1))
		require.Equal(t, http.StatusForbidden, r.code)
		require.Equal(t, "urn:taskforge:problem:forbidden", r.body["type"])
		require.Equal(t, http.StatusForbidden, b.doSchedule(t, role, http.MethodPatch, "/api/v1/schedules/"+id, `{"enabled":false}`).code)
		require.Equal(t, http.StatusForbidden, b.doSchedule(t, role, http.MethodDelete, "/api/v1/schedules/"+id, "").code)
	}
	require.Equal(t, http.StatusUnauthorized, b.doSchedule(t, "nobody", http.MethodGet, "/api/v1/schedules", "").code)
	entries := b.scheduleAudit(t)
	require.Equal(t, "denied", entries[len(entries)-1].Outcome)
}

func TestScheduleValidationErrors(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	require.Equal(t, http.StatusCreated, b.doSchedule(t, "admin", http.MethodPost, "/api/v1/schedules", validSchedule).code)
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
		{"name taken", validSchedule, 409, "name"},
		{"malformed", `{"name":`, 400, "body"},
		{"not an object", `[]`, 400, "body"},
	}
	for _, tc := range cases {
		r := b.doSchedule(t, "admin", http.MethodPost, "/api/v1/schedules", tc.body)
		require.Equal(t, tc.code, r.code, "%s: %v", tc.name, r.body)
		require.Equal(t, tc.field, problemField(t, r), tc.name)
		require.EqualValues(t, tc.code, r.body["status"], tc.name)
	}
	// An invalid edit names the field too, and changes nothing.
	id := b.doSchedule(t, "admin", http.MethodGet, "/api/v1/schedules", "").body["items"].([]any)[0].(map[string]any)["id"].(string)
	r := b.doSchedule(t, "admin", http.MethodPatch, "/api/v1/schedules/"+id, `{"timezone":"Mars/Base"}`)
	require.Equal(t, 422, r.code)
	require.Equal(t, "timezone", problemField(t, r))
	require.Equal(t, "America/New_York", b.doSchedule(t, "admin", http.MethodGet, "/api/v1/schedules/"+id, "").body["timezone"])
	// Wrong content type, bad ids and bad query parameters.
	resp := b.raw(t, http.MethodPost, "/api/v1/schedules", tokAdmin, strings.NewReader(validSchedule),
		map[string]string{"Content-Type": "text/plain"})
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	require.Equal(t, http.StatusNotFound, b.doSchedule(t, "admin", http.MethodGet, "/api/v1/schedules/'%3B%20DROP%20TABLE%20x", "").code)
	require.Equal(t, "limit", problemField(t, b.doSchedule(t, "admin", http.MethodGet, "/api/v1/schedules?limit=0", "")))
	require.Equal(t, "cursor", problemField(t, b.doSchedule(t, "admin", http.MethodGet, "/api/v1/schedules?cursor=%25%25", "")))
}

func TestScheduleSecretParamsAreRedacted(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	r := b.doSchedule(t, "admin", http.MethodPost, "/api/v1/schedules",
		`{"name":"hook","cron":"@daily","type":"webhook_callback","params":{"url":"https://example.com/h","secret":"s3cr3t"}}`)
	require.Equal(t, http.StatusCreated, r.code, r.body)
	require.Equal(t, schedule.Redacted, r.body["params"].(map[string]any)["secret"])
	require.Equal(t, "https://example.com/h", r.body["params"].(map[string]any)["url"])
	list := b.doSchedule(t, "viewer", http.MethodGet, "/api/v1/schedules", "")
	require.NotContains(t, scheduleJSON(t, list.body), "s3cr3t")
	// The view sent back (a form filled from it) would store the mask as the
	// secret: refused, naming the field.
	back := b.doSchedule(t, "admin", http.MethodPut, "/api/v1/schedules/"+r.body["id"].(string),
		`{"name":"hook","cron":"@hourly","type":"webhook_callback","params":{"url":"https://example.com/h","secret":"***"}}`)
	require.Equal(t, http.StatusUnprocessableEntity, back.code, back.body)
	require.Equal(t, "params.secret", problemField(t, back))
}

func TestScheduleRunsArePaged(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	id := b.doSchedule(t, "admin", http.MethodPost, "/api/v1/schedules", validSchedule).body["id"].(string)
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
		r := b.doSchedule(t, "viewer", http.MethodGet, path, "")
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
	require.Equal(t, http.StatusNotFound, b.doSchedule(t, "viewer", http.MethodGet, "/api/v1/schedules/sch_01hzzzzzzzzzzzzzzzzzzzzzzz/runs", "").code)
	var n int64
	require.NoError(t, b.pg.DB.Model(&store.Task{}).Where("schedule_id = ?", id).Count(&n).Error)
	require.EqualValues(t, 5, n)
}

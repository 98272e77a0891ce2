package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/ratelimit"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/trigger"
)

// newTrigger makes a webhook trigger owned by owner (for the matrix).
func newTrigger(t *testing.T, b testBundle, owner string) string {
	t.Helper()
	name, kind := "matrix-"+newUnique(), trigger.KindWebhook
	tr, err := b.triggers.Store().Create(ctx, trigger.Input{Name: &name, Kind: &kind,
		Task: &trigger.Template{Type: "refresh_all_prices"}}, auth.Principal{ID: owner, Role: auth.Operator})
	require.NoError(t, err)
	return tr.ID
}

// webhookTrigger is a webhook trigger made through the API, with its secret.
type webhookTrigger struct {
	ID     string
	Secret []byte
}

// createWebhookTrigger creates a webhook trigger as token whose task maps
// refresh_portfolio's portfolio_id from the body's /portfolio.
func createWebhookTrigger(t *testing.T, b testBundle, token string) webhookTrigger {
	t.Helper()
	code, body, _ := b.call(t, http.MethodPost, "/api/v1/triggers", token, `{"name":"hook-`+newUnique()+`","kind":"webhook",
		"task":{"type":"refresh_portfolio","param_map":{"portfolio_id":"/body/portfolio"}}}`)
	require.Equal(t, http.StatusCreated, code, body)
	var tr trigger.Trigger
	require.NoError(t, json.Unmarshal([]byte(body), &tr))
	require.Equal(t, "/api/v1/hooks/"+tr.ID, tr.HookURL)
	require.True(t, strings.HasPrefix(tr.Secret, "whsec_"), "the secret is shown at creation")
	key, err := notify.ParseSecret(tr.Secret)
	require.NoError(t, err)
	return webhookTrigger{ID: tr.ID, Secret: key}
}

// deliver POSTs body to a hook signed with secret (nil: unsigned) at at.
func (b testBundle) deliver(t *testing.T, id, wid string, body []byte, at time.Time, contentType string, secrets ...[]byte) (int, string) {
	t.Helper()
	h := map[string]string{"Content-Type": contentType, notify.HeaderWebhookID: wid,
		notify.HeaderWebhookTimestamp: strconv.FormatInt(at.Unix(), 10)}
	if len(secrets) > 0 {
		h[notify.HeaderWebhookSignature] = notify.SignWebhook(wid, at, body, secrets...)
	}
	resp := b.raw(t, http.MethodPost, "/api/v1/hooks/"+id, "", bytes.NewReader(body), h)
	var out bytes.Buffer
	_, _ = out.ReadFrom(resp.Body)
	return resp.StatusCode, out.String()
}

func triggerTasks(t *testing.T, db *gorm.DB, id string) []store.Task {
	t.Helper()
	var rows []store.Task
	require.NoError(t, db.Where("trigger_id = ?", id).Order("id").Find(&rows).Error)
	return rows
}

func taskIDOf(t *testing.T, body string) string {
	t.Helper()
	var v struct {
		TaskID string `json:"task_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &v), body)
	require.NotEmpty(t, v.TaskID, body)
	return v.TaskID
}

// TestTriggerOwnership: viewers manage no trigger; an operator sees, changes
// and deletes only its own (another's is 404, and absent from its list);
// admins see every one. Every change is audited.
func TestTriggerOwnership(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	code, body, _ := b.call(t, http.MethodPost, "/api/v1/triggers", tokViewer, `{"name":"v","kind":"webhook","task":{"type":"refresh_all_prices"}}`)
	require.Equal(t, http.StatusForbidden, code, body)
	mine := createWebhookTrigger(t, b, tokOp)

	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		code, _, _ = b.call(t, m, "/api/v1/triggers/"+mine.ID, tokOp2, "")
		require.Equal(t, http.StatusNotFound, code, m)
	}
	code, _, _ = b.call(t, http.MethodPatch, "/api/v1/triggers/"+mine.ID, tokOp2, `{"enabled":false}`)
	require.Equal(t, http.StatusNotFound, code)
	code, _, _ = b.call(t, http.MethodPost, "/api/v1/triggers/"+mine.ID+"/rotate-secret", tokOp2, "")
	require.Equal(t, http.StatusNotFound, code)
	code, _, _ = b.call(t, http.MethodGet, "/api/v1/triggers/"+mine.ID+"/deliveries", tokOp2, "")
	require.Equal(t, http.StatusNotFound, code)
	code, body, _ = b.call(t, http.MethodGet, "/api/v1/triggers", tokOp2, "")
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, body, mine.ID)

	code, body, _ = b.call(t, http.MethodGet, "/api/v1/triggers/"+mine.ID, tokOp, "")
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, body, "whsec_", "the secret is shown at creation only")
	require.Contains(t, body, `"owner":"key_op"`)
	code, body, _ = b.call(t, http.MethodGet, "/api/v1/triggers", tokAdmin, "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, mine.ID)
	code, body, _ = b.call(t, http.MethodPatch, "/api/v1/triggers/"+mine.ID, tokAdmin, `{"enabled":false}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"enabled":false`)

	var entries []store.AuditEntry
	require.NoError(t, b.pg.DB.Where("resource_type = ?", audit.ResourceTrigger).Order("id").Find(&entries).Error)
	var got []string
	for _, e := range entries {
		got = append(got, e.Action+"/"+e.Outcome)
	}
	require.Contains(t, got, audit.ActionTriggerCreate+"/"+audit.Denied, "the viewer's refused creation")
	require.Contains(t, got, audit.ActionTriggerCreate+"/"+audit.Success)
	require.Contains(t, got, audit.ActionTriggerUpdate+"/"+audit.Success)
}

// TestTriggerValidation: a trigger whose task could never get valid params,
// or whose fields break a rule, is a 422 naming each field.
func TestTriggerValidation(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	for body, want := range map[string][]string{
		// portfolio_id is required and neither given nor mapped.
		`{"name":"a","kind":"webhook","task":{"type":"refresh_portfolio"}}`: {"task.params.portfolio_id"},
		// Mapped from a field that is not in a webhook's event.
		`{"name":"a","kind":"webhook","task":{"type":"refresh_portfolio","param_map":{"portfolio_id":"/row/id"}}}`: {"task.param_map.portfolio_id"},
		// Not a JSON Pointer; not a param of the type.
		`{"name":"a","kind":"webhook","task":{"type":"refresh_portfolio","param_map":{"portfolio_id":"body","nope":"/body"}}}`: {"task.param_map.nope", "task.param_map.portfolio_id"},
		`{"name":"a","kind":"database","table":"orders","task":{"type":"refresh_all_prices"}}`:                                 {"table"},
		`{"name":"a","kind":"database","table":"prices","operations":["upsert"],"task":{"type":"refresh_all_prices"}}`:         {"operations[0]"},
		`{"name":"a","kind":"webhook","table":"prices","task":{"type":"refresh_all_prices"}}`:                                  {"table"},
		`{"name":"a","kind":"upload","filter":{"name_glob":"["},"task":{"type":"refresh_all_prices"}}`:                         {"filter.name_glob"},
		`{"name":"a","kind":"cron","task":{"type":"refresh_all_prices"}}`:                                                      {"kind"},
		`{"name":"a","kind":"webhook","task":{"type":"no_such_type"}}`:                                                         {"task.type"},
		`{"name":"a","kind":"webhook","task":{"type":"refresh_all_prices","priority":"urgent","timeout_seconds":0}}`:           {"task.priority", "task.timeout_seconds"},
		`{"name":"a","kind":"webhook","task":{"type":"webhook_callback","params":{"url":"https://x.example","secret":"s"}}}`:   {"task.params.secret"},
		`{"name":"a","kind":"webhook","task":{"type":"refresh_all_prices","scheduled_for":"2030-01-01T00:00:00Z"}}`:            {"task.scheduled_for"},
		`{"kind":"webhook"}`: {"name", "task"},
	} {
		code, resp, _ := b.call(t, http.MethodPost, "/api/v1/triggers", tokOp, body)
		require.Equal(t, http.StatusUnprocessableEntity, code, body+"\n"+resp)
		for _, f := range want {
			require.Contains(t, resp, `"field":"`+f+`"`, body+"\n"+resp)
		}
	}
	// A database trigger mapping the changed row is valid; only an admin's
	// watches holdings or portfolios (their rows are other owners').
	dbTrigger := `{"name":"db","kind":"database","table":"holdings","operations":["insert","update"],"debounce_seconds":30,
		"task":{"type":"refresh_portfolio","param_map":{"portfolio_id":"/row/portfolio_id"}}}`
	code, resp, _ := b.call(t, http.MethodPost, "/api/v1/triggers", tokOp, dbTrigger)
	require.Equal(t, http.StatusForbidden, code, resp)
	code, resp, _ = b.call(t, http.MethodPost, "/api/v1/triggers", tokAdmin, dbTrigger)
	require.Equal(t, http.StatusCreated, code, resp)
	require.NotContains(t, resp, "secret")
	code, resp, _ = b.call(t, http.MethodPost, "/api/v1/triggers", tokOp, `{"name":"db","kind":"database","table":"prices",
		"task":{"type":"refresh_all_prices"}}`)
	require.Equal(t, http.StatusCreated, code, resp)
	var tr trigger.Trigger
	require.NoError(t, json.Unmarshal([]byte(resp), &tr))
	require.Equal(t, []string{"insert", "update", "delete"}, tr.Operations)
	code, resp, _ = b.call(t, http.MethodPatch, "/api/v1/triggers/"+tr.ID, tokOp, `{"table":"portfolios"}`)
	require.Equal(t, http.StatusForbidden, code, resp)
	// An operator cannot hide an admin-only type behind a trigger.
	code, resp, _ = b.call(t, http.MethodPost, "/api/v1/triggers", tokOp, `{"name":"m","kind":"webhook","task":{"type":"cleanup_old_data"}}`)
	require.Equal(t, http.StatusForbidden, code, resp)
}

// TestTriggerWebhookDelivery: a signed delivery creates the trigger's task,
// owned by the trigger's owner, with trigger_id and the mapped param; the
// same webhook-id gives the same task, also under 20 concurrent identical
// deliveries; every refusal (bad or missing signature, a stale timestamp,
// non-JSON, too large, a rotated-out secret) has its status, makes no task
// and is recorded; a disabled or deleted trigger is 404 like an unknown one.
func TestTriggerWebhookDelivery(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	tr := createWebhookTrigger(t, b, tokOp)
	now := time.Now()
	body := []byte(`{"portfolio":"pf_hook","note":"x"}`)

	code, resp := b.deliver(t, tr.ID, "msg_1", body, now, "application/json", tr.Secret)
	require.Equal(t, http.StatusAccepted, code, resp)
	first := taskIDOf(t, resp)
	var task store.Task
	require.NoError(t, b.pg.DB.Take(&task, "id = ?", first).Error)
	require.Equal(t, "key_op", task.CreatedBy, "the trigger's owner owns its tasks")
	require.Equal(t, tr.ID, *task.TriggerID)
	require.Equal(t, "refresh_portfolio", task.Type)
	require.JSONEq(t, `{"portfolio_id":"pf_hook"}`, string(task.Params))

	// The task's view and the list filter show trigger_id.
	code, view, _ := b.call(t, http.MethodGet, "/api/v1/tasks/"+first, tokOp, "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, view, `"trigger_id":"`+tr.ID+`"`)
	insertTaskWith(t, b, store.Task{CreatedBy: "key_op", Status: "pending"}) // not the trigger's
	code, list, _ := b.call(t, http.MethodGet, "/api/v1/tasks?trigger_id="+tr.ID, tokOp, "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, list, first)
	require.Contains(t, list, `"total":1`)

	// The same webhook-id: the same task, also 20 at once.
	var wg sync.WaitGroup
	ids := make([]string, 20)
	codes := make([]int, 20)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], ids[i] = b.deliver(t, tr.ID, "msg_1", body, now, "application/json", tr.Secret)
		}()
	}
	wg.Wait()
	for i := range ids {
		require.Equal(t, http.StatusAccepted, codes[i], ids[i])
		require.Equal(t, first, taskIDOf(t, ids[i]))
	}
	var concurrent []string
	var mu sync.Mutex
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, r := b.deliver(t, tr.ID, "msg_2", body, now, "application/json", tr.Secret)
			if c == http.StatusAccepted {
				var v struct {
					TaskID string `json:"task_id"`
				}
				_ = json.Unmarshal([]byte(r), &v)
				mu.Lock()
				concurrent = append(concurrent, v.TaskID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, concurrent, 20)
	for _, id := range concurrent {
		require.Equal(t, concurrent[0], id, "20 concurrent identical deliveries make one task")
	}
	require.Len(t, triggerTasks(t, b.pg.DB, tr.ID), 2, "msg_1 and msg_2")

	// Refusals: no task, the right status.
	other := notify.NewSecret()
	for name, c := range map[string]struct {
		code    int
		status  int
		body    []byte
		at      time.Time
		ct      string
		secrets [][]byte
	}{
		"wrong signature":   {code: http.StatusUnauthorized, body: body, at: now, ct: "application/json", secrets: [][]byte{other}},
		"missing signature": {code: http.StatusUnauthorized, body: body, at: now, ct: "application/json"},
		"stale timestamp":   {code: http.StatusUnauthorized, body: body, at: now.Add(-6 * time.Minute), ct: "application/json", secrets: [][]byte{tr.Secret}},
		"future timestamp":  {code: http.StatusUnauthorized, body: body, at: now.Add(6 * time.Minute), ct: "application/json", secrets: [][]byte{tr.Secret}},
		"not JSON":          {code: http.StatusUnsupportedMediaType, body: []byte("a,b\n"), at: now, ct: "text/csv", secrets: [][]byte{tr.Secret}},
		"malformed JSON":    {code: http.StatusBadRequest, body: []byte(`{"portfolio":`), at: now, ct: "application/json", secrets: [][]byte{tr.Secret}},
		"oversized":         {code: http.StatusRequestEntityTooLarge, body: bytes.Repeat([]byte("x"), DefaultBodyLimit+1), at: now, ct: "application/json", secrets: [][]byte{tr.Secret}},
		"bad params":        {code: http.StatusUnprocessableEntity, body: []byte(`{"portfolio":42}`), at: now, ct: "application/json", secrets: [][]byte{tr.Secret}},
	} {
		code, resp := b.deliver(t, tr.ID, "msg_"+strings.ReplaceAll(name, " ", "_"), c.body, c.at, c.ct, c.secrets...)
		require.Equal(t, c.code, code, name+": "+resp)
	}
	require.Len(t, triggerTasks(t, b.pg.DB, tr.ID), 2, "no refused delivery made a task")

	// Deliveries: every one recorded; refused ones with a reason and at most
	// a short excerpt.
	code, resp, _ = b.call(t, http.MethodGet, "/api/v1/triggers/"+tr.ID+"/deliveries?limit=500", tokOp, "")
	require.Equal(t, http.StatusOK, code)
	var page trigger.Page[trigger.Delivery]
	require.NoError(t, json.Unmarshal([]byte(resp), &page))
	accepted, refused := 0, map[int]int{}
	for _, d := range page.Items {
		if d.Accepted {
			accepted++
			require.NotNil(t, d.TaskID)
			continue
		}
		refused[d.Status]++
		require.NotEmpty(t, d.Reason)
		require.LessOrEqual(t, len(d.Excerpt), trigger.ExcerptLimit)
		require.Nil(t, d.TaskID)
	}
	require.Equal(t, 41, accepted)
	require.Equal(t, map[int]int{401: 4, 415: 1, 400: 1, 422: 1, 413: 1}, refused)
	// Every refusal is audited (one row per status and minute, with a count).
	var audited int64
	require.NoError(t, b.pg.DB.Raw(`SELECT COALESCE(sum(count), 0) FROM audit_log WHERE action = ? AND resource_id = ?`,
		audit.ActionTriggerDeliveryRefused, tr.ID).Scan(&audited).Error)
	require.EqualValues(t, 8, audited)

	// Rotation: both secrets verify during the overlap; the old one not after.
	code, resp, _ = b.call(t, http.MethodPost, "/api/v1/triggers/"+tr.ID+"/rotate-secret", tokOp, "")
	require.Equal(t, http.StatusOK, code, resp)
	var rot trigger.Rotated
	require.NoError(t, json.Unmarshal([]byte(resp), &rot))
	fresh, err := notify.ParseSecret(rot.Secret)
	require.NoError(t, err)
	require.NotNil(t, rot.PreviousExpiresAt)
	code, _ = b.deliver(t, tr.ID, "msg_old", body, now, "application/json", tr.Secret)
	require.Equal(t, http.StatusAccepted, code, "the previous secret verifies during the overlap")
	code, _ = b.deliver(t, tr.ID, "msg_new", body, now, "application/json", fresh)
	require.Equal(t, http.StatusAccepted, code)
	require.NoError(t, b.pg.DB.Exec(`UPDATE triggers SET previous_until = now() - interval '1 second' WHERE id = ?`, tr.ID).Error)
	code, _ = b.deliver(t, tr.ID, "msg_rotated_out", body, now, "application/json", tr.Secret)
	require.Equal(t, http.StatusUnauthorized, code, "a rotated-out secret no longer verifies")
	require.Len(t, triggerTasks(t, b.pg.DB, tr.ID), 4)

	// Disabled, deleted, unknown and of another kind: the same 404.
	code, _, _ = b.call(t, http.MethodPatch, "/api/v1/triggers/"+tr.ID, tokOp, `{"enabled":false}`)
	require.Equal(t, http.StatusOK, code)
	disabledCode, disabled := b.deliver(t, tr.ID, "msg_off", body, now, "application/json", fresh)
	code, _, _ = b.call(t, http.MethodDelete, "/api/v1/triggers/"+tr.ID, tokOp, "")
	require.Equal(t, http.StatusNoContent, code)
	deletedCode, deleted := b.deliver(t, tr.ID, "msg_gone", body, now, "application/json", fresh)
	unknownCode, unknown := b.deliver(t, trigger.NewID(), "msg_x", body, now, "application/json", fresh)
	for _, c := range []int{disabledCode, deletedCode, unknownCode} {
		require.Equal(t, http.StatusNotFound, c)
	}
	strip := func(s string) string { // the request id differs
		var p map[string]any
		require.NoError(t, json.Unmarshal([]byte(s), &p))
		delete(p, "instance")
		delete(p, "request_id")
		out, _ := json.Marshal(p)
		return string(out)
	}
	require.Equal(t, strip(unknown), strip(disabled))
	require.Equal(t, strip(unknown), strip(deleted))
	require.Len(t, triggerTasks(t, b.pg.DB, tr.ID), 4, "the tasks a trigger made stay after it is deleted")
}

// TestTriggerHookRateLimit: each webhook trigger has its own limit, apart
// from any caller's: over it, 429 with Retry-After, recorded, and no task.
func TestTriggerHookRateLimit(t *testing.T) {
	t.Parallel()
	first := setupWith(t, setupOptions{})
	rc := queue.Client(first.rd.Opt())
	t.Cleanup(func() { _ = rc.Close() })
	lim, err := ratelimit.New(rc)
	require.NoError(t, err)
	b := setupWith(t, setupOptions{db: first.pg.DB, redisOpt: first.rd.Opt(), secure: true, limiter: lim,
		rateLimit: config.Defaults().RateLimit, perAddress: config.RateLimit{RPS: 1000, Burst: 1000},
		hookRate: config.RateLimit{RPS: 0.01, Burst: 3}})
	tr := createWebhookTrigger(t, b, tokOp)
	other := createWebhookTrigger(t, b, tokOp)
	body := []byte(`{"portfolio":"pf_rate"}`)
	for i := range 3 {
		code, resp := b.deliver(t, tr.ID, "r"+strconv.Itoa(i), body, time.Now(), "application/json", tr.Secret)
		require.Equal(t, http.StatusAccepted, code, resp)
	}
	resp := b.raw(t, http.MethodPost, "/api/v1/hooks/"+tr.ID, "", bytes.NewReader(body), map[string]string{
		"Content-Type": "application/json", notify.HeaderWebhookID: "r3",
		notify.HeaderWebhookTimestamp: strconv.FormatInt(time.Now().Unix(), 10),
		notify.HeaderWebhookSignature: notify.SignWebhook("r3", time.Now(), body, tr.Secret)})
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
	var audited int64
	require.NoError(t, first.pg.DB.Raw(`SELECT COALESCE(sum(count), 0) FROM audit_log WHERE action = ? AND resource_id = ?`,
		audit.ActionTriggerDeliveryRefused, tr.ID).Scan(&audited).Error)
	require.EqualValues(t, 1, audited, "the rate-limited delivery is audited")
	require.Len(t, triggerTasks(t, first.pg.DB, tr.ID), 3)
	code, _ := b.deliver(t, other.ID, "r0", body, time.Now(), "application/json", other.Secret)
	require.Equal(t, http.StatusAccepted, code, "another trigger's budget is its own")
}

// TestTriggerUpload: an upload through POST /api/v1/uploads creates the task
// of each enabled upload trigger whose filter matches and that may see it,
// with params mapped from the upload; another's trigger gets nothing.
func TestTriggerUpload(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	mk := func(token, filter string) string {
		code, body, _ := b.call(t, http.MethodPost, "/api/v1/triggers", token, `{"name":"up-`+newUnique()+`","kind":"upload",
			"filter":`+filter+`,"task":{"type":"refresh_portfolio","param_map":{"portfolio_id":"/upload_id"}}}`)
		require.Equal(t, http.StatusCreated, code, body)
		var tr trigger.Trigger
		require.NoError(t, json.Unmarshal([]byte(body), &tr))
		return tr.ID
	}
	csv := mk(tokOp, `{"content_type":"text/csv","name_glob":"prices-*.csv"}`)
	other := mk(tokOp, `{"name_glob":"*.json"}`)
	theirs := mk(tokOp2, `{}`)
	resp := b.raw(t, http.MethodPost, "/api/v1/uploads?name=prices-2026.csv", tokOp, strings.NewReader("symbol,date\nAAA,2026-01-02\n"),
		map[string]string{"Content-Type": "text/csv"})
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	var up struct {
		UploadID string `json:"upload_id"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&up))
	got := triggerTasks(t, b.pg.DB, csv)
	require.Len(t, got, 1)
	require.JSONEq(t, `{"portfolio_id":"`+up.UploadID+`"}`, string(got[0].Params))
	require.Equal(t, "key_op", got[0].CreatedBy)
	require.Empty(t, triggerTasks(t, b.pg.DB, other), "the filter does not match")
	require.Empty(t, triggerTasks(t, b.pg.DB, theirs), "another operator's trigger does not see the upload")
}

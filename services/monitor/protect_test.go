package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskforge/taskforge/pkg/problem/problemtest"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// recorder keeps audit entries in memory.
type recorder struct{ entries []audit.Entry }

func (r *recorder) Record(_ context.Context, e audit.Entry) error {
	r.entries = append(r.entries, e)
	return nil
}

// TestProtect checks the UI's guard: admins only, by Bearer or Basic; refused
// credentials audited; state changes by Basic only from the same origin.
func TestProtect(t *testing.T) {
	t.Parallel()
	tokens := auth.StaticTokens{
		"admin-token":  {ID: "key_admin", Role: auth.Admin},
		"viewer-token": {ID: "key_viewer", Role: auth.Viewer},
	}
	rec := &recorder{}
	guard, err := protect(tokens, guardOptions{Audit: rec, Log: zap.NewNop()})
	require.NoError(t, err)
	h := guard(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	for _, tc := range []struct {
		name, method string
		bearer       string
		basic        string
		header       map[string]string
		want         int
	}{
		{name: "anonymous", method: http.MethodGet, want: http.StatusUnauthorized},
		{name: "bad basic password", method: http.MethodGet, basic: "wrong", want: http.StatusUnauthorized},
		{name: "viewer by bearer", method: http.MethodGet, bearer: "viewer-token", want: http.StatusForbidden},
		{name: "viewer by basic", method: http.MethodGet, basic: "viewer-token", want: http.StatusForbidden},
		{name: "admin by bearer", method: http.MethodGet, bearer: "admin-token", want: http.StatusNoContent},
		{name: "admin by basic", method: http.MethodGet, basic: "admin-token", want: http.StatusNoContent},
		{name: "basic delete without origin", method: http.MethodDelete, basic: "admin-token", want: http.StatusForbidden},
		{name: "basic delete cross-site", method: http.MethodDelete, basic: "admin-token",
			header: map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://" + host}, want: http.StatusForbidden},
		{name: "basic post from another origin", method: http.MethodPost, basic: "admin-token",
			header: map[string]string{"Origin": "https://evil.example"}, want: http.StatusForbidden},
		{name: "basic post with a foreign referer", method: http.MethodPost, basic: "admin-token",
			header: map[string]string{"Referer": "https://evil.example/monitoring"}, want: http.StatusForbidden},
		{name: "basic delete same-origin fetch", method: http.MethodDelete, basic: "admin-token",
			header: map[string]string{"Sec-Fetch-Site": "same-origin"}, want: http.StatusNoContent},
		{name: "basic post with own origin", method: http.MethodPost, basic: "admin-token",
			header: map[string]string{"Origin": "http://" + host}, want: http.StatusNoContent},
		{name: "basic post with own referer", method: http.MethodPost, basic: "admin-token",
			header: map[string]string{"Referer": "http://" + host + "/monitoring/queues"}, want: http.StatusNoContent},
		{name: "bearer delete needs no origin", method: http.MethodDelete, bearer: "admin-token", want: http.StatusNoContent},
		{name: "cross-site delete by a viewer", method: http.MethodDelete, bearer: "viewer-token", want: http.StatusForbidden},
	} {
		req, err := http.NewRequest(tc.method, srv.URL+"/monitoring/api/queues", nil)
		require.NoError(t, err)
		if tc.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+tc.bearer)
		}
		if tc.basic != "" {
			req.SetBasicAuth("admin", tc.basic)
		}
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err, tc.name)
		_ = res.Body.Close()
		require.Equal(t, tc.want, res.StatusCode, tc.name)
		if tc.want == http.StatusUnauthorized {
			// Browsers get a Basic challenge so that they can log in.
			require.Contains(t, strings.Join(res.Header.Values("WWW-Authenticate"), ","), "Basic", tc.name)
		}
	}
	// The refused credential is audited (a request without any is not), and
	// so is every change an admin made, with the admin.
	var failures, changes []audit.Entry
	for _, e := range rec.entries {
		if e.Action == audit.ActionAuthFailure {
			failures = append(failures, e)
		} else {
			changes = append(changes, e)
		}
	}
	require.Len(t, failures, 1)
	require.Equal(t, audit.Failure, failures[0].Outcome)
	require.Equal(t, "127.0.0.1", failures[0].Aggregate, "aggregated per address")
	require.Len(t, changes, 4, "the four admitted changes")
	for _, e := range changes {
		require.Equal(t, "key_admin", e.Actor)
		require.Equal(t, audit.Success, e.Outcome)
	}
}

// TestChangeEntry names the audit row of each kind of Asynqmon change.
func TestChangeEntry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		method, path       string
		action, rtype, rid string
	}{
		{http.MethodPost, "/monitoring/api/queues/high:pause", "monitor.pause", audit.ResourceQueue, "high"},
		{http.MethodDelete, "/monitoring/api/queues/low", "monitor.delete", audit.ResourceQueue, "low"},
		{http.MethodDelete, "/monitoring/api/queues/high/pending_tasks/task_1", "monitor.delete", audit.ResourceTask, "task_1"},
		{http.MethodPost, "/monitoring/api/queues/high/archived_tasks/task_2:run", "monitor.run", audit.ResourceTask, "task_2"},
		{http.MethodPost, "/monitoring/api/queues/normal/retry_tasks:archive_all", "monitor.archive_all", audit.ResourceQueue, "normal"},
		{http.MethodDelete, "/monitoring/api/queues/normal/scheduled_tasks:delete_all", "monitor.delete_all", audit.ResourceQueue, "normal"},
		{http.MethodPost, "/monitoring/api/queues/high/groups/g/aggregating_tasks/task_3:archive", "monitor.archive", audit.ResourceTask, "task_3"},
		{http.MethodPost, "/monitoring/api/something", "monitor.post", "", ""},
	} {
		e := changeEntry(httptest.NewRequest(tc.method, tc.path, nil))
		require.Equal(t, tc.action, e.Action, tc.path)
		require.Equal(t, tc.rtype, e.ResourceType, tc.path)
		require.Equal(t, tc.rid, e.ResourceID, tc.path)
	}
}

// TestMonitorLimitsGuessingAndAuditsChanges runs the binary with a small
// per-address budget (finding 2): 60 bad Basic logins are mostly refused with
// 429 before authentication and leave one aggregated audit row (two if the
// minute turns), and pausing a queue through Asynqmon is audited with the
// admin who did it.
func TestMonitorLimitsGuessingAndAuditsChanges(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	rd := testenv.NewRedis(t)
	const burst = 8
	p := start(t, map[string]string{
		"TASKFORGE_REDIS_ADDR":                  rd.Addr,
		"TASKFORGE_REDIS_DB":                    strconv.Itoa(rd.DB),
		"TASKFORGE_DATABASE_URL":                pg.URL,
		"TASKFORGE_RATELIMIT_PER_ADDRESS_RPS":   "0.01",
		"TASKFORGE_RATELIMIT_PER_ADDRESS_BURST": strconv.Itoa(burst),
	})
	// An admin pauses a queue by Bearer (no origin needed): audited with the
	// admin as actor. It spends one request of 127.0.0.1's budget.
	req, err := http.NewRequest(http.MethodPost, p.base+"/monitoring/api/queues/low:pause", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+p.adminKey)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Less(t, res.StatusCode, 300)
	var change store.AuditEntry
	require.NoError(t, pg.DB.Where("action = ?", "monitor.pause").First(&change).Error)
	require.Equal(t, auth.BootstrapPrincipalID, change.Actor)
	require.Equal(t, audit.ResourceQueue, change.ResourceType)
	require.Equal(t, "low", change.ResourceID)
	require.Equal(t, audit.Success, change.Outcome)

	codes := map[int]int{}
	for i := range 60 {
		req, err := http.NewRequest(http.MethodGet, p.base+"/monitoring/api/queues", nil)
		require.NoError(t, err)
		req.SetBasicAuth("admin", "guess-"+strconv.Itoa(i))
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		problemtest.Require(t, res, "a refused monitor login")
		_ = res.Body.Close()
		codes[res.StatusCode]++
	}
	require.Equal(t, map[int]int{http.StatusUnauthorized: burst - 1, http.StatusTooManyRequests: 60 - burst + 1}, codes)
	var rows []store.AuditEntry
	require.NoError(t, pg.DB.Where("action = ?", audit.ActionAuthFailure).Find(&rows).Error)
	require.NotEmpty(t, rows)
	require.LessOrEqual(t, len(rows), 2, "aggregated: one row per address per minute")
	total := 0
	for _, r := range rows {
		total += r.Count
	}
	require.Equal(t, burst-1, total)
}

// TestMonitorUIWithKeysAndRedactedPayloads runs the binary against PostgreSQL
// and Redis: an API key made in the database opens the UI only while it is an
// admin's and unrevoked, and Asynqmon shows a task's payload with its secret
// redacted (neither the plaintext nor the ciphertext).
func TestMonitorUIWithKeysAndRedactedPayloads(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	rd := testenv.NewRedis(t)
	p := start(t, map[string]string{
		"TASKFORGE_REDIS_ADDR":               rd.Addr,
		"TASKFORGE_REDIS_DB":                 strconv.Itoa(rd.DB),
		"TASKFORGE_DATABASE_URL":             pg.URL,
		"TASKFORGE_MONITOR_COLLECT_INTERVAL": "200ms",
	})
	ctx := context.Background()
	keys, err := auth.NewKeyStore(pg.DB)
	require.NoError(t, err)
	admin, err := keys.Create(ctx, auth.NewKey{Name: "ops", Role: auth.Admin})
	require.NoError(t, err)
	viewer, err := keys.Create(ctx, auth.NewKey{Name: "dash", Role: auth.Viewer})
	require.NoError(t, err)

	get := func(path, password string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, p.base+path, nil)
		require.NoError(t, err)
		if password != "" {
			req.SetBasicAuth("anyone", password)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	code, _ := get("/monitoring/api/queues", "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = get("/monitoring/api/queues", viewer.Plaintext)
	require.Equal(t, http.StatusForbidden, code)
	code, body := get("/monitoring/api/queues", admin.Plaintext)
	require.Equal(t, http.StatusOK, code, body)

	// A queued task whose secret is sealed, as the API queues it.
	const canary = "monitor-canary-secret-3f9a1c"
	keyring, err := secret.FromConfig(config.Defaults().Crypto, true)
	require.NoError(t, err)
	params := &taskpb.WebhookCallbackParams{Url: "https://hooks.example/x", Secret: canary}
	keyID, err := keyring.Seal(params)
	require.NoError(t, err)
	sealed := params.GetSecret()
	payload, err := tasks.EncodeEnvelope("task_monitorcanary", tasks.TypeWebhookCallback, params, tasks.DefaultRetry, 30, keyID, 0)
	require.NoError(t, err)
	ac := asynq.NewClient(rd.Opt())
	t.Cleanup(func() { _ = ac.Close() })
	_, err = ac.Enqueue(asynq.NewTask(tasks.TypeWebhookCallback, payload), asynq.Queue("high"),
		asynq.TaskID("task_monitorcanary"), asynq.ProcessIn(time.Hour))
	require.NoError(t, err)
	code, body = get("/monitoring/api/queues/high/scheduled_tasks", admin.Plaintext)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "task_monitorcanary")
	require.Contains(t, body, "hooks.example", "the payload is shown")
	require.NotContains(t, body, canary)
	require.NotContains(t, body, sealed[len(sealed)-20:], "not even the ciphertext is shown")

	// Revoking the key closes the UI at once.
	_, err = keys.Revoke(ctx, admin.Key.ID)
	require.NoError(t, err)
	code, _ = get("/monitoring/api/queues", admin.Plaintext)
	require.Equal(t, http.StatusUnauthorized, code)
	// The refused credentials were audited, with the key's public prefix only.
	var n int64
	require.NoError(t, pg.DB.Table("audit_log").Where("action = ?", audit.ActionAuthFailure).Count(&n).Error)
	require.GreaterOrEqual(t, n, int64(1))
}

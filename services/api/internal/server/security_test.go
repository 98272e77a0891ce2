package server

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/ratelimit"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/services/api/client"
)

// testBootstrap is the bootstrap admin key of the security tests.
const testBootstrap = "bootstrap-admin-key-for-tests-0123"

// call sends a request (validated against openapi.yaml) and returns its
// status, body and headers.
func (b testBundle) call(t *testing.T, method, path, token, body string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	var h map[string]string
	if body != "" {
		rd, h = strings.NewReader(body), map[string]string{"Content-Type": "application/json"}
	}
	resp := b.raw(t, method, path, token, rd, h)
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(out), resp.Header
}

// auditRows returns the audit rows of action, oldest first.
func auditRows(t *testing.T, b testBundle, action string) []store.AuditEntry {
	t.Helper()
	var rows []store.AuditEntry
	require.NoError(t, b.pg.DB.Where("action = ?", action).Order("id").Find(&rows).Error)
	return rows
}

// TestJWTThroughHTTP sends good and bad tokens through the API (pkg/auth
// covers every case in its unit tests; these prove the wiring): only a
// well-formed HS256 token with the right issuer, audience and times passes,
// and refused ones are audited.
func TestJWTThroughHTTP(t *testing.T) {
	t.Parallel()
	key := []byte("jwt-test-secret-0123456789abcdef-0123456")
	b := setupWith(t, setupOptions{secure: true, jwt: &auth.JWTConfig{
		Secret: key, Issuer: "https://idp.test", Audience: "taskforge", Algorithms: []string{"HS256"}, Leeway: time.Second,
	}})
	now := time.Now()
	claims := func(sub, role string, edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"sub": sub, "role": role, "iss": "https://idp.test", "aud": "taskforge",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, k any, c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(k)
		require.NoError(t, err)
		return s
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)

	alice := sign(jwt.SigningMethodHS256, key, claims("alice", "operator", nil))
	code, body, _ := b.call(t, http.MethodPost, "/api/v1/tasks", alice, `{"type":"refresh_all_prices"}`)
	require.Equal(t, http.StatusCreated, code, body)
	var created struct {
		TaskID string `json:"task_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &created))
	code, body, _ = b.call(t, http.MethodGet, "/api/v1/tasks/"+created.TaskID, alice, "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"created_by":"jwt:alice"`)
	// Another subject does not see it; an admin token does.
	bob := sign(jwt.SigningMethodHS256, key, claims("bob", "operator", nil))
	code, _, _ = b.call(t, http.MethodGet, "/api/v1/tasks/"+created.TaskID, bob, "")
	require.Equal(t, http.StatusNotFound, code)
	root := sign(jwt.SigningMethodHS256, key, claims("root", "admin", nil))
	code, _, _ = b.call(t, http.MethodGet, "/api/v1/tasks/"+created.TaskID, root, "")
	require.Equal(t, http.StatusOK, code)

	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims("mallory", "admin", nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)
	forged := strings.Split(alice, ".")
	payload, err := json.Marshal(claims("alice", "admin", nil))
	require.NoError(t, err)
	forged[1] = base64.RawURLEncoding.EncodeToString(payload)
	bad := map[string]string{
		"alg none":          none,
		"wrong algorithm":   sign(jwt.SigningMethodHS512, key, claims("mallory", "admin", nil)),
		"RS256 not pinned":  sign(jwt.SigningMethodRS256, rsaKey, claims("mallory", "admin", nil)),
		"expired":           sign(jwt.SigningMethodHS256, key, claims("mallory", "admin", func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })),
		"future nbf":        sign(jwt.SigningMethodHS256, key, claims("mallory", "admin", func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })),
		"wrong issuer":      sign(jwt.SigningMethodHS256, key, claims("mallory", "admin", func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })),
		"wrong audience":    sign(jwt.SigningMethodHS256, key, claims("mallory", "admin", func(c jwt.MapClaims) { c["aud"] = "other-service" })),
		"past max lifetime": sign(jwt.SigningMethodHS256, key, claims("mallory", "admin", func(c jwt.MapClaims) { c["exp"] = now.AddDate(100, 0, 0).Unix() })),
		"no exp":            sign(jwt.SigningMethodHS256, key, claims("mallory", "admin", func(c jwt.MapClaims) { delete(c, "exp") })),
		"bad signature":     sign(jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdef-012345"), claims("mallory", "admin", nil)),
		"forged payload":    strings.Join(forged, "."),
	}
	for name, tok := range bad {
		code, body, h := b.call(t, http.MethodGet, "/api/v1/tasks", tok, "")
		require.Equal(t, http.StatusUnauthorized, code, "%s: %s", name, body)
		require.Contains(t, h.Get("WWW-Authenticate"), `error="invalid_token"`, name)
	}
	// One address: the refusals are aggregated into one row per minute.
	failures := auditRows(t, b, audit.ActionAuthFailure)
	require.LessOrEqual(t, len(failures), 2)
	total := 0
	for _, f := range failures {
		total += f.Count
	}
	require.Equal(t, len(bad), total)
	for _, f := range failures {
		require.Equal(t, audit.Failure, f.Outcome)
		require.Equal(t, "127.0.0.1", f.ClientIP)
		require.NotEmpty(t, f.RequestID)
		for _, tok := range bad {
			require.NotContains(t, string(f.Details), tok, "the token itself is never recorded")
		}
	}
}

// TestAPIKeysLifecycle creates, lists and revokes keys through the API: the key
// is shown once, never listed, works at once and stops working at once.
func TestAPIKeysLifecycle(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true, bootstrap: testBootstrap})
	admin := b.client(t, testBootstrap)

	resp, err := admin.CreateAPIKeyWithResponse(ctx, client.CreateAPIKeyRequest{Name: "ci pipeline", Role: "operator"})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode(), string(resp.Body))
	k := resp.JSON201
	require.NotNil(t, k.Key)
	key := *k.Key
	require.True(t, strings.HasPrefix(key, k.Prefix+"_"), "the listed prefix names the key")
	require.Equal(t, "bootstrap-admin", k.CreatedBy)

	list, err := admin.ListAPIKeysWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, list.StatusCode())
	require.Len(t, list.JSON200.Items, 1)
	require.Nil(t, list.JSON200.Items[0].Key)
	require.NotContains(t, string(list.Body), key[len(k.Prefix):], "the secret part is never listed")
	require.NotContains(t, string(list.Body), auth.HashKey(key), "nor its hash")

	// The key works at once, as an operator.
	op := b.client(t, key)
	tr, err := op.CreateTaskWithResponse(ctx, nil, createBody("refresh_all_prices", nil))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, tr.StatusCode())
	denied, err := op.ListAPIKeysWithResponse(ctx)
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, denied.StatusCode())

	// Revoked: the very next request is refused.
	rv, err := admin.RevokeAPIKeyWithResponse(ctx, k.Id)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, rv.StatusCode())
	require.NotNil(t, rv.JSON200.RevokedAt)
	after, err := op.ListTasksWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, after.StatusCode())

	// An expiring key stops at its expiry.
	exp := time.Now().Add(1500 * time.Millisecond)
	resp, err = admin.CreateAPIKeyWithResponse(ctx, client.CreateAPIKeyRequest{Name: "short", Role: "viewer", ExpiresAt: &exp})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode())
	short := b.client(t, *resp.JSON201.Key)
	l, err := short.ListTasksWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, l.StatusCode())
	require.Eventually(t, func() bool {
		l, err := short.ListTasksWithResponse(ctx, nil)
		return err == nil && l.StatusCode() == http.StatusUnauthorized
	}, 10*time.Second, 100*time.Millisecond)

	// Bad requests name the field; unknown ids are 404.
	for _, tc := range []struct {
		body  string
		code  int
		field string
	}{
		{`{"name":"x","role":"root"}`, 422, "role"},
		{`{"name":"","role":"viewer"}`, 422, "name"},
		{`{"name":"x","role":"viewer","expires_at":"2001-01-01T00:00:00Z"}`, 422, "expires_at"},
		{`{"name":"x","role":"viewer","expires_at":"tomorrow"}`, 422, "expires_at"},
		{`{"name":"x","role":"viewer","scopes":["all"]}`, 422, "scopes"},
		{`{"name":`, 400, "body"},
	} {
		code, body, _ := b.call(t, http.MethodPost, "/api/v1/api-keys", testBootstrap, tc.body)
		require.Equal(t, tc.code, code, tc.body)
		require.Contains(t, body, `"field":"`+tc.field+`"`, tc.body)
	}
	code, _, _ := b.call(t, http.MethodDelete, "/api/v1/api-keys/key_01hz3k8c2m4n5p6q7r8s9t0v1w", testBootstrap, "")
	require.Equal(t, http.StatusNotFound, code)
	code, _, _ = b.call(t, http.MethodDelete, "/api/v1/api-keys/nope", testBootstrap, "")
	require.Equal(t, http.StatusNotFound, code)
}

// TestAuditTrail checks one audit row per mutation and per refused
// credential, and the audit route's filters and pages.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true, bootstrap: testBootstrap})
	mk := func(role string) (id, key string) {
		code, body, _ := b.call(t, http.MethodPost, "/api/v1/api-keys", testBootstrap, `{"name":"`+role+`","role":"`+role+`"}`)
		require.Equal(t, http.StatusCreated, code, body)
		var k struct{ ID, Key string }
		require.NoError(t, json.Unmarshal([]byte(body), &k))
		return k.ID, k.Key
	}
	opID, opKey := mk("operator")
	_, viewerKey := mk("viewer")

	// Tasks: create, cancel, retry; a refused create.
	code, body, _ := b.call(t, http.MethodPost, "/api/v1/tasks", opKey, `{"type":"refresh_all_prices"}`)
	require.Equal(t, http.StatusCreated, code)
	var task struct {
		TaskID string `json:"task_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &task))
	code, _, _ = b.call(t, http.MethodDelete, "/api/v1/tasks/"+task.TaskID, opKey, "")
	require.Equal(t, http.StatusOK, code)
	code, _, _ = b.call(t, http.MethodPost, "/api/v1/tasks/"+task.TaskID+"/retry", opKey, "")
	require.Equal(t, http.StatusOK, code)
	code, _, _ = b.call(t, http.MethodPost, "/api/v1/tasks", viewerKey, `{"type":"refresh_all_prices"}`)
	require.Equal(t, http.StatusForbidden, code)
	// Schedules: create, update, delete (admins).
	code, body, _ = b.call(t, http.MethodPost, "/api/v1/schedules", testBootstrap, `{"name":"audited","cron":"0 3 * * *","type":"refresh_all_prices"}`)
	require.Equal(t, http.StatusCreated, code, body)
	var sch struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(body), &sch))
	code, _, _ = b.call(t, http.MethodPatch, "/api/v1/schedules/"+sch.ID, testBootstrap, `{"enabled":false}`)
	require.Equal(t, http.StatusOK, code)
	code, _, _ = b.call(t, http.MethodDelete, "/api/v1/schedules/"+sch.ID, testBootstrap, "")
	require.Equal(t, http.StatusNoContent, code)
	// A refused credential and a key revocation.
	code, _, _ = b.call(t, http.MethodGet, "/api/v1/tasks", opKey[:len(opKey)-8]+"zzzz"+opKey[len(opKey)-4:], "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _, _ = b.call(t, http.MethodDelete, "/api/v1/api-keys/"+opID, testBootstrap, "")
	require.Equal(t, http.StatusOK, code)

	want := []struct{ action, actor, outcome, resource string }{
		{audit.ActionAPIKeyCreate, auth.BootstrapPrincipalID, audit.Success, opID},
		{audit.ActionAPIKeyCreate, auth.BootstrapPrincipalID, audit.Success, ""},
		{audit.ActionTaskCreate, opID, audit.Success, task.TaskID},
		{audit.ActionTaskCancel, opID, audit.Success, task.TaskID},
		{audit.ActionTaskRetry, opID, audit.Success, task.TaskID},
		{audit.ActionTaskCreate, "", audit.Denied, ""},
		{audit.ActionScheduleCreate, auth.BootstrapPrincipalID, audit.Success, sch.ID},
		{audit.ActionScheduleUpdate, auth.BootstrapPrincipalID, audit.Success, sch.ID},
		{audit.ActionScheduleDelete, auth.BootstrapPrincipalID, audit.Success, sch.ID},
		{audit.ActionAuthFailure, "", audit.Failure, ""},
		{audit.ActionAPIKeyRevoke, auth.BootstrapPrincipalID, audit.Success, opID},
	}
	var rows []store.AuditEntry
	require.NoError(t, b.pg.DB.Order("id").Find(&rows).Error)
	require.Len(t, rows, len(want))
	for i, w := range want {
		r := rows[i]
		require.Equal(t, w.action, r.Action, "row %d", i)
		require.Equal(t, w.outcome, r.Outcome, "row %d", i)
		if w.actor != "" {
			require.Equal(t, w.actor, r.Actor, "row %d", i)
		}
		if w.resource != "" {
			require.Equal(t, w.resource, r.ResourceID, "row %d", i)
		}
		require.Equal(t, "127.0.0.1", r.ClientIP, "row %d", i)
		require.NotEmpty(t, r.RequestID, "row %d", i)
		require.WithinDuration(t, time.Now(), r.TS, time.Minute)
		require.NotContains(t, string(r.Details), opKey, "no credential in the log")
	}
	var fail map[string]any
	require.NoError(t, json.Unmarshal(rows[9].Details, &fail))
	require.Equal(t, "api_key", fail["credential"])
	require.Equal(t, opKey[:len(auth.KeyPrefix)+8], fail["key_prefix"], "only the public prefix")

	// The route: filters, and pages that neither skip nor repeat.
	admin := b.client(t, testBootstrap)
	page, err := admin.ListAuditWithResponse(ctx, &client.ListAuditParams{Actor: &opID})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, page.StatusCode(), string(page.Body))
	require.Len(t, page.JSON200.Items, 3)
	act := audit.ActionTaskCancel
	page, err = admin.ListAuditWithResponse(ctx, &client.ListAuditParams{Action: &act})
	require.NoError(t, err)
	require.Len(t, page.JSON200.Items, 1)
	page, err = admin.ListAuditWithResponse(ctx, &client.ListAuditParams{ResourceId: &task.TaskID})
	require.NoError(t, err)
	require.Len(t, page.JSON200.Items, 3)
	future := time.Now().Add(time.Hour)
	page, err = admin.ListAuditWithResponse(ctx, &client.ListAuditParams{Since: &future})
	require.NoError(t, err)
	require.Empty(t, page.JSON200.Items)
	seen := map[int64]bool{}
	limit := client.Limit(4)
	params := &client.ListAuditParams{Limit: &limit}
	for {
		page, err = admin.ListAuditWithResponse(ctx, params)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, page.StatusCode())
		for _, it := range page.JSON200.Items {
			require.False(t, seen[it.Id], "row %d repeated", it.Id)
			seen[it.Id] = true
		}
		if page.JSON200.NextCursor == nil {
			break
		}
		params.Cursor = page.JSON200.NextCursor
	}
	require.Len(t, seen, len(want))
	code, body, _ = b.call(t, http.MethodGet, "/api/v1/audit?cursor=bogus", testBootstrap, "")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, `"field":"cursor"`)
	// No route deletes or changes audit rows.
	for _, m := range []string{http.MethodDelete, http.MethodPut, http.MethodPatch, http.MethodPost} {
		code, _, _ = b.call(t, m, "/api/v1/audit", testBootstrap, "")
		require.Equal(t, http.StatusMethodNotAllowed, code, m)
	}
}

// TestRateLimitSharedByTwoServers runs two API servers on one Redis: a
// caller's budget is spent across both, and over it the answer is 429 with
// Retry-After.
func TestRateLimitSharedByTwoServers(t *testing.T) {
	t.Parallel()
	const burst = 6
	rl := config.RateLimitConfig{Enabled: true, PerRole: map[string]config.RateLimit{
		"viewer": {RPS: 0.01, Burst: burst}, "operator": {RPS: 100, Burst: 100}, "admin": {RPS: 100, Burst: 100},
	}}
	first := setupWith(t, setupOptions{})
	var servers []testBundle
	for range 2 {
		rc := queue.Client(first.rd.Opt())
		t.Cleanup(func() { _ = rc.Close() })
		lim, err := ratelimit.New(rc)
		require.NoError(t, err)
		servers = append(servers, setupWith(t, setupOptions{db: first.pg.DB, redisOpt: first.rd.Opt(),
			limiter: lim, rateLimit: rl, perAddress: config.RateLimit{RPS: 1000, Burst: 1000}}))
	}
	var ok, limited int
	perServer := [2]int{}
	for i := range 3 * burst {
		s := servers[i%2]
		code, body, h := s.call(t, http.MethodGet, "/api/v1/task-types", tokViewer, "")
		switch code {
		case http.StatusOK:
			ok++
			perServer[i%2]++
		case http.StatusTooManyRequests:
			limited++
			require.NotEmpty(t, h.Get("Retry-After"))
			require.Contains(t, body, "rate limit")
		default:
			t.Fatalf("status %d: %s", code, body)
		}
	}
	require.Equal(t, burst, ok, "one budget across both servers")
	require.Equal(t, 2*burst, limited)
	require.Positive(t, perServer[0])
	require.Positive(t, perServer[1])
	// Another caller has a budget of its own.
	code, _, _ := servers[1].call(t, http.MethodGet, "/api/v1/task-types", tokOp, "")
	require.Equal(t, http.StatusOK, code)
	t.Logf("viewer: %d allowed, %d refused over two servers (burst %d)", ok, limited, burst)
}

// TestPerAddressLimitBoundsAuditWrites floods the API with bad credentials
// from one address: past the per-address budget the requests are refused
// before authentication, and those refused by authentication share one
// aggregated audit row.
func TestPerAddressLimitBoundsAuditWrites(t *testing.T) {
	t.Parallel()
	first := setupWith(t, setupOptions{})
	rc := queue.Client(first.rd.Opt())
	t.Cleanup(func() { _ = rc.Close() })
	lim, err := ratelimit.New(rc)
	require.NoError(t, err)
	const burst = 5
	b := setupWith(t, setupOptions{db: first.pg.DB, redisOpt: first.rd.Opt(), secure: true, bootstrap: testBootstrap,
		limiter: lim, rateLimit: config.Defaults().RateLimit, perAddress: config.RateLimit{RPS: 0.01, Burst: burst}})
	codes := map[int]int{}
	for i := range 20 {
		code, _, _ := b.call(t, http.MethodGet, "/api/v1/tasks", auth.KeyPrefix+"abcd2345_"+strings.Repeat("x", 40+i), "")
		codes[code]++
	}
	require.Equal(t, map[int]int{http.StatusUnauthorized: burst, http.StatusTooManyRequests: 20 - burst}, codes)
	// The refusals that got through are aggregated: one row per address and
	// minute (two if the minute turned during the test), counting them all.
	rows := auditRows(t, first, audit.ActionAuthFailure)
	require.LessOrEqual(t, len(rows), 2)
	total := 0
	for _, r := range rows {
		total += r.Count
	}
	require.Equal(t, burst, total)
}

// TestSecurityHeadersAndCORS checks the headers of API responses and that CORS
// answers only the configured origins.
func TestSecurityHeadersAndCORS(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{cors: []string{"https://app.example"}, hsts: true})
	for _, path := range []string{"/api/v1/task-types", "/api/v1/tasks/nope", "/healthz"} {
		_, _, h := b.call(t, http.MethodGet, path, tokViewer, "")
		require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"), path)
		require.Equal(t, "no-referrer", h.Get("Referrer-Policy"), path)
		require.Equal(t, "no-store", h.Get("Cache-Control"), path)
		require.Contains(t, h.Get("Content-Security-Policy"), "default-src 'none'", path)
		require.Equal(t, "max-age=31536000", h.Get("Strict-Transport-Security"), path)
	}
	preflight := func(b testBundle, origin string) *http.Response {
		req, err := http.NewRequest(http.MethodOptions, b.http.URL+"/api/v1/tasks", nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp
	}
	resp := preflight(b, "https://app.example")
	require.Equal(t, "https://app.example", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "authorization")
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Credentials"))
	resp = preflight(b, "https://evil.example")
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	_, _, h := b.call(t, http.MethodGet, "/api/v1/task-types", tokViewer, "")
	require.Empty(t, h.Get("Access-Control-Allow-Origin"), "no Origin, no CORS header")

	// Without an allow-list there are no CORS headers at all, and without TLS
	// or the setting no HSTS.
	plain := setupWith(t, setupOptions{})
	resp = preflight(plain, "https://app.example")
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	_, _, h = plain.call(t, http.MethodGet, "/api/v1/task-types", tokViewer, "")
	require.Empty(t, h.Get("Strict-Transport-Security"))
	require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"))
}

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Sync() error { return nil }

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/problem"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// memAudit keeps entries in memory.
type memAudit struct {
	mu      sync.Mutex
	entries []audit.Entry
}

func (m *memAudit) Record(_ context.Context, e audit.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries = append(m.entries, e)
	return nil
}

func (m *memAudit) all() []audit.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]audit.Entry(nil), m.entries...)
}

// authFunc adapts a function to Authenticator.
type authFunc func(ctx context.Context, bearer string) (Principal, error)

func (f authFunc) Authenticate(ctx context.Context, b string) (Principal, error) { return f(ctx, b) }

const bootstrapKey = "bootstrap-key-0123456789-abcdef"

// echoPrincipal answers the principal it finds on the context.
var echoPrincipal = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, ok := FromContext(r.Context())
	if !ok {
		http.Error(w, "no principal", http.StatusTeapot)
		return
	}
	_ = json.NewEncoder(w).Encode(p)
})

func serve(t *testing.T, h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func requireProblem(t *testing.T, rec *httptest.ResponseRecorder, status int) problem.Body {
	t.Helper()
	require.Equal(t, status, rec.Code, rec.Body.String())
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	var p problem.Body
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	require.Equal(t, status, p.Status)
	require.NotEmpty(t, p.Title)
	require.Equal(t, problem.TypePrefix+problem.Kind(status), p.Type, "the one problem shape")
	require.NotEmpty(t, p.RequestID)
	require.Equal(t, p.RequestID, rec.Header().Get(problem.HeaderRequestID))
	return p
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	svc, err := NewService(ServiceOptions{BootstrapAdminKey: bootstrapKey})
	require.NoError(t, err)
	aud := &memAudit{}
	h := Middleware(svc, MiddlewareOptions{Audit: aud, Skip: SkipPaths("/healthz", "/readyz")})(echoPrincipal)
	monitor := Middleware(svc, MiddlewareOptions{Audit: aud, AllowBasic: true})(echoPrincipal)

	t.Run("bearer", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/tasks", nil)
		req.Header.Set("Authorization", "Bearer "+bootstrapKey)
		rec := serve(t, h, req)
		require.Equal(t, http.StatusOK, rec.Code)
		var p Principal
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
		require.Equal(t, Principal{ID: BootstrapPrincipalID, Name: "bootstrap admin", Role: Admin}, p)
	})
	t.Run("scheme is case-insensitive", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/tasks", nil)
		req.Header.Set("Authorization", "bearer "+bootstrapKey)
		require.Equal(t, http.StatusOK, serve(t, h, req).Code)
	})
	t.Run("skipped paths", func(t *testing.T) {
		rec := serve(t, h, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		require.Equal(t, http.StatusTeapot, rec.Code, "passed through without a principal")
	})
	t.Run("missing credentials: 401, not audited", func(t *testing.T) {
		before := len(aud.all())
		for _, hdr := range []string{"", "Bearer ", "Token abc", "Basic " + basic("u", bootstrapKey)} {
			req := httptest.NewRequest(http.MethodGet, "/api/v1/tasks", nil)
			if hdr != "" {
				req.Header.Set("Authorization", hdr)
			}
			rec := serve(t, h, req)
			requireProblem(t, rec, http.StatusUnauthorized)
			require.Equal(t, []string{`Bearer realm="taskforge"`}, rec.Header().Values("WWW-Authenticate"), hdr)
		}
		require.Len(t, aud.all(), before)
	})
	t.Run("invalid credential: 401 and an audit row without the secret", func(t *testing.T) {
		plain, prefix, _ := GenerateKey()
		req := httptest.NewRequest(http.MethodDelete, "/api/v1/tasks/task_1", nil)
		req.Header.Set("Authorization", "Bearer "+plain)
		req.Header.Set("X-Request-Id", "req-42")
		req.RemoteAddr = "198.51.100.9:4567"
		rec := serve(t, h, req)
		p := requireProblem(t, rec, http.StatusUnauthorized)
		require.Equal(t, "/api/v1/tasks/task_1", p.Instance)
		require.Equal(t, `Bearer realm="taskforge", error="invalid_token"`, rec.Header().Get("WWW-Authenticate"))
		require.NotContains(t, rec.Body.String(), plain)

		entries := aud.all()
		e := entries[len(entries)-1]
		require.Equal(t, audit.ActionAuthFailure, e.Action)
		require.Equal(t, audit.Failure, e.Outcome)
		require.Equal(t, "198.51.100.9", e.ClientIP)
		require.Equal(t, "req-42", e.RequestID)
		require.Equal(t, KindAPIKey, e.Details["credential"])
		require.Equal(t, prefix, e.Details["key_prefix"])
		require.Equal(t, "/api/v1/tasks/task_1", e.Details["path"])
		b, err := json.Marshal(e)
		require.NoError(t, err)
		require.NotContains(t, string(b), plain[len(prefix):], "the secret part is never recorded")
	})
	t.Run("basic only where allowed", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.SetBasicAuth("admin", bootstrapKey)
		require.Equal(t, http.StatusOK, serve(t, monitor, req).Code)

		rec := serve(t, monitor, httptest.NewRequest(http.MethodGet, "/", nil))
		requireProblem(t, rec, http.StatusUnauthorized)
		require.Contains(t, rec.Header().Values("WWW-Authenticate"), `Basic realm="taskforge", charset="UTF-8"`)

		req = httptest.NewRequest(http.MethodGet, "/", nil)
		req.SetBasicAuth("admin", "wrong-password")
		requireProblem(t, serve(t, monitor, req), http.StatusUnauthorized)
	})
}

func basic(user, pass string) string {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func TestMiddlewareBackendDown(t *testing.T) {
	t.Parallel()
	aud := &memAudit{}
	down := authFunc(func(context.Context, string) (Principal, error) {
		return Principal{}, fmt.Errorf("%w: database", ErrUnavailable)
	})
	req := httptest.NewRequest(http.MethodGet, "/api/v1/tasks", nil)
	req.Header.Set("Authorization", "Bearer tfk_whatever")
	rec := serve(t, Middleware(down, MiddlewareOptions{Audit: aud})(echoPrincipal), req)
	requireProblem(t, rec, http.StatusServiceUnavailable)
	require.Equal(t, "2", rec.Header().Get("Retry-After"))
	require.Empty(t, aud.all(), "an outage is not an authentication failure")
}

func TestRequireRole(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	cases := []struct {
		p      *Principal
		min    Role
		status int
	}{
		{nil, Viewer, http.StatusUnauthorized},
		{&Principal{ID: "a", Role: Viewer}, Admin, http.StatusForbidden},
		{&Principal{ID: "a", Role: Operator}, Admin, http.StatusForbidden},
		{&Principal{ID: "a", Role: "root"}, Viewer, http.StatusForbidden},
		{&Principal{ID: "a", Role: Admin}, Admin, http.StatusNoContent},
		{&Principal{ID: "a", Role: Operator}, Viewer, http.StatusNoContent},
	}
	for _, tc := range cases {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if tc.p != nil {
			req = req.WithContext(WithPrincipal(req.Context(), *tc.p))
		}
		rec := serve(t, RequireRole(tc.min)(ok), req)
		if tc.status == http.StatusNoContent {
			require.Equal(t, tc.status, rec.Code)
			continue
		}
		requireProblem(t, rec, tc.status)
	}
}

// TestServiceEndToEnd runs every credential kind through the middleware with
// a real key store and audit log.
func TestServiceEndToEnd(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ks, err := NewKeyStore(pg.DB)
	require.NoError(t, err)
	v, err := NewJWTVerifier(JWTConfig{Secret: []byte(testSecret)})
	require.NoError(t, err)
	svc, err := NewService(ServiceOptions{BootstrapAdminKey: bootstrapKey, Keys: ks, JWT: v})
	require.NoError(t, err)
	log, err := audit.New(pg.DB)
	require.NoError(t, err)
	h := Middleware(svc, MiddlewareOptions{Audit: log})(echoPrincipal)
	ctx := context.Background()

	key, err := ks.Create(ctx, NewKey{Name: "ops", Role: Operator, CreatedBy: BootstrapPrincipalID})
	require.NoError(t, err)
	tok := sign(t, jwt.SigningMethodHS256, "", []byte(testSecret),
		jwt.MapClaims{"sub": "carol", "role": "admin", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})

	call := func(cred string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/tasks", nil)
		req.Header.Set("Authorization", "Bearer "+cred)
		return serve(t, h, req)
	}
	principal := func(rec *httptest.ResponseRecorder) Principal {
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var p Principal
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
		return p
	}
	require.Equal(t, Admin, principal(call(bootstrapKey)).Role)
	require.Equal(t, Principal{ID: key.Key.ID, Name: "ops", Role: Operator}, principal(call(key.Plaintext)))
	require.Equal(t, Principal{ID: "jwt:carol", Name: "carol", Role: Admin}, principal(call(tok)))

	_, err = ks.Revoke(ctx, key.Key.ID)
	require.NoError(t, err)
	requireProblem(t, call(key.Plaintext), http.StatusUnauthorized)
	requireProblem(t, call("not-a-credential"), http.StatusUnauthorized)

	page, err := log.List(ctx, audit.Query{Action: audit.ActionAuthFailure})
	require.NoError(t, err)
	// Both refusals came from one address: one aggregated row (two if the
	// minute turned in between), with the first refusal's details.
	require.NotEmpty(t, page.Items)
	require.LessOrEqual(t, len(page.Items), 2)
	total := 0
	for _, it := range page.Items {
		total += it.Count
		require.NotContains(t, string(it.Details), key.Plaintext[len(key.Key.Prefix):])
	}
	require.Equal(t, 2, total)
	first := page.Items[len(page.Items)-1]
	require.Contains(t, string(first.Details), "revoked")
	require.Contains(t, string(first.Details), key.Key.Prefix)
}

func TestNewServiceRefusesShortBootstrapKey(t *testing.T) {
	t.Parallel()
	_, err := NewService(ServiceOptions{BootstrapAdminKey: "admin"})
	require.Error(t, err)
	s, err := NewService(ServiceOptions{})
	require.NoError(t, err)
	for _, cred := range []string{"", "x", "tfk_abc", "a.b.c", bootstrapKey} {
		_, err := s.Authenticate(context.Background(), cred)
		require.ErrorIs(t, err, ErrUnauthenticated, "%q", cred)
	}
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	viewer := Principal{ID: "v", Role: Viewer}
	operator := Principal{ID: "o", Role: Operator}
	admin := Principal{ID: "a", Role: Admin}
	nobody := Principal{ID: "n", Role: "root"}

	for _, tc := range []struct {
		p    Principal
		a    Action
		want bool
	}{
		{viewer, ReadTask, true}, {viewer, CreateTask, false}, {viewer, CancelTask, false},
		{operator, CreateTask, true}, {operator, CancelTask, true}, {operator, RetryTask, true},
		{operator, ManageAPIKeys, false}, {operator, ReadAudit, false}, {operator, ReadMetrics, false},
		{operator, UseMonitor, false}, {admin, ManageAPIKeys, true}, {admin, UseMonitor, true},
		{admin, "unknown:action", false}, {nobody, ReadTask, false},
	} {
		require.Equal(t, tc.want, Allowed(tc.p, tc.a), "%s %s", tc.p.Role, tc.a)
	}

	for _, tc := range []struct {
		p            Principal
		a            Action
		owner        string
		ok, override bool
	}{
		{viewer, ReadTask, "v", true, false},
		{viewer, ReadTask, "o", false, false},
		{viewer, CancelTask, "v", false, false},
		{operator, CancelTask, "o", true, false},
		{operator, CancelTask, "v", false, false},
		{operator, ReadTask, "", false, false},
		{admin, CancelTask, "o", true, true},
		{admin, CancelTask, "a", true, false},
		{admin, ReadTask, "", true, true},
	} {
		ok, override := AllowedOn(tc.p, tc.a, tc.owner)
		require.Equal(t, tc.ok, ok, "%s %s %q", tc.p.Role, tc.a, tc.owner)
		require.Equal(t, tc.override, override, "%s %s %q", tc.p.Role, tc.a, tc.owner)
	}

	maint, ok := tasks.Lookup(tasks.TypeCleanupOldData)
	require.True(t, ok)
	user, ok := tasks.Lookup(tasks.TypeRefreshPortfolio)
	require.True(t, ok)
	require.True(t, CanCreateType(operator, user))
	require.False(t, CanCreateType(operator, maint))
	require.True(t, CanCreateType(admin, maint))
	require.False(t, CanCreateType(viewer, user))
	require.False(t, CanCreateType(admin, tasks.Spec{Permission: "other"}))
}

// Every credential checker is an Authenticator; the audit log is a Recorder.
var (
	_ Authenticator  = (*Service)(nil)
	_ Authenticator  = (*KeyStore)(nil)
	_ Authenticator  = (*JWTVerifier)(nil)
	_ audit.Recorder = (*audit.Log)(nil)
)

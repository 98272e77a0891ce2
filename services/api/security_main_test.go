package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// writeConfig writes a YAML configuration file for run.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "taskforge.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yaml), 0o600))
	return p
}

// TestRunRefusesWeakJWTSecretOutsideDevelopment checks that the API validates
// its configuration before anything else: outside development an empty or
// example JWT secret stops the start, naming the key but not the value.
func TestRunRefusesWeakJWTSecretOutsideDevelopment(t *testing.T) {
	t.Parallel()
	for name, secretLine := range map[string]string{
		"example": "jwt_secret: " + config.ExampleJWTSecret,
		"empty":   `jwt_secret: ""`,
		"short":   "jwt_secret: too-short-secret",
	} {
		path := writeConfig(t, "env: production\nauth:\n  "+secretLine+"\n")
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"--config", path}, &stdout, &stderr)
		require.Error(t, err, name)
		require.Contains(t, err.Error(), "auth.jwt_secret", name)
		require.NotContains(t, err.Error(), config.ExampleJWTSecret, name)
	}
	// Development accepts the example secret (and would go on to connect).
	path := writeConfig(t, "env: development\nauth:\n  jwt_secret: "+config.ExampleJWTSecret+"\n")
	var stdout bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"--config", path, "--print-config"}, &stdout, &bytes.Buffer{}))
}

// TestAPIKeyCommand creates, lists and revokes a key with the CLI, and the
// changes are audited.
func TestAPIKeyCommand(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	path := writeConfig(t, "database:\n  url: "+pg.URL+"\n")
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"--config", path, "apikey"}, args...), &out, &bytes.Buffer{})
		return out.String(), err
	}
	out, err := cli("create", "--name", "ci", "--role", "operator", "--expires-in", "720h")
	require.NoError(t, err)
	key := regexp.MustCompile(`key:\s+(tfk_\S+)`).FindStringSubmatch(out)
	require.Len(t, key, 2, out)
	id := regexp.MustCompile(`id:\s+(key_\S+)`).FindStringSubmatch(out)[1]
	keys, err := auth.NewKeyStore(pg.DB)
	require.NoError(t, err)
	p, err := keys.Authenticate(context.Background(), key[1])
	require.NoError(t, err)
	require.Equal(t, auth.Operator, p.Role)
	row, err := keys.Get(context.Background(), id)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(720*time.Hour), *row.ExpiresAt, time.Minute)

	out, err = cli("list")
	require.NoError(t, err)
	require.Contains(t, out, id)
	require.Contains(t, out, "active")
	require.NotContains(t, out, key[1][len(row.Prefix):], "the secret is never listed")

	out, err = cli("revoke", id)
	require.NoError(t, err)
	require.Contains(t, out, "revoked "+id)
	_, err = keys.Authenticate(context.Background(), key[1])
	require.ErrorIs(t, err, auth.ErrUnauthenticated)
	out, err = cli("list")
	require.NoError(t, err)
	require.Contains(t, out, "revoked")

	for _, bad := range [][]string{{}, {"create", "--name", "x", "--role", "root"}, {"create", "--role", "viewer"},
		{"revoke"}, {"revoke", "key_01hz3k8c2m4n5p6q7r8s9t0v1w"}, {"rotate"}, {"create", "--name", "x", "--role", "viewer", "--expires-in", "soon"}} {
		_, err := cli(bad...)
		require.Error(t, err, "%v", bad)
	}
	var rows []store.AuditEntry
	require.NoError(t, pg.DB.Order("id").Find(&rows).Error)
	require.Len(t, rows, 2)
	require.Equal(t, audit.ActionAPIKeyCreate, rows[0].Action)
	require.Equal(t, audit.ActionAPIKeyRevoke, rows[1].Action)
	for _, r := range rows {
		require.Equal(t, "cli", r.Actor)
		require.Equal(t, id, r.ResourceID)
	}
}

// apiProcess is a running API binary.
type apiProcess struct {
	base string
	*testenv.Process
}

// startAPI runs the binary at bin with the configuration file at path on a
// free port.
func startAPI(t *testing.T, bin, path string) apiProcess {
	t.Helper()
	addr := testenv.FreeAddr(t)
	p := testenv.StartProcess(t, bin, []string{"--config", path}, testenv.Environ("TASKFORGE_API_ADDR="+addr))
	base := "http://" + addr
	p.WaitHTTP(t, base+"/readyz", 30*time.Second)
	return apiProcess{base: base, Process: p}
}

// TestTwoAPIProcessesShareRateLimitsAndKeys starts two API binaries in
// production mode on one PostgreSQL and one Redis: a caller's rate limit is
// one budget across both, a key revoked through one is refused by the other as
// soon as PostgreSQL's announcement reaches it (each caches accepted keys,
// auth.key_cache_ttl 30s by default), oversized headers are refused, and neither logs a credential.
func TestTwoAPIProcessesShareRateLimitsAndKeys(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	rd := testenv.NewRedis(t)
	bin := testenv.BuildBinary(t, ".")

	const bootstrap = "bootstrap-key-for-two-processes-0123"
	const burst = 8
	path := writeConfig(t, fmt.Sprintf(`env: production
log: {level: info, format: json}
database: {url: %q}
redis: {addr: %q, db: %d}
auth:
  bootstrap_admin_key: %s
  jwt_secret: a-production-grade-jwt-secret-0123456789
  jwt_issuer: https://idp.test
  jwt_audience: taskforge
crypto:
  keys: {k1: AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=}
  active_key: k1
worker: {callback_secret: a-production-grade-callback-secret-0123}
smtp: {tls: none}
storage: {local_dir: %q, signing_key: a-production-grade-signing-key-0123}
ratelimit:
  per_role:
    viewer: {rps: 0.01, burst: %d}
`, pg.URL, rd.Addr, rd.DB, bootstrap, t.TempDir(), burst))
	a := startAPI(t, bin, path)
	b := startAPI(t, bin, path)

	do := func(base, method, p, token, body string, header map[string]string) (int, string) {
		t.Helper()
		var rd *strings.Reader
		if body != "" {
			rd = strings.NewReader(body)
		} else {
			rd = strings.NewReader("")
		}
		req, err := http.NewRequest(method, base+p, rd)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out bytes.Buffer
		_, _ = out.ReadFrom(resp.Body)
		return resp.StatusCode, out.String()
	}
	code, body := do(a.base, http.MethodPost, "/api/v1/api-keys", bootstrap, `{"name":"dash","role":"viewer"}`, nil)
	require.Equal(t, http.StatusCreated, code, body)
	viewer := regexp.MustCompile(`"key":"([^"]+)"`).FindStringSubmatch(body)[1]
	keyID := regexp.MustCompile(`"id":"([^"]+)"`).FindStringSubmatch(body)[1]

	// One budget across both processes.
	allowed := 0
	for i := range 3 * burst {
		base := a.base
		if i%2 == 1 {
			base = b.base
		}
		code, body := do(base, http.MethodGet, "/api/v1/task-types", viewer, "", nil)
		switch code {
		case http.StatusOK:
			allowed++
		case http.StatusTooManyRequests:
			require.Contains(t, body, "rate limit")
		default:
			t.Fatalf("status %d: %s", code, body)
		}
	}
	require.Equal(t, burst, allowed)
	t.Logf("%d of %d requests allowed across two processes (burst %d)", allowed, 3*burst, burst)

	// Revoked through b, refused by a (which has the key cached) within a
	// moment, far inside the cache's 30 s.
	code, _ = do(b.base, http.MethodDelete, "/api/v1/api-keys/"+keyID, bootstrap, "", nil)
	require.Equal(t, http.StatusOK, code)
	revoked := time.Now()
	require.Eventually(t, func() bool {
		code, _ := do(a.base, http.MethodGet, "/api/v1/task-types", viewer, "", nil) // 429 while accepted: its budget is spent
		return code == http.StatusUnauthorized
	}, 5*time.Second, 5*time.Millisecond, "the revoked key is still accepted by the other process")
	t.Logf("revoked through one process, refused by the other after %s", time.Since(revoked))

	// Oversized headers are refused by the server; the limit leaves room for
	// any token the API accepts.
	code, _ = do(a.base, http.MethodGet, "/api/v1/task-types", bootstrap, "", map[string]string{"X-Padding": strings.Repeat("a", 100<<10)})
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, code)
	code, _ = do(a.base, http.MethodGet, "/api/v1/task-types", bootstrap, "", map[string]string{"X-Padding": strings.Repeat("a", auth.MaxTokenBytes)})
	require.Equal(t, http.StatusOK, code)

	// A secret param is accepted and never logged; nor is any credential.
	const canary = "binary-canary-secret-61f0"
	code, body = do(a.base, http.MethodPost, "/api/v1/tasks", bootstrap,
		`{"type":"webhook_callback","params":{"url":"https://hooks.example/x","secret":"`+canary+`"}}`, nil)
	require.Equal(t, http.StatusCreated, code, body)
	for _, p := range []apiProcess{a, b} {
		out := p.Output()
		require.Contains(t, out, `"msg":"request"`)
		require.NotContains(t, out, canary)
		require.NotContains(t, out, bootstrap)
		require.NotContains(t, out, viewer)
		require.NotContains(t, out, "DEVELOPMENT KEY", "production uses the configured keys")
	}
}

package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/result/httpresult"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestResultRoutes drives the result routes through the Echo router, with every
// response validated against openapi.yaml: a JSON result, a 302 to a signed
// link that downloads without a token, ownership, and an expired link.
func TestResultRoutes(t *testing.T) {
	t.Parallel()
	_, router := contract(t)
	pg := testenv.NewPostgres(t)
	var handler http.Handler
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(hs.Close)
	local, err := result.NewLocal(t.TempDir())
	require.NoError(t, err)
	signer, err := result.NewSigner([]byte("api-test-signing-key-0123456789ab"), hs.URL, time.Minute)
	require.NoError(t, err)
	results, err := result.New(pg.DB, local, result.Options{Signer: signer})
	require.NoError(t, err)
	routes, err := httpresult.New(pg.DB, results, zap.NewNop())
	require.NoError(t, err)
	srv, err := New(Options{Tasks: nonNilService(t), Auth: principals, Checker: nonNilChecker(), Log: nopLog(),
		OpenAPI: openapiDoc(t), Results: routes})
	require.NoError(t, err)
	handler = srv

	for _, tk := range []struct{ id, result string }{{"task_json", `{"rows": 3}`}, {"task_file", `{"result_id": "x"}`}} {
		require.NoError(t, pg.DB.Exec(`INSERT INTO tasks (id, type, status, priority, max_retries, retry_policy, timeout_seconds, created_by, result)
			VALUES (?, 'generate_reports', 'completed', 'low', 3, '{}', 60, 'key_op', ?)`, tk.id, tk.result).Error)
	}
	_, err = results.Put(context.Background(), "task_file", "report.csv", "text/csv", strings.NewReader("a,b\n1,2\n"))
	require.NoError(t, err)

	noFollow := &http.Client{
		Transport:     validating{t: t, router: router, next: http.DefaultTransport},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	get := func(url, token string) (*http.Response, string) {
		t.Helper()
		if strings.HasPrefix(url, "/") {
			url = hs.URL + url
		}
		req, err := http.NewRequest(http.MethodGet, url, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := noFollow.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(body)
	}

	resp, body := get("/api/v1/tasks/task_json/result", tokOp)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.JSONEq(t, `{"task_id":"task_json","status":"completed","result":{"rows":3}}`, body)
	resp, _ = get("/api/v1/tasks/task_json/result", tokOp2)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = get("/api/v1/tasks/task_json/result", "")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	resp, _ = get("/api/v1/tasks/task_file/result", tokAdmin)
	require.Equal(t, http.StatusFound, resp.StatusCode)
	link := resp.Header.Get("Location")
	resp, body = get(link, "")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "a,b\n1,2\n", body)

	resp, _ = get(strings.Replace(link, "sig=", "sig=x", 1), "")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	res, err := results.ForTask(context.Background(), "task_file")
	require.NoError(t, err)
	expired, _ := signer.LinkFor(res[0].ID, time.Now().Add(-time.Minute))
	resp, _ = get(expired, "")
	require.Equal(t, http.StatusGone, resp.StatusCode)
}

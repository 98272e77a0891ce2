package httpresult_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/result/httpresult"
	"github.com/taskforge/taskforge/pkg/testenv"
)

var principals = map[string]auth.Principal{
	"admin": {ID: "key_admin", Role: auth.Admin},
	"alice": {ID: "key_alice", Role: auth.Operator},
	"bob":   {ID: "key_bob", Role: auth.Operator},
}

type bundle struct {
	pg      testenv.Postgres
	results *result.Store
	srv     *httptest.Server
	client  *http.Client
}

// serve serves the result routes of a store on backend with cache (nil:
// none) behind a stand-in authentication middleware that takes the caller's
// name from the X-Test-Caller header.
func serve(t testing.TB, pg testenv.Postgres, backend result.Backend, cache *result.Cache) (*httptest.Server, *result.Store) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := principals[r.Header.Get("X-Test-Caller")]; ok {
			r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	signer, err := result.NewSigner([]byte("http-test-signing-key-0123456789"), srv.URL, time.Minute)
	require.NoError(t, err)
	st, err := result.New(pg.DB, backend, result.Options{TTL: time.Hour, Signer: signer, Cache: cache})
	require.NoError(t, err)
	h, err := httpresult.New(pg.DB, st, zap.NewNop())
	require.NoError(t, err)
	h.Register(mux)
	return srv, st
}

// setup serves the result routes with three tasks of alice's.
func setup(t *testing.T, backend func(t *testing.T) result.Backend) bundle {
	t.Helper()
	pg := testenv.NewPostgres(t)
	srv, st := serve(t, pg, backend(t), nil)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tk := range []struct{ id, owner, result string }{
		{"task_json", "key_alice", `{"assets_updated": 3, "note": "<b>"}`},
		{"task_file", "key_alice", `{"result_id": "see file"}`},
		{"task_none", "key_alice", ""},
	} {
		var res any
		if tk.result != "" {
			res = tk.result
		}
		require.NoError(t, pg.DB.Exec(`INSERT INTO tasks (id, type, status, priority, max_retries, retry_policy, timeout_seconds, created_by, result)
			VALUES (?, 'generate_reports', 'completed', 'low', 3, '{}', 60, ?, ?)`, tk.id, tk.owner, res).Error)
	}
	return bundle{pg: pg, results: st, srv: srv, client: client}
}

func localBackend(t *testing.T) result.Backend {
	l, err := result.NewLocal(t.TempDir())
	require.NoError(t, err)
	return l
}

func (b bundle) get(t *testing.T, rawURL, caller string) (*http.Response, string) {
	t.Helper()
	if strings.HasPrefix(rawURL, "/") {
		rawURL = b.srv.URL + rawURL
	}
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	require.NoError(t, err)
	if caller != "" {
		req.Header.Set("X-Test-Caller", caller)
	}
	resp, err := b.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func TestTaskResultRoute(t *testing.T) {
	t.Parallel()
	b := setup(t, localBackend)
	ctx := context.Background()
	csv := "symbol,close\nAAA,101.5\n"
	_, err := b.results.Put(ctx, "task_file", "old.csv", "text/csv", strings.NewReader("old"))
	require.NoError(t, err)
	file, err := b.results.Put(ctx, "task_file", "report.csv", "text/csv; charset=utf-8", strings.NewReader(csv))
	require.NoError(t, err)

	cases := []struct {
		name, path, caller string
		status             int
	}{
		{"json for owner", "/api/v1/tasks/task_json/result", "alice", 200},
		{"json for admin", "/api/v1/tasks/task_json/result", "admin", 200},
		{"hidden from others", "/api/v1/tasks/task_json/result", "bob", 404},
		{"file hidden from others", "/api/v1/tasks/task_file/result", "bob", 404},
		{"unauthenticated", "/api/v1/tasks/task_json/result", "", 401},
		{"unknown task", "/api/v1/tasks/task_nope/result", "admin", 404},
		{"no result", "/api/v1/tasks/task_none/result", "alice", 404},
		{"unknown file name", "/api/v1/tasks/task_file/result?name=nope.csv", "alice", 404},
		{"file redirect", "/api/v1/tasks/task_file/result", "alice", 302},
	}
	for _, tc := range cases {
		resp, body := b.get(t, tc.path, tc.caller)
		require.Equal(t, tc.status, resp.StatusCode, "%s: %s", tc.name, body)
		if tc.status >= 400 {
			require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), tc.name)
		}
	}

	resp, body := b.get(t, "/api/v1/tasks/task_json/result", "alice")
	var got struct {
		TaskID string         `json:"task_id"`
		Status string         `json:"status"`
		Result map[string]any `json:"result"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Equal(t, "task_json", got.TaskID)
	require.Equal(t, "completed", got.Status)
	require.EqualValues(t, 3, got.Result["assets_updated"])
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	// The newest file is the default; its signed link downloads it.
	resp, _ = b.get(t, "/api/v1/tasks/task_file/result", "alice")
	loc := resp.Header.Get("Location")
	require.True(t, strings.HasPrefix(loc, b.srv.URL+"/api/v1/results/"+file.ID+"/download?"), loc)
	resp, body = b.get(t, loc, "") // no credentials: the signature is enough
	require.Equal(t, 200, resp.StatusCode, body)
	require.Equal(t, csv, body)
	require.Equal(t, "text/csv; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Equal(t, `attachment; filename=report.csv`, resp.Header.Get("Content-Disposition"))
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))

	// ?name= picks another file.
	resp, _ = b.get(t, "/api/v1/tasks/task_file/result?name=old.csv", "admin")
	require.Equal(t, 302, resp.StatusCode)
	_, body = b.get(t, resp.Header.Get("Location"), "")
	require.Equal(t, "old", body)
}

func TestDownloadLinks(t *testing.T) {
	t.Parallel()
	b := setup(t, localBackend)
	ctx := context.Background()
	res, err := b.results.Put(ctx, "task_file", `../../"evil"\name.html`, "text/html", strings.NewReader("<script>x</script>"))
	require.NoError(t, err)
	link, _ := b.results.Signer().Link(res)
	u, err := url.Parse(link)
	require.NoError(t, err)
	q := u.Query()

	resp, body := b.get(t, link, "")
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "<script>x</script>", body)
	require.Equal(t, `attachment; filename=name.html`, resp.Header.Get("Content-Disposition"))
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "sandbox")

	expired, _ := b.results.Signer().LinkFor(res.ID, time.Now().Add(-time.Second))
	otherID, _ := url.Parse(link)
	otherID.Path = "/api/v1/results/res_other/download"
	cases := []struct {
		name, link string
		status     int
	}{
		{"expired link", expired, http.StatusGone},
		{"bad signature", b.srv.URL + u.Path + "?exp=" + q.Get("exp") + "&sig=AAAA" + q.Get("sig")[4:], http.StatusForbidden},
		{"no signature", b.srv.URL + u.Path, http.StatusForbidden},
		{"longer expiry", b.srv.URL + u.Path + "?exp=" + q.Get("exp") + "0&sig=" + q.Get("sig"), http.StatusForbidden},
		{"signature of another result", otherID.String(), http.StatusForbidden},
		{"traversal in id", b.srv.URL + "/api/v1/results/..%2F..%2Fetc%2Fpasswd/download?" + q.Encode(), http.StatusForbidden},
	}
	for _, tc := range cases {
		resp, body := b.get(t, tc.link, "")
		require.Equal(t, tc.status, resp.StatusCode, "%s: %s", tc.name, body)
	}

	// A valid link to a deleted or expired result is gone.
	require.NoError(t, b.pg.DB.Exec(`UPDATE results SET expires_at = now() - interval '1 second' WHERE id = ?`, res.ID).Error)
	resp, _ = b.get(t, link, "")
	require.Equal(t, http.StatusGone, resp.StatusCode)
	require.NoError(t, b.results.Delete(ctx, res))
	resp, _ = b.get(t, link, "")
	require.Equal(t, http.StatusGone, resp.StatusCode)
}

func TestTaskResultRedirectsToS3(t *testing.T) {
	t.Parallel()
	var s3URL string
	b := setup(t, func(t *testing.T) result.Backend {
		mem := s3mem.New()
		require.NoError(t, mem.CreateBucket("results"))
		srv := httptest.NewServer(gofakes3.New(mem).Server())
		t.Cleanup(srv.Close)
		s3URL = srv.URL
		be, err := result.NewS3(context.Background(), result.S3Options{
			Endpoint: srv.URL, Bucket: "results", AccessKey: "AKIDTEST", SecretKey: "s3-secret-never-shown",
			UsePathStyle: true, SpoolDir: t.TempDir(),
		})
		require.NoError(t, err)
		return be
	})
	payload := strings.Repeat("backup bytes ", 1000)
	_, err := b.results.Put(context.Background(), "task_file", "backup.jsonl.gz", "application/gzip", strings.NewReader(payload))
	require.NoError(t, err)
	resp, _ := b.get(t, "/api/v1/tasks/task_file/result", "alice")
	require.Equal(t, http.StatusFound, resp.StatusCode)
	loc := resp.Header.Get("Location")
	require.True(t, strings.HasPrefix(loc, s3URL+"/results/"), loc)
	require.Contains(t, loc, "X-Amz-Signature=")
	require.NotContains(t, loc, "s3-secret-never-shown")
	resp, body := b.get(t, loc, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, payload, body)
}

package dashboard_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/health"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/monitor/internal/dashboard"
)

type bundle struct {
	redis testenv.Redis
	url   string
}

func setup(t *testing.T, o dashboard.Options) bundle {
	t.Helper()
	r := testenv.NewRedis(t)
	require.NoError(t, queue.Register(context.Background(), r.Client))
	reg := prometheus.NewRegistry()
	o.RedisOpt = r.Opt()
	o.Gatherer = reg
	o.Checker = health.NewChecker(map[string]health.Check{
		"redis": func(ctx context.Context) error { return r.Client.Ping(ctx).Err() },
	}, reg)
	d, err := dashboard.New(o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return bundle{redis: r, url: srv.URL}
}

func do(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, string(body)
}

func TestServesAsynqmonWithTheFourQueues(t *testing.T) {
	t.Parallel()
	b := setup(t, dashboard.Options{AllowAnonymous: true})

	for _, path := range []string{"/monitoring", "/monitoring/", "/monitoring/queues/critical"} {
		res, body := do(t, http.MethodGet, b.url+path)
		require.Equal(t, http.StatusOK, res.StatusCode, path)
		require.Contains(t, res.Header.Get("Content-Type"), "text/html", path)
		require.Contains(t, body, "<html", path)
		require.Contains(t, body, `FLAG_ROOT_PATH="\/monitoring"`, "%s: the UI is rooted at /monitoring", path)
		require.Equal(t, "DENY", res.Header.Get("X-Frame-Options"))
	}

	// The page's script is served too.
	_, index := do(t, http.MethodGet, b.url+"/monitoring/")
	m := regexp.MustCompile(`src="(/monitoring/static/js/main\.[0-9a-f]+\.chunk\.js)"`).FindStringSubmatch(index)
	require.Len(t, m, 2, "index names its script")
	res, body := do(t, http.MethodGet, b.url+m[1])
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, res.Header.Get("Content-Type"), "javascript")
	require.NotEmpty(t, body)

	res, body = do(t, http.MethodGet, b.url+"/monitoring/api/queues")
	require.Equal(t, http.StatusOK, res.StatusCode)
	var got struct {
		Queues []struct {
			Queue string `json:"queue"`
		} `json:"queues"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	var names []string
	for _, q := range got.Queues {
		names = append(names, q.Queue)
	}
	require.ElementsMatch(t, queue.Queues, names)

	// The root redirects to the UI.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r2, err := client.Get(b.url + "/")
	require.NoError(t, err)
	r2.Body.Close()
	require.Equal(t, http.StatusFound, r2.StatusCode)
	require.Equal(t, "/monitoring/", r2.Header.Get("Location"))
}

func TestHealthAndMetricsAreServed(t *testing.T) {
	t.Parallel()
	// Without authentication outside development, health and metrics stay open.
	b := setup(t, dashboard.Options{})
	// In order: /readyz runs the checks that set taskforge_dependency_up.
	for _, tc := range []struct{ path, want string }{
		{"/healthz", `"status":"ok"`},
		{"/readyz", `"redis":"ok"`},
		{"/metrics", `taskforge_dependency_up{dependency="redis"} 1`},
	} {
		res, body := do(t, http.MethodGet, b.url+tc.path)
		require.Equal(t, http.StatusOK, res.StatusCode, tc.path)
		require.Contains(t, body, tc.want, tc.path)
	}
}

func TestReadOnlyRefusesChanges(t *testing.T) {
	t.Parallel()
	b := setup(t, dashboard.Options{AllowAnonymous: true, ReadOnly: true})
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/monitoring/api/queues/critical:pause"},
		{http.MethodDelete, "/monitoring/api/queues/low"},
		{http.MethodPost, "/monitoring/api/queues/high/archived_tasks:run_all"},
		{http.MethodPut, "/monitoring/"},
	} {
		res, body := do(t, tc.method, b.url+tc.path)
		require.Equal(t, http.StatusMethodNotAllowed, res.StatusCode, tc.path)
		require.Equal(t, "application/problem+json", res.Header.Get("Content-Type"))
		require.Contains(t, body, "read-only")
	}
	res, _ := do(t, http.MethodGet, b.url+"/monitoring/api/queues")
	require.Equal(t, http.StatusOK, res.StatusCode)
	_, index := do(t, http.MethodGet, b.url+"/monitoring/")
	require.Contains(t, index, `FLAG_READ_ONLY="true"`, "the UI hides its buttons")
	paused, err := b.redis.Client.Exists(context.Background(), "asynq:{critical}:paused").Result()
	require.NoError(t, err)
	require.Zero(t, paused, "the pause request must not have reached Asynq")
}

func TestWritableWhenNotReadOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, dashboard.Options{AllowAnonymous: true})
	res, _ := do(t, http.MethodPost, b.url+"/monitoring/api/queues/critical:pause")
	require.Equal(t, http.StatusNoContent, res.StatusCode)
	paused, err := b.redis.Client.Exists(context.Background(), "asynq:{critical}:paused").Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), paused)
}

func TestUIRefusedWithoutAuthenticationOutsideDevelopment(t *testing.T) {
	t.Parallel()
	b := setup(t, dashboard.Options{})
	for _, path := range []string{"/monitoring", "/monitoring/", "/monitoring/api/queues"} {
		res, body := do(t, http.MethodGet, b.url+path)
		require.Equal(t, http.StatusForbidden, res.StatusCode, path)
		require.Contains(t, body, "authentication")
		require.NotContains(t, body, "critical")
	}
}

func TestProtectWrapsOnlyTheUI(t *testing.T) {
	t.Parallel()
	protect := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer admin" {
				w.Header().Set("WWW-Authenticate", "Bearer")
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	b := setup(t, dashboard.Options{Protect: protect})

	res, _ := do(t, http.MethodGet, b.url+"/monitoring/api/queues")
	require.Equal(t, http.StatusUnauthorized, res.StatusCode)

	req, err := http.NewRequest(http.MethodGet, b.url+"/monitoring/api/queues", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer admin")
	res2, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(res2.Body)
	res2.Body.Close()
	require.Equal(t, http.StatusOK, res2.StatusCode)
	require.True(t, strings.Contains(string(body), `"critical"`))

	res, _ = do(t, http.MethodGet, b.url+"/readyz")
	require.Equal(t, http.StatusOK, res.StatusCode, "probes need no credentials")
}

func TestNewRequiresItsDependencies(t *testing.T) {
	t.Parallel()
	_, err := dashboard.New(dashboard.Options{})
	require.Error(t, err)
}

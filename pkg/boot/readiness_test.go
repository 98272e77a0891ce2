package boot_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/boot"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/health"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestReadinessFollowsOutages stops and starts a Redis and a PostgreSQL of the
// test's own under the readiness checks every service builds with boot.Open:
// /readyz answers 503 naming the dependency that is down and 200 once it is back.
func TestReadinessFollowsOutages(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedisServer(t)
	pg := testenv.StartPostgresServer(t)

	cfg := config.Defaults()
	cfg.Redis.Addr = rs.Addr
	cfg.Redis.DialTimeout = 500 * time.Millisecond
	cfg.Database.URL = pg.URL
	require.NoError(t, cfg.Validate())
	deps, err := boot.Open(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = deps.Close() })
	srv := httptest.NewServer(deps.Checker.Mux(deps.Registry))
	t.Cleanup(srv.Close)

	readyz := func(c require.TestingT) (int, health.Status) {
		res, err := http.Get(srv.URL + "/readyz")
		require.NoError(c, err)
		defer res.Body.Close()
		var st health.Status
		require.NoError(c, json.NewDecoder(res.Body).Decode(&st))
		return res.StatusCode, st
	}
	waitFor := func(code int, down []string) health.Status {
		t.Helper()
		var last health.Status
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			gotCode, st := readyz(c)
			last = st
			assert.Equal(c, code, gotCode, "%+v", st)
			assert.Equal(c, strings.Join(down, ","), strings.Join(st.Down, ","), "%+v", st)
		}, 30*time.Second, 100*time.Millisecond)
		return last
	}

	waitFor(http.StatusOK, nil)

	steps := []struct {
		name        string
		stop, start func()
	}{
		{"redis", rs.Stop, rs.Start},
		{"postgres", pg.Stop, pg.Start},
	}
	for _, s := range steps {
		s.stop()
		st := waitFor(http.StatusServiceUnavailable, []string{s.name})
		require.Equal(t, "unavailable", st.Status)
		require.True(t, strings.HasPrefix(st.Checks[s.name], "down: "), st.Checks[s.name])
		require.Contains(t, metrics(t, srv.URL), `taskforge_dependency_up{dependency="`+s.name+`"} 0`)

		s.start()
		st = waitFor(http.StatusOK, nil)
		require.Equal(t, "ok", st.Checks[s.name])
		require.Contains(t, metrics(t, srv.URL), `taskforge_dependency_up{dependency="`+s.name+`"} 1`)
	}

	// Both down at once: both are named.
	rs.Stop()
	pg.Stop()
	waitFor(http.StatusServiceUnavailable, []string{"postgres", "redis"})
	rs.Start()
	pg.Start()
	waitFor(http.StatusOK, nil)
}

func metrics(t *testing.T, base string) string {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(b)
}

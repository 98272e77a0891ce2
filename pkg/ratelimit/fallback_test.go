package ratelimit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/testenv"
)

func TestLocalLimiter(t *testing.T) {
	t.Parallel()
	base := time.Unix(1_700_000_000, 0)
	l := newLocalLimiter(2)
	// A burst of 3 at 1 request per second.
	for i := range 3 {
		res := l.check("a", 1, 3, base)
		require.True(t, res.Allowed, "request %d", i)
		require.Equal(t, 2-i, res.Remaining)
	}
	res := l.check("a", 1, 3, base)
	require.False(t, res.Allowed)
	require.Equal(t, time.Second, res.RetryAfter)
	require.True(t, l.check("a", 1, 3, base.Add(time.Second)).Allowed, "one request a second later")
	require.False(t, l.check("a", 1, 3, base.Add(time.Second)).Allowed)

	// The table holds two keys: a third caller inside its burst shares the
	// overflow budget, and full budgets are swept to make room.
	require.True(t, l.check("b", 1, 1, base).Allowed)
	require.True(t, l.check("c", 1, 1, base).Allowed, "first on the overflow budget")
	require.False(t, l.check("d", 1, 1, base).Allowed, "the overflow budget is shared")
	later := base.Add(time.Hour)
	require.True(t, l.check("d", 1, 1, later).Allowed, "after a sweep d has its own budget")
	require.False(t, l.check("d", 1, 1, later).Allowed)
	require.True(t, l.check("e", 1, 1, later).Allowed)
	require.True(t, l.check("x", 0, 1, later).Allowed, "an invalid limit does not limit")
}

// TestMiddlewareRedisFrozen: with Redis suspended, requests are judged by the
// replica's local limits within the limiter's own deadline (the reads behind
// it keep working), callers and addresses are still limited, the fallback is
// logged once and counted, and shared limits return after Redis does.
func TestMiddlewareRedisFrozen(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedisServer(t)
	rc := config.Defaults().Redis
	rc.Addr = srv.Addr
	opt, err := queue.RedisOpt(rc)
	require.NoError(t, err)
	client := queue.Client(opt)
	t.Cleanup(func() { _ = client.Close() })
	reg := prometheus.NewRegistry()
	l, err := NewWithOptions(client, Options{Timeout: 100 * time.Millisecond, LocalFor: 300 * time.Millisecond, Registerer: reg})
	require.NoError(t, err)
	core, logs := observer.New(zap.InfoLevel)
	cfg := config.RateLimitConfig{Enabled: true, PerRole: map[string]config.RateLimit{"viewer": {RPS: 0.01, Burst: 3}}}
	mw, err := Middleware(l, MiddlewareOptions{Config: cfg, Anonymous: config.RateLimit{RPS: 0.01, Burst: 2}, Log: zap.New(core)})
	require.NoError(t, err)
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	call := func(p *auth.Principal, remote string) int {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/tasks", nil)
		req.RemoteAddr = remote
		if p != nil {
			req = req.WithContext(auth.WithPrincipal(req.Context(), *p))
		}
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, req)
		require.Less(t, time.Since(start), 2*time.Second, "a frozen Redis must not hold a request")
		return rec.Code
	}
	viewer := &auth.Principal{ID: "key_v", Role: auth.Viewer}

	require.Equal(t, http.StatusNoContent, call(viewer, "192.0.2.1:1"), "shared limit, Redis up")
	require.False(t, l.Degraded())

	srv.Freeze()
	t.Cleanup(srv.Thaw)
	// The local budget is the caller's whole burst (this replica had not seen
	// the request Redis counted), then it refuses.
	for i := range 3 {
		require.Equal(t, http.StatusNoContent, call(viewer, "192.0.2.1:1"), "local request %d", i)
	}
	require.True(t, l.Degraded())
	require.Equal(t, http.StatusTooManyRequests, call(viewer, "192.0.2.1:1"), "still limited per caller")
	// The address guard before authentication is local too.
	require.Equal(t, http.StatusNoContent, call(nil, "198.51.100.7:1"))
	require.Equal(t, http.StatusNoContent, call(nil, "198.51.100.7:2"))
	require.Equal(t, http.StatusTooManyRequests, call(nil, "198.51.100.7:3"), "still limited per address")
	// Past LocalFor a request probes Redis again (and falls back again).
	require.Eventually(t, func() bool {
		return call(nil, "198.51.100.8:1") == http.StatusNoContent &&
			testutil.ToFloat64(l.localDecisions) >= 7 && len(logs.FilterMessageSnippet("Redis unavailable").All()) >= 1
	}, 5*time.Second, 50*time.Millisecond)
	require.Len(t, logs.FilterMessageSnippet("Redis unavailable").All(), 1, "logged once, not per request")
	require.Equal(t, 1.0, testutil.ToFloat64(l.degradedGauge))

	srv.Thaw()
	require.Eventually(t, func() bool {
		call(nil, "198.51.100.9:1")
		return !l.Degraded()
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, 0.0, testutil.ToFloat64(l.degradedGauge))
	require.Len(t, logs.FilterMessageSnippet("Redis is back").All(), 1)
	// Shared limits again: Redis counted the request before the freeze and
	// perhaps the one whose reply timed out (Redis runs what it was sent once
	// it resumes), not the local ones: key_v has one or two of its 3 left.
	require.Equal(t, http.StatusNoContent, call(viewer, "192.0.2.1:1"))
	codes := []int{call(viewer, "192.0.2.1:1"), call(viewer, "192.0.2.1:1")}
	require.Contains(t, codes, http.StatusTooManyRequests, "the shared budget is in force")
}

// TestMiddlewareLocalNeverCallsRedis: the address guard (Local) limits by
// this replica's memory and sends nothing to Redis, not even while Redis is
// healthy; a second guard (another replica) has a budget of its own.
func TestMiddlewareLocalNeverCallsRedis(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	reg := prometheus.NewRegistry()
	l, err := NewWithOptions(r.Client, Options{Registerer: reg})
	require.NoError(t, err)
	opts := MiddlewareOptions{Config: config.RateLimitConfig{Enabled: true}, Anonymous: config.RateLimit{RPS: 0.01, Burst: 2}, Local: true}
	replica := func() http.Handler {
		mw, err := Middleware(l, opts)
		require.NoError(t, err)
		return mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	}
	call := func(h http.Handler) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = "192.0.2.7:4000"
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	a, b := replica(), replica()
	require.Equal(t, http.StatusNoContent, call(a))
	require.Equal(t, http.StatusNoContent, call(a))
	require.Equal(t, http.StatusTooManyRequests, call(a), "the burst of 2 is spent")
	require.Equal(t, http.StatusNoContent, call(b), "another replica's budget is its own")

	keys, err := r.Client.Keys(context.Background(), "*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "the address guard wrote to Redis")
	require.Zero(t, testutil.ToFloat64(l.localDecisions), "local by design, not a fallback")
}

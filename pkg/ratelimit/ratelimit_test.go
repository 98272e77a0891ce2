package ratelimit

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/problem"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// newLimiter returns a limiter on its own client of the test's database, as a
// separate API process would have.
func newLimiter(t *testing.T, r testenv.Redis) *Limiter {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, DB: r.DB})
	t.Cleanup(func() { _ = c.Close() })
	l, err := New(c)
	require.NoError(t, err)
	return l
}

// fakeClock is a clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestBurstThenLimit(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	l := newLimiter(t, r)
	ctx := context.Background()
	// One request every 10 s, 3 at once: the first 3 pass, the 4th waits
	// almost the whole interval (the Redis server's clock is used here).
	for i := 0; i < 3; i++ {
		ok, retry, err := l.Allow(ctx, "caller", 0.1, 3)
		require.NoError(t, err)
		require.True(t, ok, "request %d", i)
		require.Zero(t, retry)
	}
	ok, retry, err := l.Allow(ctx, "caller", 0.1, 3)
	require.NoError(t, err)
	require.False(t, ok)
	require.Greater(t, retry, 9*time.Second)
	require.LessOrEqual(t, retry, 10*time.Second)

	// Another caller has its own budget.
	ok, _, err = l.Allow(ctx, "other", 0.1, 3)
	require.NoError(t, err)
	require.True(t, ok)

	// The key expires when the budget would be full again: never later than
	// burst intervals.
	ttl, err := r.Client.PTTL(ctx, DefaultPrefix+"caller").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, time.Duration(0))
	require.LessOrEqual(t, ttl, 30*time.Second)
}

func TestRetryAfterAccuracy(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	l := newLimiter(t, r)
	clock := &fakeClock{}
	clock.ns.Store(time.Now().UnixNano())
	l.now = clock.now
	ctx := context.Background()

	// 2 per second, burst 2.
	for i := 0; i < 2; i++ {
		res, err := l.Check(ctx, "k", 2, 2)
		require.NoError(t, err)
		require.True(t, res.Allowed)
		require.Equal(t, 1-i, res.Remaining)
	}
	res, err := l.Check(ctx, "k", 2, 2)
	require.NoError(t, err)
	require.False(t, res.Allowed)
	require.Equal(t, 500*time.Millisecond, res.RetryAfter)

	clock.advance(499 * time.Millisecond)
	res, err = l.Check(ctx, "k", 2, 2)
	require.NoError(t, err)
	require.False(t, res.Allowed)
	require.Equal(t, time.Millisecond, res.RetryAfter)

	clock.advance(time.Millisecond)
	res, err = l.Check(ctx, "k", 2, 2)
	require.NoError(t, err)
	require.True(t, res.Allowed, "allowed exactly when Retry-After said")
	res, err = l.Check(ctx, "k", 2, 2)
	require.NoError(t, err)
	require.False(t, res.Allowed)
	require.Equal(t, 500*time.Millisecond, res.RetryAfter)

	// After a quiet second the whole burst is back.
	clock.advance(1500 * time.Millisecond)
	for i := 0; i < 2; i++ {
		res, err := l.Check(ctx, "k", 2, 2)
		require.NoError(t, err)
		require.True(t, res.Allowed, "request %d", i)
	}
	res, err = l.Check(ctx, "k", 2, 2)
	require.NoError(t, err)
	require.False(t, res.Allowed)
}

func TestTwoProcessesShareTheBudget(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	a, b := newLimiter(t, r), newLimiter(t, r)
	ctx := context.Background()

	// 40 concurrent requests through two "replicas" against a budget of 10.
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(l *Limiter) {
			defer wg.Done()
			ok, _, err := l.Allow(ctx, "shared", 0.01, 10)
			if err == nil && ok {
				allowed.Add(1)
			}
		}([]*Limiter{a, b}[i%2])
	}
	wg.Wait()
	require.EqualValues(t, 10, allowed.Load())
	ok, retry, err := b.Allow(ctx, "shared", 0.01, 10)
	require.NoError(t, err)
	require.False(t, ok)
	require.Greater(t, retry, 90*time.Second)
}

func TestInvalidLimitsAndRedisDown(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	l := newLimiter(t, r)
	ctx := context.Background()
	for _, tc := range []struct {
		rate  float64
		burst int
	}{{0, 1}, {-1, 1}, {1, 0}} {
		ok, _, err := l.Allow(ctx, "k", tc.rate, tc.burst)
		require.ErrorIs(t, err, ErrInvalidLimit)
		require.True(t, ok)
	}

	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = down.Close() })
	dl, err := New(down)
	require.NoError(t, err)
	ok, _, err := dl.Allow(ctx, "k", 1, 1)
	require.Error(t, err)
	require.True(t, ok, "fails open")
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	l := newLimiter(t, r)
	cfg := config.RateLimitConfig{Enabled: true, PerRole: map[string]config.RateLimit{
		"viewer": {RPS: 0.01, Burst: 2}, "admin": {RPS: 0.01, Burst: 5},
	}}
	mw, err := Middleware(l, MiddlewareOptions{Config: cfg, Anonymous: config.RateLimit{RPS: 0.01, Burst: 1}})
	require.NoError(t, err)
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	call := func(p *auth.Principal, remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/tasks", nil)
		req.RemoteAddr = remote
		if p != nil {
			req = req.WithContext(auth.WithPrincipal(req.Context(), *p))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	viewer := &auth.Principal{ID: "key_v", Role: auth.Viewer}
	admin := &auth.Principal{ID: "key_a", Role: auth.Admin}
	operator := &auth.Principal{ID: "key_o", Role: auth.Operator}

	require.Equal(t, http.StatusNoContent, call(viewer, "192.0.2.1:1").Code)
	require.Equal(t, http.StatusNoContent, call(viewer, "192.0.2.2:1").Code)
	rec := call(viewer, "192.0.2.3:1")
	require.Equal(t, http.StatusTooManyRequests, rec.Code, "per principal, whatever the address")
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	secs, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, secs, 99)
	require.LessOrEqual(t, secs, 100)
	var prob problem.Body
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &prob))
	require.Equal(t, http.StatusTooManyRequests, prob.Status)
	require.Equal(t, problem.TypePrefix+"rate-limited", prob.Type)
	require.NotEmpty(t, prob.RequestID, "every problem names its request")

	for i := 0; i < 5; i++ {
		require.Equal(t, http.StatusNoContent, call(admin, "192.0.2.1:1").Code, "admin request %d", i)
	}
	require.Equal(t, http.StatusTooManyRequests, call(admin, "192.0.2.1:1").Code)

	for i := 0; i < 10; i++ {
		require.Equal(t, http.StatusNoContent, call(operator, "192.0.2.1:1").Code, "a role without a limit is not limited")
	}

	require.Equal(t, http.StatusNoContent, call(nil, "198.51.100.1:1").Code)
	require.Equal(t, http.StatusTooManyRequests, call(nil, "198.51.100.1:2").Code, "anonymous: per address")
	require.Equal(t, http.StatusNoContent, call(nil, "198.51.100.2:1").Code)

	// IPv6: every address of a /64 shares one budget, so rotating addresses
	// inside it does not escape the limit; the next /64 has its own.
	require.Equal(t, http.StatusNoContent, call(nil, "[2001:db8:1:2::1]:1").Code)
	require.Equal(t, http.StatusTooManyRequests, call(nil, "[2001:db8:1:2::2]:1").Code, "same /64")
	require.Equal(t, http.StatusTooManyRequests, call(nil, "[2001:db8:1:2:ffff:ffff:ffff:ffff]:1").Code, "same /64")
	require.Equal(t, http.StatusNoContent, call(nil, "[2001:db8:1:3::1]:1").Code, "another /64")
}

func TestMiddlewareConfig(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	l := newLimiter(t, r)
	_, err := Middleware(l, MiddlewareOptions{Config: config.RateLimitConfig{Enabled: true,
		PerRole: map[string]config.RateLimit{"root": {RPS: 1, Burst: 1}}}})
	require.Error(t, err)
	_, err = Middleware(l, MiddlewareOptions{Config: config.RateLimitConfig{Enabled: true,
		PerRole: map[string]config.RateLimit{"viewer": {RPS: 0, Burst: 1}}}})
	require.ErrorIs(t, err, ErrInvalidLimit)

	// Disabled: a pass-through, even without a limiter.
	mw, err := Middleware(nil, MiddlewareOptions{Config: config.RateLimitConfig{Enabled: false}})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })).
		ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusNoContent, rec.Code)

	// Redis down: requests pass (fail open).
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = down.Close() })
	dl, err := New(down)
	require.NoError(t, err)
	mw, err = Middleware(dl, MiddlewareOptions{Config: config.Defaults().RateLimit})
	require.NoError(t, err)
	rec = httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req = req.WithContext(auth.WithPrincipal(req.Context(), auth.Principal{ID: "x", Role: auth.Viewer}))
	mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })).ServeHTTP(rec, req)
	require.Equal(t, http.StatusNoContent, rec.Code)
}

// BenchmarkAllow prints the cost of one limiter check against the test Redis.
func BenchmarkAllow(b *testing.B) {
	r := testenv.NewRedis(b)
	l, err := New(r.Client)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		if _, _, err := l.Allow(ctx, "bench", 1e6, 1000); err != nil {
			b.Fatal(err)
		}
	}
}

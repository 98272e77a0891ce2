package server

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/taskforge/taskforge/pkg/problem/problemtest"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/clientip"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/ratelimit"
)

// proxied sends n requests with junk credentials concurrently, each with the
// X-Forwarded-For xff(i), and counts the statuses.
func proxied(t *testing.T, b testBundle, n int, xff func(i int) string) map[int]int {
	t.Helper()
	var mu sync.Mutex
	codes := map[int]int{}
	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				req, err := http.NewRequest(http.MethodGet, b.http.URL+"/api/v1/tasks", nil)
				if !assertNoError(t, err) {
					continue
				}
				req.Header.Set("Authorization", "Bearer "+auth.KeyPrefix+"abcd2345_"+strings.Repeat("x", 40)+fmt.Sprint(i))
				req.Header.Set("X-Forwarded-For", xff(i))
				resp, err := http.DefaultClient.Do(req)
				if !assertNoError(t, err) {
					continue
				}
				if err := problemtest.Check(resp); err != nil {
					t.Errorf("a %d refusal: %v", resp.StatusCode, err)
				}
				_ = resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return codes
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

// asCaller is a request of the valid caller, who sits behind the proxy at
// 198.51.100.10.
func asCaller(t *testing.T, b testBundle) int {
	t.Helper()
	code, _, _ := b.callWith(t, http.MethodGet, "/api/v1/tasks", testBootstrap, map[string]string{"X-Forwarded-For": "198.51.100.10"})
	return code
}

func (b testBundle) callWith(t *testing.T, method, path, token string, header map[string]string) (int, string, http.Header) {
	t.Helper()
	resp := b.raw(t, method, path, token, nil, header)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body), resp.Header
}

// proxySetup is an API behind a proxy at 127.0.0.1 (the test server's peer),
// with a small per-address budget; trusted says whether the proxy is in
// proxy.trusted_cidrs.
func proxySetup(t *testing.T, trusted bool, burst int) testBundle {
	t.Helper()
	first := setupWith(t, setupOptions{})
	rc := queue.Client(first.rd.Opt())
	t.Cleanup(func() { _ = rc.Close() })
	lim, err := ratelimit.New(rc)
	require.NoError(t, err)
	o := clientip.Options{}
	if trusted {
		o.TrustedProxies = []string{"127.0.0.0/8", "::1"}
	}
	resolver, err := clientip.New(o)
	require.NoError(t, err)
	b := setupWith(t, setupOptions{db: first.pg.DB, redisOpt: first.rd.Opt(), secure: true, bootstrap: testBootstrap,
		limiter: lim, rateLimit: config.Defaults().RateLimit, perAddress: config.RateLimit{RPS: 0.01, Burst: burst},
		clientIP: resolver})
	b.pg = first.pg
	return b
}

// TestUntrustedProxySharesOneBudget reproduces finding 1 as it stands without
// proxy.trusted_cidrs: behind a proxy every caller has the proxy's address,
// so one client's junk credentials spend everyone's pre-authentication
// budget and the valid caller is refused with 429.
func TestUntrustedProxySharesOneBudget(t *testing.T) {
	t.Parallel()
	const burst = 5
	b := proxySetup(t, false, burst)
	codes := proxied(t, b, 50, func(i int) string { return fmt.Sprintf("203.0.113.%d", i%250) })
	require.Equal(t, map[int]int{http.StatusUnauthorized: burst, http.StatusTooManyRequests: 50 - burst}, codes)
	require.Equal(t, http.StatusTooManyRequests, asCaller(t, b), "without trusted proxies the forwarded address is ignored")
}

// TestTrustedProxyKeepsValidCallerUnaffected is finding 1's fix: behind a
// trusted proxy the client address comes from X-Forwarded-For, so 500 junk
// requests with distinct X-Forwarded-For values (forged entries ahead of the
// address the proxy appended, and addresses rotated inside one IPv6 /64) are
// limited in their own buckets, their refusals leave one aggregated audit row
// per address, and the valid caller behind the same proxy is unaffected.
func TestTrustedProxyKeepsValidCallerUnaffected(t *testing.T) {
	t.Parallel()
	const burst = 5
	b := proxySetup(t, true, burst)
	require.Equal(t, http.StatusOK, asCaller(t, b))

	// The attacker at 203.0.113.66 forges a different X-Forwarded-For on
	// every request; the proxy appends the address it saw.
	codes := proxied(t, b, 400, func(i int) string { return fmt.Sprintf("10.%d.%d.1, 203.0.113.66", i/250, i%250) })
	require.Equal(t, map[int]int{http.StatusUnauthorized: burst, http.StatusTooManyRequests: 400 - burst}, codes)
	// An IPv6 attacker rotates through the addresses of its /64.
	codes = proxied(t, b, 100, func(i int) string { return fmt.Sprintf("2001:db8:7:7::%x", i+1) })
	require.Equal(t, map[int]int{http.StatusUnauthorized: burst, http.StatusTooManyRequests: 100 - burst}, codes)

	for range 3 {
		require.Equal(t, http.StatusOK, asCaller(t, b), "the valid caller keeps its own budget")
	}

	rows := auditRows(t, b, audit.ActionAuthFailure)
	byAddress := map[string]int{}
	for _, r := range rows {
		byAddress[r.ClientIP] += r.Count
	}
	require.LessOrEqual(t, len(rows), 4, "one row per address per minute (a minute may turn during the test)")
	require.Equal(t, burst, byAddress["203.0.113.66"], "the forged entries are not the client")
	v6 := 0
	for ip, n := range byAddress {
		if strings.HasPrefix(ip, "2001:db8:7:7::") {
			v6 += n
		}
	}
	require.Equal(t, burst, v6)
}

package egress_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/egress"
)

// publicIP is a documentation address (TEST-NET-3) that passes the guard's
// check. No test ever connects to it: dial hooks redirect such dials to a local
// server.
const publicIP = "203.0.113.10"

// newServerOn starts an HTTP test server listening on ip (any 127/8 address
// works on Linux, where all of 127.0.0.0/8 is routed to lo).
func newServerOn(t *testing.T, ip string, h http.Handler) *httptest.Server {
	t.Helper()
	return serve(t, listen(t, ip), h)
}

// listen opens a listener on a free port of ip.
func listen(t *testing.T, ip string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	require.NoError(t, err)
	return ln
}

// serve starts an HTTP test server on ln.
func serve(t *testing.T, ln net.Listener, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// countingHandler answers 200 "ok" and counts requests.
type countingHandler struct{ hits atomic.Int64 }

func (h *countingHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.hits.Add(1)
	_, _ = io.WriteString(w, "ok")
}

func newGuard(t *testing.T, cfg egress.Config, opts ...egress.Option) *egress.Guard {
	t.Helper()
	g, err := egress.New(cfg, opts...)
	require.NoError(t, err)
	return g
}

func get(t *testing.T, g *egress.Guard, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := g.Do(req)
	if resp != nil {
		t.Cleanup(func() { _ = resp.Body.Close() })
	}
	return resp, err
}

func TestAllowCIDRsLetLoopbackServerThrough(t *testing.T) {
	t.Parallel()

	target := &countingHandler{}
	srv := newServerOn(t, "127.0.0.1", target)

	tests := []struct {
		name    string
		allow   []string
		allowed bool
	}{
		{name: "no allow list", allowed: false},
		{name: "other range", allow: []string{"10.0.0.0/8"}, allowed: false},
		{name: "other loopback host", allow: []string{"127.0.0.2/32"}, allowed: false},
		{name: "loopback range", allow: []string{"127.0.0.0/8"}, allowed: true},
		{name: "single address", allow: []string{"127.0.0.1"}, allowed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			g := newGuard(t, egress.Config{AllowCIDRs: tt.allow})
			before := target.hits.Load()
			resp, err := get(t, g, srv.URL)
			if !tt.allowed {
				require.ErrorIs(t, err, egress.ErrBlocked)
				var blocked *egress.BlockedError
				require.ErrorAs(t, err, &blocked)
				require.Equal(t, egress.ReasonLoopback, blocked.Reason)
				return
			}
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Greater(t, target.hits.Load(), before)
		})
	}
}

func TestLocalhostNameBlocked(t *testing.T) {
	t.Parallel()

	target := &countingHandler{}
	srv := newServerOn(t, "127.0.0.1", target)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)

	// The client refuses the name before it dials; the dial check would too.
	g := newGuard(t, egress.Config{})
	_, err = get(t, g, "http://localhost:"+port+"/")
	require.ErrorIs(t, err, egress.ErrBlocked)
	require.Zero(t, target.hits.Load())
}

func TestRedirects(t *testing.T) {
	t.Parallel()

	// Only 127.0.0.2 is allowed; the blocked target listens on 127.0.0.1.
	blockedTarget := &countingHandler{}
	blockedSrv := newServerOn(t, "127.0.0.1", blockedTarget)
	_, blockedPort, err := net.SplitHostPort(blockedSrv.Listener.Addr().String())
	require.NoError(t, err)

	allowedLn := listen(t, "127.0.0.2")
	allowedHost := allowedLn.Addr().String()
	allowedURL := "http://" + allowedHost
	allowedMux := http.NewServeMux()
	redirect := func(path, to string) {
		allowedMux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, strings.ReplaceAll(to, "ALLOWED_HOST", allowedHost), http.StatusFound)
		})
	}
	var loopHits atomic.Int64
	allowedMux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		loopHits.Add(1)
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	allowedMux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})
	redirect("/to-loopback", blockedSrv.URL+"/")
	redirect("/to-loopback-short", "http://127.1:"+blockedPort+"/")
	redirect("/to-mapped", "http://[::ffff:127.0.0.1]:"+blockedPort+"/")
	redirect("/to-localhost", "http://localhost:"+blockedPort+"/")
	redirect("/to-metadata", "http://169.254.169.254/latest/meta-data/")
	redirect("/to-userinfo", "http://user:pass@ALLOWED_HOST/ok")
	redirect("/to-file", "file:///etc/passwd")
	redirect("/to-ok", "/ok")
	serve(t, allowedLn, allowedMux)

	g := newGuard(t, egress.Config{AllowCIDRs: []string{"127.0.0.2/32"}})

	tests := []struct {
		path   string
		reason egress.Reason
	}{
		{path: "/to-loopback", reason: egress.ReasonLoopback},
		{path: "/to-loopback-short", reason: egress.ReasonLoopback},
		{path: "/to-mapped", reason: egress.ReasonLoopback},
		{path: "/to-localhost", reason: egress.ReasonLocalhost},
		{path: "/to-metadata", reason: egress.ReasonMetadata},
		{path: "/to-userinfo", reason: egress.ReasonUserinfo},
		{path: "/to-file", reason: egress.ReasonScheme},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()

			_, err := get(t, g, allowedURL+tt.path)
			require.ErrorIs(t, err, egress.ErrBlocked)
			var blocked *egress.BlockedError
			require.ErrorAs(t, err, &blocked)
			require.Equal(t, tt.reason, blocked.Reason)
		})
	}

	t.Run("allowed hop", func(t *testing.T) {
		t.Parallel()

		resp, err := get(t, g, allowedURL+"/to-ok")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, "ok", string(body))
	})

	t.Run("too many", func(t *testing.T) {
		t.Parallel()

		_, err := get(t, g, allowedURL+"/loop")
		require.ErrorIs(t, err, egress.ErrTooManyRedirects)
		require.EqualValues(t, egress.DefaultMaxRedirects+1, loopHits.Load())
	})

	t.Run("not followed", func(t *testing.T) {
		t.Parallel()

		noFollow := newGuard(t, egress.Config{AllowCIDRs: []string{"127.0.0.2/32"}, MaxRedirects: -1})
		resp, err := get(t, noFollow, allowedURL+"/to-loopback")
		require.NoError(t, err)
		require.Equal(t, http.StatusFound, resp.StatusCode)
	})

	t.Cleanup(func() {
		require.Zero(t, blockedTarget.hits.Load(), "a blocked redirect target was reached")
	})
}

// sequenceResolver answers each lookup with the next answer in its list and
// repeats the last one; it counts lookups.
type sequenceResolver struct {
	mu      sync.Mutex
	answers [][]string
	calls   int
}

func (r *sequenceResolver) LookupIPAddr(_ context.Context, _ string) ([]net.IPAddr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	answer := r.answers[min(r.calls, len(r.answers)-1)]
	r.calls++
	addrs := make([]net.IPAddr, 0, len(answer))
	for _, a := range answer {
		addrs = append(addrs, net.IPAddr{IP: net.ParseIP(a)})
	}
	return addrs, nil
}

func (r *sequenceResolver) lookups() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// redirectingDialer records every address the guard asks it to dial and
// connects dials of publicIP to a local server instead, so no packet leaves
// the machine. Any other address is dialled for real (on loopback in these
// tests), so a guard that let a blocked address through would be caught.
type redirectingDialer struct {
	local string
	mu    sync.Mutex
	seen  []string
}

func (d *redirectingDialer) dial(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.seen = append(d.seen, address)
	d.mu.Unlock()
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	if host == publicIP {
		address = d.local
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, address)
}

func (d *redirectingDialer) dialled() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.seen...)
}

func TestDNSRebindingIsRefused(t *testing.T) {
	t.Parallel()

	target := &countingHandler{}
	srv := newServerOn(t, "127.0.0.1", target)

	resolver := &sequenceResolver{answers: [][]string{{publicIP}, {"127.0.0.1"}, {"::ffff:127.0.0.1"}}}
	dialer := &redirectingDialer{local: srv.Listener.Addr().String()}
	g := newGuard(t, egress.Config{}, egress.WithResolver(resolver), egress.WithDialFunc(dialer.dial))

	send := func() error {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://rebind.example/", nil)
		require.NoError(t, err)
		req.Close = true // A fresh connection, and so a fresh lookup, per request.
		resp, err := g.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}

	// First lookup: a public address, which is checked and dialled as is.
	require.NoError(t, send())
	require.Equal(t, []string{publicIP + ":80"}, dialer.dialled())
	require.EqualValues(t, 1, target.hits.Load())
	require.Equal(t, 1, resolver.lookups())

	// Second and third lookups: loopback, plain and IPv4-mapped. Refused before any dial.
	for _, want := range []int{2, 3} {
		err := send()
		require.ErrorIs(t, err, egress.ErrBlocked)
		var blocked *egress.BlockedError
		require.ErrorAs(t, err, &blocked)
		require.Equal(t, egress.ReasonLoopback, blocked.Reason)
		require.Equal(t, want, resolver.lookups(), "the guard must resolve once per connection")
	}
	require.Equal(t, []string{publicIP + ":80"}, dialer.dialled())
	require.EqualValues(t, 1, target.hits.Load())
}

func TestMixedAnswerDialsOnlyCheckedAddress(t *testing.T) {
	t.Parallel()

	target := &countingHandler{}
	srv := newServerOn(t, "127.0.0.1", target)

	resolver := &sequenceResolver{answers: [][]string{{"127.0.0.1", "::1", "10.0.0.7", publicIP}}}
	dialer := &redirectingDialer{local: srv.Listener.Addr().String()}
	g := newGuard(t, egress.Config{}, egress.WithResolver(resolver), egress.WithDialFunc(dialer.dial))

	resp, err := get(t, g, "http://mixed.example:8080/")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, []string{publicIP + ":8080"}, dialer.dialled())
	require.Equal(t, 1, resolver.lookups())
}

func TestResponseSizeCap(t *testing.T) {
	t.Parallel()

	const limit = 1024
	srv := newServerOn(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n int
		_, _ = fmt.Sscan(r.URL.Query().Get("n"), &n)
		if r.URL.Query().Get("chunked") != "" {
			// Without a Content-Length the body is sent chunked.
			w.(http.Flusher).Flush()
		} else {
			w.Header().Set("Content-Length", fmt.Sprint(n))
		}
		_, _ = w.Write(bytes.Repeat([]byte("x"), n))
	}))
	g := newGuard(t, egress.Config{AllowCIDRs: []string{"127.0.0.1/32"}, MaxResponseBytes: limit})

	tests := []struct {
		name    string
		query   string
		tooLong bool
	}{
		{name: "empty", query: "n=0"},
		{name: "under", query: "n=1023"},
		{name: "at limit", query: "n=1024"},
		{name: "one over", query: "n=1025", tooLong: true},
		{name: "far over", query: "n=1000000", tooLong: true},
		{name: "chunked at limit", query: "n=1024&chunked=1"},
		{name: "chunked over", query: "n=5000&chunked=1", tooLong: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			resp, err := get(t, g, srv.URL+"/?"+tt.query)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			if tt.tooLong {
				require.ErrorIs(t, err, egress.ErrResponseTooLarge)
				require.LessOrEqual(t, len(body), limit)
				return
			}
			require.NoError(t, err)
			require.LessOrEqual(t, len(body), limit)
		})
	}

	t.Run("through Client", func(t *testing.T) {
		t.Parallel()

		resp, err := g.Client().Get(srv.URL + "/?n=2048")
		require.NoError(t, err)
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		require.ErrorIs(t, err, egress.ErrResponseTooLarge)
	})
}

func TestTotalTimeout(t *testing.T) {
	t.Parallel()

	release := make(chan struct{})
	srv := newServerOn(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release) })
	g := newGuard(t, egress.Config{AllowCIDRs: []string{"127.0.0.1/32"}, Timeout: 200 * time.Millisecond})

	start := time.Now()
	_, err := get(t, g, srv.URL)
	require.Error(t, err)
	var netErr net.Error
	require.True(t, errors.As(err, &netErr) && netErr.Timeout(), "want a timeout, got %v", err)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestConnectTimeout(t *testing.T) {
	t.Parallel()

	const connectTimeout = 150 * time.Millisecond
	var deadline atomic.Value
	hang := func(ctx context.Context, _, _ string) (net.Conn, error) {
		d, ok := ctx.Deadline()
		if ok {
			deadline.Store(d)
		}
		<-ctx.Done() // An unreachable host: the connect never completes.
		return nil, ctx.Err()
	}
	g := newGuard(t, egress.Config{ConnectTimeout: connectTimeout, Timeout: time.Minute}, egress.WithDialFunc(hang))

	start := time.Now()
	_, err := get(t, g, "http://"+publicIP+"/")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 10*time.Second)
	d, ok := deadline.Load().(time.Time)
	require.True(t, ok, "the dial had no deadline")
	require.WithinDuration(t, start.Add(connectTimeout), d, 5*time.Second)
	require.True(t, d.Before(start.Add(time.Minute)), "connect deadline is the total timeout, not the connect timeout")
}

func TestRequestURLChecked(t *testing.T) {
	t.Parallel()

	target := &countingHandler{}
	srv := newServerOn(t, "127.0.0.1", target)
	g := newGuard(t, egress.Config{AllowCIDRs: []string{"127.0.0.0/8"}})
	hostPort := strings.TrimPrefix(srv.URL, "http://")

	for _, raw := range []string{
		"http://user:pass@" + hostPort + "/",
		"http://user@" + hostPort + "/",
	} {
		_, err := get(t, g, raw)
		var blocked *egress.BlockedError
		require.ErrorAs(t, err, &blocked)
		require.Equal(t, egress.ReasonUserinfo, blocked.Reason)
	}
	require.Zero(t, target.hits.Load())
}

// TestConcurrentDeliveriesReuseConnections sends rounds of concurrent requests
// to one host: the connections of a round are kept idle and reused by the next
// (with Go's default of two idle connections per host, most requests of every
// later round would dial anew).
func TestConcurrentDeliveriesReuseConnections(t *testing.T) {
	t.Parallel()
	var dialed atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialed.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	g := newGuard(t, egress.Config{AllowCIDRs: []string{"127.0.0.0/8"}})

	const workers, rounds = 16, 8
	for range rounds {
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, strings.NewReader(`{"n":1}`))
				if !assert.NoError(t, err) {
					return
				}
				resp, err := g.Do(req)
				if !assert.NoError(t, err) {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}()
		}
		wg.Wait()
	}
	// The first round dials up to one connection per worker; later rounds
	// reuse them.
	require.LessOrEqual(t, dialed.Load(), int64(workers+2), "connections dialed for %d requests", workers*rounds)
}

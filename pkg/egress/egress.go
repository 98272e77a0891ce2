// Package egress is the one guarded HTTP client for every call Taskforge makes to
// the outside world: webhooks, Slack, SMS and push providers, the price provider
// and user-supplied callback URLs.
//
// A Guard allows only http and https URLs without credentials, re-checks every
// redirect hop, bounds connect and total time and the size of a response body,
// and refuses to connect to loopback, private, link-local, CGNAT, unique-local,
// multicast, broadcast, unspecified and cloud metadata addresses unless their
// range is listed in Config.AllowCIDRs. The check is made on the address that is
// actually dialled: a host name is resolved once, each address is checked, and
// exactly the checked address is dialled, so DNS rebinding cannot slip past it.
// The environment's proxy settings are ignored for the same reason.
//
// CheckURL validates a URL when a task is created, without resolving host names,
// so that plainly forbidden URLs are refused before they reach the queue.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/taskforge/taskforge/pkg/tracing"
)

var (
	// ErrBlocked is matched by every *BlockedError with errors.Is.
	ErrBlocked = errors.New("egress: destination blocked")

	// ErrResponseTooLarge is returned by a response body reader once the body
	// exceeds Config.MaxResponseBytes.
	ErrResponseTooLarge = errors.New("egress: response body too large")

	// ErrTooManyRedirects is returned when a request is redirected more than
	// Config.MaxRedirects times.
	ErrTooManyRedirects = errors.New("egress: too many redirects")
)

// Defaults used for zero Config fields.
const (
	DefaultConnectTimeout   = 5 * time.Second
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = 10 << 20
	DefaultMaxRedirects     = 3
)

// Config configures a Guard. The zero value is usable and gives the defaults.
type Config struct {
	// AllowCIDRs lists address ranges that are reachable even though they are
	// otherwise blocked, such as "10.20.0.0/16" for an internal provider or
	// "127.0.0.0/8" in development. A bare address is taken as a single-host
	// range. If empty, every blocked range stays blocked.
	AllowCIDRs []string

	// ConnectTimeout bounds establishing one connection, including the TLS
	// handshake. If zero, DefaultConnectTimeout (5 seconds) is used.
	ConnectTimeout time.Duration

	// Timeout bounds a whole request, redirects and reading the body included.
	// If zero, DefaultTimeout (30 seconds) is used.
	Timeout time.Duration

	// MaxResponseBytes caps the size of a response body; reading past it fails
	// with ErrResponseTooLarge. If zero, DefaultMaxResponseBytes (10 MiB) is used.
	MaxResponseBytes int64

	// MaxRedirects is how many redirects a request may follow, each re-checked.
	// If zero, DefaultMaxRedirects (3) is used; if negative, redirects are not
	// followed and the 3xx response is returned to the caller.
	MaxRedirects int
}

// withDefaults returns cfg with zero fields replaced by their defaults.
func (cfg Config) withDefaults() Config {
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = DefaultMaxRedirects
	}
	return cfg
}

// Resolver resolves host names to addresses. *net.Resolver satisfies it.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// DialFunc dials a network address. The guard calls it only with an address it
// has already checked, in "ip:port" form.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Option changes how a Guard resolves and dials; it exists for tests.
type Option func(*options)

type options struct {
	resolver Resolver
	dial     DialFunc
}

// WithResolver makes the guard resolve host names with r instead of
// net.DefaultResolver.
func WithResolver(r Resolver) Option {
	return func(o *options) { o.resolver = r }
}

// WithDialFunc makes the guard open connections with dial instead of its own
// net.Dialer. The guard still resolves and checks every address before calling
// dial, and dial receives exactly the checked "ip:port".
func WithDialFunc(dial DialFunc) Option {
	return func(o *options) { o.dial = dial }
}

// Guard is the guarded outbound HTTP client. It is safe for concurrent use and
// should be shared: its client keeps a connection pool.
type Guard struct {
	cfg      Config
	allow    []netip.Prefix
	resolver Resolver
	dial     DialFunc
	client   *http.Client
}

// New builds a Guard from cfg. It fails if an entry of cfg.AllowCIDRs is not a
// valid CIDR or address, or if a duration or limit is negative.
func New(cfg Config, opts ...Option) (*Guard, error) {
	cfg = cfg.withDefaults()
	if cfg.ConnectTimeout < 0 || cfg.Timeout < 0 || cfg.MaxResponseBytes < 0 {
		return nil, errors.New("egress: new guard: timeouts and response limit must not be negative")
	}
	allow, err := parseCIDRs(cfg.AllowCIDRs)
	if err != nil {
		return nil, fmt.Errorf("egress: new guard: %w", err)
	}
	o := options{resolver: net.DefaultResolver}
	for _, opt := range opts {
		opt(&o)
	}
	if o.resolver == nil {
		return nil, errors.New("egress: new guard: nil resolver")
	}

	g := &Guard{cfg: cfg, allow: allow, resolver: o.resolver, dial: o.dial}
	if g.dial == nil {
		d := &net.Dialer{
			Timeout:        cfg.ConnectTimeout,
			KeepAlive:      30 * time.Second,
			ControlContext: g.control,
		}
		g.dial = d.DialContext
	}
	transport := &http.Transport{
		// Proxy stays nil: a proxy would hide the real destination from the check.
		Proxy:               nil,
		DialContext:         g.dialContext,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: cfg.ConnectTimeout,
		MaxIdleConns:        100,
		// A worker delivers many tasks to the same few hosts (a webhook
		// receiver, the mail relay's API): keep enough idle connections per
		// host for the worker's concurrent deliveries, not Go's default of 2,
		// which opened a new connection for most deliveries under load.
		MaxIdleConnsPerHost:   maxIdlePerHost,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	g.client = &http.Client{
		// With tracing on, a client span per request (a refused one
		// included) and its traceparent header.
		Transport:     tracing.Transport(&guardedTransport{guard: g, base: transport}),
		CheckRedirect: g.checkRedirect,
		Timeout:       cfg.Timeout,
	}
	return g, nil
}

// maxIdlePerHost is the idle connections kept per destination host.
const maxIdlePerHost = 64

// parseCIDRs parses allow-list entries; a bare address becomes a host prefix.
func parseCIDRs(entries []string) ([]netip.Prefix, error) {
	prefixes := make([]netip.Prefix, 0, len(entries))
	for _, entry := range entries {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if p, err := netip.ParsePrefix(entry); err == nil {
			prefixes = append(prefixes, p.Masked())
			continue
		}
		addr, err := netip.ParseAddr(entry)
		if err != nil {
			return nil, fmt.Errorf("allow cidr %q: not a CIDR or address", entry)
		}
		addr = addr.Unmap()
		prefixes = append(prefixes, netip.PrefixFrom(addr, addr.BitLen()))
	}
	return prefixes, nil
}

// Client returns the guarded client. Every request sent through it is checked,
// including redirects, and its response bodies are capped.
func (g *Guard) Client() *http.Client {
	return g.client
}

// Do sends req through the guarded client. The response body fails with
// ErrResponseTooLarge once more than Config.MaxResponseBytes have been read.
// Errors from a refused destination match ErrBlocked and unwrap to *BlockedError.
func (g *Guard) Do(req *http.Request) (*http.Response, error) {
	return g.client.Do(req)
}

// checkRedirect re-checks each redirect hop and bounds their number.
func (g *Guard) checkRedirect(req *http.Request, via []*http.Request) error {
	if g.cfg.MaxRedirects < 0 {
		return http.ErrUseLastResponse
	}
	if len(via) > g.cfg.MaxRedirects {
		return fmt.Errorf("%w: more than %d", ErrTooManyRedirects, g.cfg.MaxRedirects)
	}
	return g.checkURL(req.URL)
}

// guardedTransport checks every request URL before it is sent and caps every
// response body.
type guardedTransport struct {
	guard *Guard
	base  http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.guard.checkURL(req.URL); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, remaining: t.guard.cfg.MaxResponseBytes}
	return resp, nil
}

// Package clientip tells who a request comes from. Behind a reverse proxy the
// peer of every request is the proxy, so the client's address is taken from
// the header the proxy sets (X-Forwarded-For or Forwarded), but only when the
// peer is one of the configured trusted proxies: anyone else could write the
// header themselves. The address found is the rightmost one in the header
// that is not itself a trusted proxy, so a client cannot choose its address
// by sending a forged header ahead of the proxy's entry.
//
// Key groups addresses for rate limiting and the aggregated audit of refused
// credentials: an IPv4 address stands for itself, an IPv6 address for its
// network prefix (a /64 by default), since one subscriber usually holds a
// whole /64 and could otherwise rotate through its addresses.
package clientip

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/taskforge/taskforge/pkg/config"
)

// Headers a Resolver reads the client's address from.
const (
	// HeaderXForwardedFor is the de-facto standard "X-Forwarded-For: client,
	// proxy1, proxy2".
	HeaderXForwardedFor = "x-forwarded-for"
	// HeaderForwarded is RFC 7239's "Forwarded: for=client;proto=https, for=proxy1".
	HeaderForwarded = "forwarded"
)

// DefaultIPv6Prefix is the prefix length that groups IPv6 addresses when
// Options.IPv6Prefix is zero.
const DefaultIPv6Prefix = 64

// maxHops bounds how many header entries are examined, so that a huge forged
// header costs little.
const maxHops = 32

// ErrInvalid wraps every configuration error of New.
var ErrInvalid = errors.New("clientip: invalid options")

// Options configure a Resolver.
type Options struct {
	// TrustedProxies lists the CIDRs of the reverse proxies whose forwarding
	// header is believed (e.g. "10.0.0.0/8", "::1/128"). If empty, no proxy is
	// trusted and the client is always the peer.
	TrustedProxies []string
	// Header is HeaderXForwardedFor or HeaderForwarded: the header the trusted
	// proxies set. The other one is ignored (a client could forge it). If
	// empty, HeaderXForwardedFor.
	Header string
	// IPv6Prefix is the prefix length, 1..128, that Key groups IPv6 addresses
	// by. If zero, DefaultIPv6Prefix.
	IPv6Prefix int
}

// Resolver finds the client address of requests. Its zero value is not
// usable; build one with New.
type Resolver struct {
	trusted   []netip.Prefix
	forwarded bool
	v6bits    int
}

// New returns a Resolver for o, or an error wrapping ErrInvalid naming the bad
// value.
func New(o Options) (*Resolver, error) {
	r := &Resolver{v6bits: o.IPv6Prefix}
	if r.v6bits == 0 {
		r.v6bits = DefaultIPv6Prefix
	}
	if r.v6bits < 1 || r.v6bits > 128 {
		return nil, fmt.Errorf("%w: ipv6 prefix %d must be between 1 and 128", ErrInvalid, o.IPv6Prefix)
	}
	switch strings.ToLower(o.Header) {
	case "", HeaderXForwardedFor:
	case HeaderForwarded:
		r.forwarded = true
	default:
		return nil, fmt.Errorf("%w: header %q must be %s or %s", ErrInvalid, o.Header, HeaderXForwardedFor, HeaderForwarded)
	}
	for _, c := range o.TrustedProxies {
		p, err := ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("%w: trusted proxy %q: %v", ErrInvalid, c, err)
		}
		r.trusted = append(r.trusted, p)
	}
	return r, nil
}

// ParsePrefix reads a CIDR ("10.0.0.0/8") or a single address ("10.0.0.1",
// taken as a /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, errors.New("must be a CIDR such as 10.0.0.0/8 or an address")
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, errors.New("must be a CIDR such as 10.0.0.0/8 or an address")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ClientIP returns the address of the client that sent req: the peer, or
// when the peer is a trusted proxy, the rightmost untrusted address of the
// forwarding header (the leftmost one when every entry is trusted). An entry
// that is not an address ends the walk at the last good one, so garbage in
// the header never yields an address the proxy did not vouch for.
func (r *Resolver) ClientIP(req *http.Request) string {
	peer, ok := parseAddr(hostOf(req.RemoteAddr))
	if !ok {
		return hostOf(req.RemoteAddr)
	}
	if !r.isTrusted(peer) {
		return peer.String()
	}
	hops := r.hops(req.Header)
	client := peer
	for i := len(hops) - 1; i >= 0 && len(hops)-i <= maxHops; i-- {
		a, ok := parseAddr(hops[i])
		if !ok {
			break
		}
		client = a
		if !r.isTrusted(a) {
			break
		}
	}
	return client.String()
}

// Key is the bucket of addr for rate limits and aggregated audit rows: an
// IPv4 address itself, an IPv6 address its network ("2001:db8:1:2::/64").
// Anything that is not an address is returned as it is.
func (r *Resolver) Key(addr string) string {
	return Key(addr, r.v6bits)
}

// Key is Resolver.Key with an explicit IPv6 prefix length (1..128; anything
// else counts as 128).
func Key(addr string, ipv6Prefix int) string {
	a, ok := parseAddr(addr)
	if !ok {
		return addr
	}
	if a.Is4() || ipv6Prefix <= 0 || ipv6Prefix >= 128 {
		return a.String()
	}
	p, err := a.Prefix(ipv6Prefix)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// Trusted reports whether addr is a trusted proxy.
func (r *Resolver) Trusted(addr string) bool {
	a, ok := parseAddr(addr)
	return ok && r.isTrusted(a)
}

func (r *Resolver) isTrusted(a netip.Addr) bool {
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// hops lists the addresses of the forwarding header, client first, across
// every occurrence of the header (proxies may add a line rather than extend
// it).
func (r *Resolver) hops(h http.Header) []string {
	var out []string
	if !r.forwarded {
		for _, line := range h.Values("X-Forwarded-For") {
			for _, part := range strings.Split(line, ",") {
				out = append(out, strings.TrimSpace(part))
			}
		}
		return out
	}
	for _, line := range h.Values("Forwarded") {
		for _, elem := range strings.Split(line, ",") {
			node := ""
			for _, pair := range strings.Split(elem, ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "for") {
					node = forwardedNode(strings.TrimSpace(v))
				}
			}
			// An element without for= is unknown: it stops the walk there.
			out = append(out, node)
		}
	}
	return out
}

// forwardedNode turns an RFC 7239 node ("192.0.2.1", "192.0.2.1:80",
// "\"[2001:db8::1]:443\"") into its address text.
func forwardedNode(v string) string {
	v = strings.Trim(v, `"`)
	if strings.HasPrefix(v, "[") {
		end := strings.IndexByte(v, ']')
		if end < 0 {
			return ""
		}
		return v[1:end]
	}
	if host, _, err := net.SplitHostPort(v); err == nil {
		return host
	}
	return v
}

// parseAddr reads an IP address (IPv4-mapped IPv6 as IPv4, without a zone).
func parseAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		if ap, err2 := netip.ParseAddrPort(s); err2 == nil {
			a = ap.Addr()
		} else {
			return netip.Addr{}, false
		}
	}
	return a.Unmap().WithZone(""), true
}

// hostOf is the host part of a "host:port" RemoteAddr.
func hostOf(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}

// FromConfig builds the Resolver of proxy.* and ratelimit.ipv6_prefix.
func FromConfig(cfg config.Config) (*Resolver, error) {
	return New(Options{TrustedProxies: cfg.Proxy.TrustedCIDRs, Header: cfg.Proxy.Header, IPv6Prefix: cfg.RateLimit.IPv6Prefix})
}

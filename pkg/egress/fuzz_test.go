package egress_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/taskforge/taskforge/pkg/egress"
)

// internalRanges are ranges the guard must never dial unless allow-listed,
// stated independently of the guard's own table.
var internalRanges = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("169.254.169.254/32"),
	netip.MustParsePrefix("0.0.0.0/8"),
}

// internal reports whether a is loopback, private, link-local, unspecified,
// multicast, shared (CGNAT) or a metadata address, also when it is an
// IPv4-mapped or NAT64 form of one.
func internal(a netip.Addr) bool {
	a = a.WithZone("").Unmap()
	if a.Is6() && netip.MustParsePrefix("64:ff9b::/96").Contains(a) {
		b := a.As16()
		if internal(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})) {
			return true
		}
	}
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast() {
		return true
	}
	for _, p := range internalRanges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// allowedBy reports whether the allow-list prefix covers a in either form.
func allowedBy(p netip.Prefix, a netip.Addr) bool {
	if !p.IsValid() {
		return false
	}
	a = a.WithZone("")
	return p.Contains(a) || p.Contains(a.Unmap())
}

type fixedResolver struct{ ip net.IP }

func (r fixedResolver) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	if r.ip == nil {
		return nil, errors.New("no such host")
	}
	return []net.IPAddr{{IP: r.ip}}, nil
}

var errNoDial = errors.New("fuzz: not dialled")

// FuzzGuard sends a request for an arbitrary URL through a guard whose
// resolver answers an arbitrary address and whose allow-list is an arbitrary
// prefix. The guard never dials an internal address the allow-list does not
// cover, whether the URL names it literally (in any notation) or a host name
// resolves to it; CheckURL never accepts a literal internal address; and a
// refusal names its rule but never a resolved address, nor the URL's path or
// query, which may hold a secret.
func FuzzGuard(f *testing.F) {
	f.Add("http://10.0.0.1/", []byte{10, 0, 0, 1}, "")
	f.Fuzz(func(t *testing.T, raw string, resolved []byte, allow string) {
		prefix, err := netip.ParsePrefix(allow)
		var allowList []string
		if err == nil {
			allowList = []string{prefix.String()}
			prefix = prefix.Masked()
		}
		var ip net.IP
		if len(resolved) == net.IPv4len || len(resolved) == net.IPv6len {
			ip = net.IP(resolved)
		}
		var dialled []netip.Addr
		g, err := egress.New(egress.Config{AllowCIDRs: allowList, MaxRedirects: -1},
			egress.WithResolver(fixedResolver{ip: ip}),
			egress.WithDialFunc(func(_ context.Context, _, address string) (net.Conn, error) {
				ap, err := netip.ParseAddrPort(address)
				if err != nil {
					t.Errorf("dialled %q, not an ip:port", address)
					return nil, errNoDial
				}
				dialled = append(dialled, ap.Addr())
				return nil, errNoDial
			}))
		if err != nil {
			t.Fatalf("new guard: %v", err)
		}

		u, perr := url.Parse(raw)
		checkErr := g.CheckURL(raw)
		if checkErr != nil {
			if !errors.Is(checkErr, egress.ErrBlocked) {
				t.Fatalf("CheckURL error does not match ErrBlocked: %v", checkErr)
			}
			if perr == nil {
				assertNoSecret(t, checkErr, u)
			}
		} else if perr == nil {
			if a, err := netip.ParseAddr(strings.TrimSuffix(u.Hostname(), ".")); err == nil && internal(a) && !allowedBy(prefix, a) {
				t.Fatalf("CheckURL accepted internal address %s", a)
			}
		}
		if perr != nil {
			return
		}

		req, err := http.NewRequest(http.MethodGet, raw, nil)
		if err != nil {
			return
		}
		resp, err := g.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			t.Fatal("request succeeded without a connection")
		}
		// The client's *url.Error quotes the URL (callers strip it); the
		// guard's own error must not.
		var blocked *egress.BlockedError
		if errors.As(err, &blocked) {
			assertNoSecret(t, blocked, u)
			// A resolved address is never named; the rule is.
			if a := blocked.Addr.String(); blocked.Addr.IsValid() && !strings.Contains(u.Hostname(), a) && strings.Contains(err.Error(), a) {
				t.Fatalf("error %q names the resolved address %s", err, a)
			}
			if !strings.Contains(blocked.Error(), string(blocked.Reason)) {
				t.Fatalf("error %q does not name the rule %q", blocked, blocked.Reason)
			}
		}
		for _, a := range dialled {
			if internal(a) && !allowedBy(prefix, a) {
				t.Fatalf("dialled internal address %s (url %q, allow %q)", a, raw, allow)
			}
		}
	})
}

// assertNoSecret fails when err quotes a long enough path or query of u that
// is not also part of its host.
func assertNoSecret(t *testing.T, err error, u *url.URL) {
	t.Helper()
	msg := err.Error()
	for _, part := range []string{u.RawQuery, u.EscapedPath()} {
		if len(part) >= 8 && !strings.Contains(u.Host, part) && strings.Contains(msg, part) {
			t.Fatalf("error %q quotes %q of the url", msg, part)
		}
	}
}

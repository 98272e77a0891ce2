package egress

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// permissive checks URLs with no allow list.
var permissive = &Guard{}

// CheckURL reports whether raw is plainly forbidden, without resolving host
// names: it must be an absolute http or https URL without credentials whose host
// is not empty, not localhost or a *.localhost name, and not a literal address
// in a blocked range, in any notation Go's or a browser's URL parser accepts
// (127.1, 2130706433, 0x7f.0.0.1, 0177.0.0.1, [::ffff:127.0.0.1], ...). The
// error is a *BlockedError. A host name that passes may still be refused when it
// is dialled. CheckURL applies no allow list; see (*Guard).CheckURL.
func CheckURL(raw string) error {
	return permissive.CheckURL(raw)
}

// CheckURL is like the package-level CheckURL but lets through addresses in the
// guard's Config.AllowCIDRs (and localhost names when loopback is allowed).
func (g *Guard) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the whole URL, which may hold a secret.
		return &BlockedError{Reason: ReasonInvalidURL}
	}
	return g.checkURL(u)
}

// checkURL checks a parsed URL; it is used for task URLs, every request the
// client sends and every redirect hop.
func (g *Guard) checkURL(u *url.URL) error {
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	default:
		return &BlockedError{Host: u.Hostname(), Reason: ReasonScheme}
	}
	if u.Opaque != "" {
		return &BlockedError{Reason: ReasonInvalidURL}
	}
	if u.User != nil {
		return &BlockedError{Host: u.Hostname(), Reason: ReasonUserinfo}
	}
	host := u.Hostname()
	if host == "" {
		return &BlockedError{Reason: ReasonEmptyHost}
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return &BlockedError{Host: host, Reason: ReasonInvalidURL}
		}
	}
	name, addr, err := normalizeHost(host)
	if err != nil {
		return &BlockedError{Host: host, Reason: ReasonInvalidHost}
	}
	if addr.IsValid() {
		return g.checkAddr(host, addr)
	}
	if isLocalhost(name) && !g.allowed(ipv4Loopback) && !g.allowed(ipv6Loopback) {
		return &BlockedError{Host: host, Reason: ReasonLocalhost}
	}
	return nil
}

// isLocalhost reports whether name is localhost or under .localhost, which
// resolvers answer locally (RFC 6761).
func isLocalhost(name string) bool {
	return name == "localhost" || strings.HasSuffix(name, ".localhost")
}

// normalizeHost maps a URL host to either a lower-case ASCII name or an
// address. International names are mapped as a browser does (so full-width
// digits and dots become ASCII), one trailing dot is dropped, IPv6 literals are
// parsed, and a name whose last label is numeric is parsed as an IPv4 address in
// the WHATWG URL notation (1 to 4 parts, each decimal, 0x-hex or 0-octal), as
// browsers and inet_aton do; if that fails the host is invalid, as in a browser.
func normalizeHost(host string) (string, netip.Addr, error) {
	if strings.Contains(host, ":") {
		addr, err := netip.ParseAddr(host)
		if err != nil {
			return "", netip.Addr{}, err
		}
		return "", addr, nil
	}
	name := host
	if !isASCII(name) {
		mapped, err := idna.Lookup.ToASCII(name)
		if err != nil {
			return "", netip.Addr{}, err
		}
		name = mapped
	}
	name = strings.ToLower(name)
	name = strings.TrimSuffix(name, ".")
	if name == "" || !validHostChars(name) {
		return "", netip.Addr{}, errInvalidHost
	}
	if endsInNumber(name) {
		addr, err := parseIPv4(name)
		if err != nil {
			return "", netip.Addr{}, err
		}
		return "", addr, nil
	}
	return name, netip.Addr{}, nil
}

type hostError string

func (e hostError) Error() string { return string(e) }

const errInvalidHost = hostError("invalid host")

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// validHostChars reports whether name holds only letters, digits, '-', '_' and '.'.
func validHostChars(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// endsInNumber implements the WHATWG "ends in a number" check: the last label
// is all decimal digits or a 0x-prefixed hex number.
func endsInNumber(name string) bool {
	last := name[strings.LastIndexByte(name, '.')+1:]
	if last == "" {
		return false
	}
	if allDigits(last, 10) {
		return true
	}
	return strings.HasPrefix(last, "0x") && allDigits(last[2:], 16)
}

func allDigits(s string, base int) bool {
	for i := 0; i < len(s); i++ {
		if digitVal(s[i]) >= base {
			return false
		}
	}
	return true
}

func digitVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	default:
		return 99
	}
}

// parseIPv4 parses the WHATWG IPv4 host notation: "127.1", "2130706433",
// "0x7f.0.0.1", "0177.0.0.1" all mean 127.0.0.1.
func parseIPv4(name string) (netip.Addr, error) {
	parts := strings.Split(name, ".")
	if len(parts) > 4 {
		return netip.Addr{}, errInvalidHost
	}
	nums := make([]uint64, len(parts))
	for i, part := range parts {
		n, err := parseIPv4Number(part)
		if err != nil {
			return netip.Addr{}, err
		}
		nums[i] = n
	}
	var v uint64
	for i, n := range nums[:len(nums)-1] {
		if n > 255 {
			return netip.Addr{}, errInvalidHost
		}
		v |= n << (8 * (3 - i))
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, errInvalidHost
	}
	v |= last
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), nil
}

// parseIPv4Number parses one part: decimal, 0x-hex (possibly empty) or 0-octal.
func parseIPv4Number(part string) (uint64, error) {
	if part == "" {
		return 0, errInvalidHost
	}
	base := 10
	switch {
	case strings.HasPrefix(part, "0x"):
		base, part = 16, part[2:]
	case len(part) > 1 && part[0] == '0':
		base, part = 8, part[1:]
	}
	if part == "" {
		return 0, nil
	}
	if !allDigits(part, base) {
		return 0, errInvalidHost
	}
	n, err := strconv.ParseUint(part, base, 64)
	if err != nil || n > 0xffffffff {
		return 0, errInvalidHost
	}
	return n, nil
}

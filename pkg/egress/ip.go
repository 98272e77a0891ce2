package egress

import (
	"fmt"
	"net/netip"
)

// Reason says why a destination was refused.
type Reason string

// Reasons a destination is refused.
const (
	ReasonInvalidURL  Reason = "invalid url"
	ReasonScheme      Reason = "scheme not http or https"
	ReasonUserinfo    Reason = "credentials in url"
	ReasonEmptyHost   Reason = "empty host"
	ReasonInvalidHost Reason = "invalid host"
	ReasonLocalhost   Reason = "localhost name"
	ReasonLoopback    Reason = "loopback address"
	ReasonPrivate     Reason = "private address"
	ReasonLinkLocal   Reason = "link-local address"
	ReasonCGNAT       Reason = "shared address space (cgnat)"
	ReasonUniqueLocal Reason = "unique local address"
	ReasonUnspecified Reason = "unspecified address"
	ReasonMulticast   Reason = "multicast address"
	ReasonBroadcast   Reason = "broadcast address"
	ReasonMetadata    Reason = "cloud metadata address"
	ReasonReserved    Reason = "reserved address"
	ReasonNetwork     Reason = "network not tcp"
)

// BlockedError reports a URL or address the guard refuses. It matches ErrBlocked
// with errors.Is. It never holds a URL's path or query, which may be secret,
// and its message names the rule that refused but not a resolved address:
// the message reaches the task's error, and the addresses behind an internal
// name are not the caller's to learn.
type BlockedError struct {
	// Host is the URL host or dialled host name, if known.
	Host string
	// Addr is the refused address, if the refusal is about an address. It is
	// for logs and tests; Error does not print it.
	Addr netip.Addr
	// Reason says why.
	Reason Reason
}

// Error implements error.
func (e *BlockedError) Error() string {
	switch {
	case e.Host != "":
		return fmt.Sprintf("egress: blocked %q: %s", e.Host, e.Reason)
	default:
		return fmt.Sprintf("egress: blocked: %s", e.Reason)
	}
}

// Is reports whether target is ErrBlocked.
func (e *BlockedError) Is(target error) bool {
	return target == ErrBlocked
}

type blockedRange struct {
	prefix netip.Prefix
	reason Reason
}

// blockedRanges is checked in order, so more specific ranges come first.
var blockedRanges = []blockedRange{
	// IPv4.
	{netip.MustParsePrefix("169.254.169.254/32"), ReasonMetadata},
	{netip.MustParsePrefix("255.255.255.255/32"), ReasonBroadcast},
	{netip.MustParsePrefix("0.0.0.0/8"), ReasonUnspecified}, // Linux connects 0.0.0.0 to the local host.
	{netip.MustParsePrefix("10.0.0.0/8"), ReasonPrivate},
	{netip.MustParsePrefix("100.64.0.0/10"), ReasonCGNAT},
	{netip.MustParsePrefix("127.0.0.0/8"), ReasonLoopback},
	{netip.MustParsePrefix("169.254.0.0/16"), ReasonLinkLocal},
	{netip.MustParsePrefix("172.16.0.0/12"), ReasonPrivate},
	{netip.MustParsePrefix("192.0.0.0/24"), ReasonReserved},
	{netip.MustParsePrefix("192.168.0.0/16"), ReasonPrivate},
	{netip.MustParsePrefix("198.18.0.0/15"), ReasonReserved},
	{netip.MustParsePrefix("224.0.0.0/4"), ReasonMulticast},
	{netip.MustParsePrefix("240.0.0.0/4"), ReasonReserved},
	// IPv6.
	{netip.MustParsePrefix("fd00:ec2::254/128"), ReasonMetadata},
	{netip.MustParsePrefix("::/128"), ReasonUnspecified},
	{netip.MustParsePrefix("::1/128"), ReasonLoopback},
	{netip.MustParsePrefix("::/96"), ReasonReserved},          // Deprecated IPv4-compatible addresses.
	{netip.MustParsePrefix("64:ff9b:1::/48"), ReasonReserved}, // Local-use NAT64.
	{netip.MustParsePrefix("100::/64"), ReasonReserved},       // Discard-only.
	{netip.MustParsePrefix("fc00::/7"), ReasonUniqueLocal},
	{netip.MustParsePrefix("fe80::/10"), ReasonLinkLocal},
	{netip.MustParsePrefix("fec0::/10"), ReasonPrivate}, // Deprecated site-local.
	{netip.MustParsePrefix("ff00::/8"), ReasonMulticast},
}

var (
	nat64Prefix  = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour    = netip.MustParsePrefix("2002::/16")
	ipv4Loopback = netip.MustParseAddr("127.0.0.1")
	ipv6Loopback = netip.IPv6Loopback()
)

// checkAddr returns a *BlockedError if addr is in a blocked range that the
// allow list does not cover. IPv4-mapped IPv6 addresses are checked as IPv4, and
// IPv6 forms that embed an IPv4 address (NAT64 64:ff9b::/96, 6to4 2002::/16)
// are refused when the embedded address is.
func (g *Guard) checkAddr(host string, addr netip.Addr) error {
	if reason := g.blockReason(addr); reason != "" {
		return &BlockedError{Host: host, Addr: addr, Reason: reason}
	}
	return nil
}

// blockReason returns why addr is blocked, or "" if it may be dialled.
func (g *Guard) blockReason(addr netip.Addr) Reason {
	addr = addr.WithZone("").Unmap()
	if g.allowed(addr) {
		return ""
	}
	if addr.Is6() {
		if embedded, ok := embeddedIPv4(addr); ok {
			if r := g.blockReason(embedded); r != "" {
				return r
			}
		}
	}
	for _, r := range blockedRanges {
		if r.prefix.Contains(addr) {
			return r.reason
		}
	}
	return ""
}

// allowed reports whether addr is inside an allow-list range.
func (g *Guard) allowed(addr netip.Addr) bool {
	for _, p := range g.allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// embeddedIPv4 extracts the IPv4 address embedded in a NAT64 or 6to4 address.
func embeddedIPv4(addr netip.Addr) (netip.Addr, bool) {
	b := addr.As16()
	switch {
	case nat64Prefix.Contains(addr):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixToFour.Contains(addr):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

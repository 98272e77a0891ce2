package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
)

// dialContext is the transport's dial function. It resolves the host once,
// checks every address, and dials exactly a checked address, never the name, so
// a resolver that changes its answer between check and dial (DNS rebinding) has
// nothing to change.
func (g *Guard) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, &BlockedError{Reason: ReasonNetwork}
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("egress: dial: %w", err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, &BlockedError{Host: host, Reason: ReasonInvalidURL}
	}
	name, addr, err := normalizeHost(host)
	if err != nil {
		return nil, &BlockedError{Host: host, Reason: ReasonInvalidHost}
	}

	addrs := []netip.Addr{addr}
	if !addr.IsValid() {
		if addrs, err = g.resolve(ctx, name); err != nil {
			return nil, fmt.Errorf("egress: resolve %q: %w", name, err)
		}
	}

	var errs []error
	for _, a := range addrs {
		if !familyMatches(network, a) {
			continue
		}
		if err := g.checkAddr(host, a); err != nil {
			errs = append(errs, err)
			continue
		}
		conn, err := g.dialChecked(ctx, network, netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	switch len(errs) {
	case 0:
		return nil, fmt.Errorf("egress: dial %q: no %s address", host, network)
	case 1:
		return nil, errs[0]
	default:
		return nil, errors.Join(errs...)
	}
}

// dialChecked dials an already checked "ip:port" within the connect timeout.
func (g *Guard) dialChecked(ctx context.Context, network, address string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.ConnectTimeout)
	defer cancel()
	return g.dial(ctx, network, address)
}

// resolve looks name up once and returns its addresses, IPv4-mapped ones unmapped.
func (g *Guard) resolve(ctx context.Context, name string) ([]netip.Addr, error) {
	ipAddrs, err := g.resolver.LookupIPAddr(ctx, name)
	if err != nil {
		return nil, err
	}
	addrs := make([]netip.Addr, 0, len(ipAddrs))
	for _, ia := range ipAddrs {
		a, ok := netip.AddrFromSlice(ia.IP)
		if !ok {
			continue
		}
		addrs = append(addrs, a.Unmap().WithZone(ia.Zone))
	}
	if len(addrs) == 0 {
		return nil, errors.New("no addresses")
	}
	return addrs, nil
}

// familyMatches reports whether a may be dialled on network.
func familyMatches(network string, a netip.Addr) bool {
	switch network {
	case "tcp4":
		return a.Is4()
	case "tcp6":
		return a.Is6()
	default:
		return true
	}
}

// control is the net.Dialer's ControlContext hook: it runs on the socket about
// to connect and checks the address the kernel is asked to connect to. It is a
// second line behind dialContext's check, and the one that sees what is really
// dialled whatever the caller passed in.
func (g *Guard) control(_ context.Context, _ string, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &BlockedError{Reason: ReasonInvalidHost}
	}
	return g.checkAddr("", ap.Addr())
}

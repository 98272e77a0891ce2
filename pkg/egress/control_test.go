package egress

import (
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestControlChecksDialledAddress(t *testing.T) {
	t.Parallel()

	g, err := New(Config{})
	require.NoError(t, err)

	tests := []struct {
		address string
		reason  Reason
	}{
		{address: "203.0.113.10:443"},
		{address: "[2606:4700::1111]:443"},
		{address: "127.0.0.1:80", reason: ReasonLoopback},
		{address: "[::ffff:127.0.0.1]:80", reason: ReasonLoopback},
		{address: "[::1]:80", reason: ReasonLoopback},
		{address: "169.254.169.254:80", reason: ReasonMetadata},
		{address: "[fd00:ec2::254]:80", reason: ReasonMetadata},
		{address: "[64:ff9b::a00:1]:80", reason: ReasonPrivate},
		{address: "0.0.0.0:80", reason: ReasonUnspecified},
		{address: "not-an-address", reason: ReasonInvalidHost},
	}
	for _, tt := range tests {
		err := g.control(t.Context(), "tcp", tt.address, nil)
		if tt.reason == "" {
			require.NoError(t, err, tt.address)
			continue
		}
		var blocked *BlockedError
		require.ErrorAs(t, err, &blocked, tt.address)
		require.Equal(t, tt.reason, blocked.Reason, tt.address)
	}
}

func TestControlRefusesRealDial(t *testing.T) {
	t.Parallel()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })

	g, err := New(Config{})
	require.NoError(t, err)
	// Dial directly through a dialer carrying the guard's hook, bypassing the
	// resolve-and-check step, to prove the hook alone stops the connection.
	d := &net.Dialer{ControlContext: g.control}
	_, err = d.DialContext(t.Context(), "tcp", ln.Addr().String())
	require.ErrorIs(t, err, ErrBlocked)
}

func TestTransportIgnoresProxyEnvironment(t *testing.T) {
	t.Parallel()

	g, err := New(Config{})
	require.NoError(t, err)
	gt, ok := g.Client().Transport.(*guardedTransport)
	require.True(t, ok)
	tr, ok := gt.base.(*http.Transport)
	require.True(t, ok)
	require.Nil(t, tr.Proxy)
}

package clientip_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/clientip"
)

func request(remote string, header map[string][]string) *http.Request {
	r := &http.Request{RemoteAddr: remote, Header: http.Header{}}
	for k, vs := range header {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	return r
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	xff := func(v ...string) map[string][]string { return map[string][]string{"X-Forwarded-For": v} }
	fwd := func(v ...string) map[string][]string { return map[string][]string{"Forwarded": v} }
	trusted := []string{"10.0.0.0/8", "::1", "fd00::/8"}
	tests := []struct {
		name    string
		trusted []string
		header  string
		remote  string
		h       map[string][]string
		want    string
	}{
		{"no proxy trusted: header ignored", nil, "", "203.0.113.9:1234", xff("198.51.100.1"), "203.0.113.9"},
		{"untrusted peer: header ignored", trusted, "", "203.0.113.9:1234", xff("198.51.100.1"), "203.0.113.9"},
		{"trusted peer: client from header", trusted, "", "10.1.2.3:1234", xff("198.51.100.1"), "198.51.100.1"},
		{"forged entries left of the proxy's are skipped", trusted, "", "10.1.2.3:1234", xff("1.1.1.1, 2.2.2.2, 198.51.100.1"), "198.51.100.1"},
		{"chain of trusted proxies", trusted, "", "10.1.2.3:1234", xff("198.51.100.1, 10.9.9.9"), "198.51.100.1"},
		{"several header lines", trusted, "", "10.1.2.3:1234", xff("6.6.6.6", "198.51.100.1, 10.9.9.9"), "198.51.100.1"},
		{"all trusted: leftmost", trusted, "", "10.1.2.3:1234", xff("10.7.7.7, 10.9.9.9"), "10.7.7.7"},
		{"no header: the proxy", trusted, "", "10.1.2.3:1234", nil, "10.1.2.3"},
		{"garbage stops at the last good hop", trusted, "", "10.1.2.3:1234", xff("198.51.100.1, not-an-ip"), "10.1.2.3"},
		{"garbage left of the client is never reached", trusted, "", "10.1.2.3:1234", xff("junk, 198.51.100.1"), "198.51.100.1"},
		{"ipv6 peer trusted", trusted, "", "[::1]:1234", xff("2001:db8::5"), "2001:db8::5"},
		{"ipv4-mapped peer", trusted, "", "[::ffff:10.1.2.3]:1234", xff("198.51.100.1"), "198.51.100.1"},
		{"x-forwarded-for mode ignores Forwarded", trusted, "", "10.1.2.3:1234", fwd("for=198.51.100.1"), "10.1.2.3"},
		{"forwarded mode", trusted, "forwarded", "10.1.2.3:1234", fwd(`for=6.6.6.6, for=198.51.100.1;proto=https`), "198.51.100.1"},
		{"forwarded ipv6 with port", trusted, "forwarded", "10.1.2.3:1234", fwd(`for="[2001:db8::7]:443"`), "2001:db8::7"},
		{"forwarded mode ignores X-Forwarded-For", trusted, "forwarded", "10.1.2.3:1234", xff("198.51.100.1"), "10.1.2.3"},
		{"forwarded obfuscated node stops", trusted, "forwarded", "10.1.2.3:1234", fwd(`for=198.51.100.1, for=_hidden`), "10.1.2.3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := clientip.New(clientip.Options{TrustedProxies: tt.trusted, Header: tt.header})
			require.NoError(t, err)
			require.Equal(t, tt.want, r.ClientIP(request(tt.remote, tt.h)))
		})
	}
}

func TestKeyGroupsIPv6ByPrefix(t *testing.T) {
	t.Parallel()
	r, err := clientip.New(clientip.Options{})
	require.NoError(t, err)
	require.Equal(t, "198.51.100.7", r.Key("198.51.100.7"))
	require.Equal(t, "2001:db8:1:2::/64", r.Key("2001:db8:1:2:aaaa::1"))
	require.Equal(t, r.Key("2001:db8:1:2::1"), r.Key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "one /64, one bucket")
	require.NotEqual(t, r.Key("2001:db8:1:2::1"), r.Key("2001:db8:1:3::1"))
	require.Equal(t, "198.51.100.7", r.Key("::ffff:198.51.100.7"))
	require.Equal(t, "not an address", r.Key("not an address"))

	r48, err := clientip.New(clientip.Options{IPv6Prefix: 48})
	require.NoError(t, err)
	require.Equal(t, r48.Key("2001:db8:1:2::1"), r48.Key("2001:db8:1:3::1"))
	r128, err := clientip.New(clientip.Options{IPv6Prefix: 128})
	require.NoError(t, err)
	require.Equal(t, "2001:db8::1", r128.Key("2001:db8::1"))
}

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []clientip.Options{
		{TrustedProxies: []string{"10.0.0.0/33"}},
		{TrustedProxies: []string{"proxy.internal"}},
		{Header: "x-real-ip"},
		{IPv6Prefix: 129},
		{IPv6Prefix: -1},
	} {
		_, err := clientip.New(o)
		require.ErrorIs(t, err, clientip.ErrInvalid, "%+v", o)
	}
}

package egress_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/egress"
)

func TestCheckURL(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		url    string
		reason egress.Reason // Empty means the URL is accepted.
	}{
		{name: "public name", url: "https://hooks.example.com/services/T0/B0/secret"},
		{name: "public name with port", url: "http://example.com:8080/x?y=1"},
		{name: "public ipv4", url: "http://93.184.215.14/"},
		{name: "public ipv6", url: "https://[2606:4700::1111]/"},
		{name: "name ending in letters", url: "http://a1.b2.example/"},
		{name: "upper case scheme", url: "HTTPS://example.com/"},

		{name: "ftp", url: "ftp://example.com/file", reason: egress.ReasonScheme},
		{name: "file", url: "file:///etc/passwd", reason: egress.ReasonScheme},
		{name: "gopher", url: "gopher://example.com:70/", reason: egress.ReasonScheme},
		{name: "no scheme", url: "//example.com/", reason: egress.ReasonScheme},
		{name: "relative", url: "/just/a/path", reason: egress.ReasonScheme},
		{name: "opaque", url: "http:example.com", reason: egress.ReasonInvalidURL},
		{name: "unparsable", url: "http://exa mple.com/%zz", reason: egress.ReasonInvalidURL},
		{name: "user and password", url: "https://user:pass@example.com/", reason: egress.ReasonUserinfo},
		{name: "user only", url: "https://user@example.com/", reason: egress.ReasonUserinfo},
		{name: "empty userinfo", url: "https://@example.com/", reason: egress.ReasonUserinfo},
		{name: "empty host", url: "http:///path", reason: egress.ReasonEmptyHost},
		{name: "port only", url: "http://:8080/", reason: egress.ReasonEmptyHost},
		{name: "port zero", url: "http://example.com:0/", reason: egress.ReasonInvalidURL},

		{name: "localhost", url: "http://localhost/", reason: egress.ReasonLocalhost},
		{name: "localhost upper case trailing dot", url: "http://LOCALHOST./", reason: egress.ReasonLocalhost},
		{name: "sub.localhost", url: "http://api.localhost:8080/", reason: egress.ReasonLocalhost},
		{name: "deep localhost", url: "http://a.b.localhost/", reason: egress.ReasonLocalhost},
		{name: "localhost as a label is fine", url: "http://localhost.example.com/"},

		{name: "127.0.0.1", url: "http://127.0.0.1/", reason: egress.ReasonLoopback},
		{name: "127.0.0.1 trailing dot", url: "http://127.0.0.1./", reason: egress.ReasonLoopback},
		{name: "127.1", url: "http://127.1/", reason: egress.ReasonLoopback},
		{name: "127.0.1", url: "http://127.0.1:8080/", reason: egress.ReasonLoopback},
		{name: "decimal", url: "http://2130706433/", reason: egress.ReasonLoopback},
		{name: "hex dotted", url: "http://0x7f.0.0.1/", reason: egress.ReasonLoopback},
		{name: "hex upper case", url: "http://0X7F.0.0.1/", reason: egress.ReasonLoopback},
		{name: "hex whole", url: "http://0x7f000001/", reason: egress.ReasonLoopback},
		{name: "octal dotted", url: "http://0177.0.0.1/", reason: egress.ReasonLoopback},
		{name: "octal whole", url: "http://017700000001/", reason: egress.ReasonLoopback},
		{name: "mixed notation", url: "http://0x7f.1/", reason: egress.ReasonLoopback},
		// Go refuses percent-encoded ASCII in a host; a browser would decode it.
		{name: "percent encoded", url: "http://%31%32%37.0.0.1/", reason: egress.ReasonInvalidURL},
		{name: "percent encoded non-ascii", url: "http://%EF%BC%91%EF%BC%92%EF%BC%97.0.0.1/", reason: egress.ReasonLoopback},
		{name: "full-width digits", url: "http://１２７.０.０.１/", reason: egress.ReasonLoopback},
		{name: "ideographic dots", url: "http://127。0。0。1/", reason: egress.ReasonLoopback},
		{name: "ipv6 loopback", url: "http://[::1]/", reason: egress.ReasonLoopback},
		{name: "ipv6 loopback long", url: "http://[0:0:0:0:0:0:0:1]:80/", reason: egress.ReasonLoopback},
		{name: "ipv4-mapped loopback", url: "http://[::ffff:127.0.0.1]/", reason: egress.ReasonLoopback},
		{name: "ipv4-mapped loopback hex", url: "http://[::ffff:7f00:1]/", reason: egress.ReasonLoopback},
		{name: "ipv4-compatible loopback", url: "http://[::127.0.0.1]/", reason: egress.ReasonReserved},
		{name: "nat64 loopback", url: "http://[64:ff9b::127.0.0.1]/", reason: egress.ReasonLoopback},
		{name: "nat64 metadata", url: "http://[64:ff9b::a9fe:a9fe]/", reason: egress.ReasonMetadata},
		{name: "nat64 public", url: "http://[64:ff9b::5db8:d70e]/"},
		{name: "6to4 loopback", url: "http://[2002:7f00:1::1]/", reason: egress.ReasonLoopback},

		{name: "metadata", url: "http://169.254.169.254/latest/meta-data/", reason: egress.ReasonMetadata},
		{name: "metadata decimal", url: "http://2852039166/", reason: egress.ReasonMetadata},
		{name: "metadata mapped", url: "http://[::ffff:169.254.169.254]/", reason: egress.ReasonMetadata},
		{name: "metadata ipv6", url: "http://[fd00:ec2::254]/", reason: egress.ReasonMetadata},
		{name: "link-local", url: "http://169.254.1.1/", reason: egress.ReasonLinkLocal},
		{name: "link-local ipv6", url: "http://[fe80::1]/", reason: egress.ReasonLinkLocal},
		{name: "link-local ipv6 zone", url: "http://[fe80::1%25eth0]/", reason: egress.ReasonLinkLocal},
		{name: "private 10", url: "http://10.0.0.1/", reason: egress.ReasonPrivate},
		{name: "private 172.16", url: "http://172.16.5.4/", reason: egress.ReasonPrivate},
		{name: "private 172.31", url: "http://172.31.255.255/", reason: egress.ReasonPrivate},
		{name: "public 172.32", url: "http://172.32.0.1/"},
		{name: "private 192.168", url: "http://192.168.1.1/", reason: egress.ReasonPrivate},
		{name: "private short form", url: "http://10.1/", reason: egress.ReasonPrivate},
		{name: "cgnat", url: "http://100.64.0.1/", reason: egress.ReasonCGNAT},
		{name: "cgnat top", url: "http://100.127.255.254/", reason: egress.ReasonCGNAT},
		{name: "unique local", url: "http://[fc00::1]/", reason: egress.ReasonUniqueLocal},
		{name: "unique local fd", url: "http://[fd12:3456::1]/", reason: egress.ReasonUniqueLocal},
		{name: "unspecified", url: "http://0.0.0.0/", reason: egress.ReasonUnspecified},
		{name: "unspecified short", url: "http://0/", reason: egress.ReasonUnspecified},
		{name: "unspecified ipv6", url: "http://[::]/", reason: egress.ReasonUnspecified},
		{name: "multicast", url: "http://224.0.0.1/", reason: egress.ReasonMulticast},
		{name: "multicast ipv6", url: "http://[ff02::1]/", reason: egress.ReasonMulticast},
		{name: "broadcast", url: "http://255.255.255.255/", reason: egress.ReasonBroadcast},
		{name: "broadcast decimal", url: "http://4294967295/", reason: egress.ReasonBroadcast},

		{name: "ipv4 part too large", url: "http://1.2.3.256/", reason: egress.ReasonInvalidHost},
		{name: "ipv4 too many parts", url: "http://1.2.3.4.5/", reason: egress.ReasonInvalidHost},
		{name: "ipv4 number too large", url: "http://4294967296/", reason: egress.ReasonInvalidHost},
		{name: "bad octal", url: "http://08.0.0.1/", reason: egress.ReasonInvalidHost},
		{name: "odd characters", url: "http://exa$mple.com/", reason: egress.ReasonInvalidHost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			err := egress.CheckURL(tt.url)
			if tt.reason == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.ErrorIs(t, err, egress.ErrBlocked)
			var blocked *egress.BlockedError
			require.True(t, errors.As(err, &blocked), "error %T is not a *BlockedError", err)
			require.Equal(t, tt.reason, blocked.Reason, "error: %v", err)
		})
	}
}

func TestCheckURLKeepsPathOutOfError(t *testing.T) {
	t.Parallel()

	for _, raw := range []string{
		"http://127.0.0.1/services/T0/B0/s3cr3tpath?token=s3cr3tquery",
		"ftp://example.com/s3cr3tpath?token=s3cr3tquery",
		"https://user:s3cr3tpass@example.com/s3cr3tpath",
		"http://exa mple.com/s3cr3tpath?token=s3cr3tquery",
	} {
		err := egress.CheckURL(raw)
		require.Error(t, err)
		require.NotContains(t, err.Error(), "s3cr3t")
	}
}

func TestGuardCheckURLHonoursAllowList(t *testing.T) {
	t.Parallel()

	g, err := egress.New(egress.Config{AllowCIDRs: []string{"127.0.0.0/8", "10.20.0.0/16", "fd00::1"}})
	require.NoError(t, err)

	tests := []struct {
		url     string
		allowed bool
	}{
		{url: "http://127.0.0.1:8080/", allowed: true},
		{url: "http://127.1/", allowed: true},
		{url: "http://[::ffff:127.0.0.1]/", allowed: true},
		{url: "http://localhost:8080/", allowed: true},
		{url: "http://10.20.3.4/", allowed: true},
		{url: "http://[fd00::1]/", allowed: true},
		{url: "http://[fd00::2]/", allowed: false},
		{url: "http://10.21.0.1/", allowed: false},
		{url: "http://169.254.169.254/", allowed: false},
		{url: "https://user@127.0.0.1/", allowed: false},
	}
	for _, tt := range tests {
		err := g.CheckURL(tt.url)
		if tt.allowed {
			require.NoError(t, err, tt.url)
		} else {
			require.ErrorIs(t, err, egress.ErrBlocked, tt.url)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		cfg  egress.Config
	}{
		{name: "bad cidr", cfg: egress.Config{AllowCIDRs: []string{"10.0.0.0/33"}}},
		{name: "not an address", cfg: egress.Config{AllowCIDRs: []string{"intranet"}}},
		{name: "negative timeout", cfg: egress.Config{Timeout: -time.Second}},
		{name: "negative size", cfg: egress.Config{MaxResponseBytes: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := egress.New(tt.cfg)
			require.Error(t, err)
		})
	}
}

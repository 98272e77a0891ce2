package egress_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/egress"
)

// TestBlockedErrorNamesRuleNotAddress checks that a destination refused after
// resolution says which rule refused it and never the address its name
// resolved to, in the guard's error and in the client's error around it.
func TestBlockedErrorNamesRuleNotAddress(t *testing.T) {
	t.Parallel()

	g, err := egress.New(egress.Config{}, egress.WithResolver(fixedResolver{ip: net.ParseIP("10.1.2.3")}),
		egress.WithDialFunc(func(context.Context, string, string) (net.Conn, error) {
			t.Error("a blocked address was dialled")
			return nil, errNoDial
		}))
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, "https://db.internal/hook?token=s3cr3t", nil)
	require.NoError(t, err)
	_, err = g.Do(req)
	require.ErrorIs(t, err, egress.ErrBlocked)
	var blocked *egress.BlockedError
	require.True(t, errors.As(err, &blocked))
	require.Equal(t, egress.ReasonPrivate, blocked.Reason)
	require.Equal(t, "10.1.2.3", blocked.Addr.String(), "the address stays available to code")
	require.Equal(t, `egress: blocked "db.internal": private address`, blocked.Error())
	require.NotContains(t, err.Error(), "10.1.2.3")

	// The dialler's second line of defence says the rule only.
	require.Equal(t, "egress: blocked: loopback address", (&egress.BlockedError{Addr: netip.MustParseAddr("127.0.0.1"), Reason: egress.ReasonLoopback}).Error())
}

// TestPurposeAllowLists checks that each purpose's guard uses its own
// allow-list and that a purpose without one falls back to egress.allow_cidrs.
func TestPurposeAllowLists(t *testing.T) {
	t.Parallel()

	c := config.Defaults().Egress
	c.AllowCIDRs = []string{"127.0.0.0/8"}
	c.Webhooks.AllowCIDRs = []string{"10.0.0.0/8"}
	c.Callbacks.AllowCIDRs = []string{"192.168.1.0/24"}
	c.JWKS.AllowCIDRs = []string{"172.16.0.0/12"}

	tests := []struct {
		purpose egress.Purpose
		allowed []string
		blocked []string
	}{
		{egress.PurposeWebhooks, []string{"http://10.1.2.3/"}, []string{"http://127.0.0.1/", "http://192.168.1.5/"}},
		{egress.PurposeCallbacks, []string{"http://192.168.1.5/"}, []string{"http://127.0.0.1/", "http://10.1.2.3/"}},
		{egress.PurposePrice, []string{"http://127.0.0.1/"}, []string{"http://10.1.2.3/", "http://192.168.1.5/"}},
		{egress.PurposeNotify, []string{"http://127.0.0.1/"}, []string{"http://10.1.2.3/", "http://192.168.1.5/"}},
		{egress.PurposeJWKS, []string{"http://172.16.0.9/"}, []string{"http://127.0.0.1/", "http://10.1.2.3/", "http://192.168.1.5/"}},
	}
	for _, tc := range tests {
		g, err := egress.FromConfig(c, tc.purpose)
		require.NoError(t, err)
		for _, u := range tc.allowed {
			require.NoError(t, g.CheckURL(u), "%s: %s", tc.purpose, u)
		}
		for _, u := range tc.blocked {
			require.ErrorIs(t, g.CheckURL(u), egress.ErrBlocked, "%s: %s", tc.purpose, u)
		}
	}

	allow, err := egress.AllowCIDRs(c, egress.PurposeNotify)
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.0/8"}, allow)
	_, err = egress.FromConfig(c, egress.Purpose("smtp"))
	require.ErrorContains(t, err, `unknown purpose "smtp"`)
}

package egress_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/egress"
)

// TestFromConfigHonoursEverySetting checks that a guard built from the egress
// configuration applies its allow-list, response cap, redirect limit and total
// timeout.
func TestFromConfigHonoursEverySetting(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := newServerOn(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			_, _ = w.Write([]byte(strings.Repeat("x", 64)))
		case "/redirect":
			http.Redirect(w, r, "/big", http.StatusFound)
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}))
	c := config.Defaults().Egress
	c.AllowCIDRs = []string{"127.0.0.1/32"}
	c.MaxResponseBytes = 16
	c.MaxRedirects = -1
	c.Timeout = 200 * time.Millisecond
	g, err := egress.FromConfig(c, egress.PurposeWebhooks)
	require.NoError(t, err)

	resp, err := get(t, g, srv.URL+"/big")
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	require.ErrorIs(t, err, egress.ErrResponseTooLarge, "max_response_bytes")

	resp, err = get(t, g, srv.URL+"/redirect")
	require.NoError(t, err)
	require.Equal(t, http.StatusFound, resp.StatusCode, "max_redirects < 0: not followed")

	_, err = get(t, g, srv.URL+"/slow")
	var netErr net.Error
	require.True(t, errors.As(err, &netErr) && netErr.Timeout(), "timeout: got %v", err)

	// Without the allow-list the loopback server is blocked.
	g, err = egress.FromConfig(config.Defaults().Egress, egress.PurposeWebhooks)
	require.NoError(t, err)
	_, err = get(t, g, srv.URL+"/big")
	require.ErrorIs(t, err, egress.ErrBlocked)

	_, err = egress.FromConfig(config.EgressConfig{AllowCIDRs: []string{"not-a-cidr"}}, egress.PurposeWebhooks)
	require.ErrorContains(t, err, "not-a-cidr")
}

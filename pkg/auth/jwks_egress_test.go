package auth

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/egress"
)

// TestJWKSThroughEgressGuard builds the authenticator as the API and the
// monitor do (ServiceFromConfig) with a JWKS URL on a loopback or private
// address: the key set is not fetched (the server is never hit, the token is
// not accepted, the error names the rule and not the resolved address) unless
// the range is allow-listed in egress.jwks.allow_cidrs, or in
// egress.allow_cidrs, which a purpose without its own list falls back to.
func TestJWKSThroughEgressGuard(t *testing.T) {
	t.Parallel()
	k := getKeys(t)
	srv := newJWKSServer(t, rsaJWK("r1", &k.rsa.PublicKey))
	// "localhost" resolves to the loopback address the server listens on.
	byName := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	now := time.Now()
	token := sign(t, jwt.SigningMethodRS256, "r1", k.rsa,
		jwt.MapClaims{"sub": "alice", "role": "viewer", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	egressWith := func(edit func(*config.EgressConfig)) config.EgressConfig {
		eg := config.Defaults().Egress
		edit(&eg)
		return eg
	}

	refused := []struct {
		name, url, rule string
		eg              config.EgressConfig
	}{
		{"loopback by address", srv.URL, "loopback address", config.Defaults().Egress},
		{"localhost", byName, "localhost name", config.Defaults().Egress},
		{"private address", "http://10.20.30.40:8080/jwks.json", "private address", config.Defaults().Egress},
		{"another purpose's list does not count", srv.URL, "loopback address",
			egressWith(func(eg *config.EgressConfig) { eg.Webhooks.AllowCIDRs = []string{"127.0.0.0/8"} })},
	}
	for _, tc := range refused {
		s, err := ServiceFromConfig(config.AuthConfig{JWKSURL: tc.url}, tc.eg, nil)
		require.NoError(t, err, tc.name)
		_, err = s.Authenticate(context.Background(), token)
		require.ErrorIs(t, err, ErrUnavailable, tc.name)
		require.ErrorIs(t, err, egress.ErrBlocked, tc.name)
		require.ErrorContains(t, err, tc.rule, tc.name)
	}
	require.Zero(t, srv.hits.Load(), "a refused key server is never reached")

	// A name that resolves to a loopback or private address: refused, and the
	// error names the rule and the host, never the address it resolved to.
	_, port, err := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	internal := "http://idp.corp.example:" + port + "/jwks.json"
	for _, ip := range []string{"127.0.0.1", "10.20.30.40"} {
		client, err := JWKSClient(config.Defaults().Egress, egress.WithResolver(fixedResolver(ip)))
		require.NoError(t, err)
		v, err := NewJWTVerifier(JWTConfigFrom(config.AuthConfig{JWKSURL: internal}, client))
		require.NoError(t, err)
		_, err = v.Authenticate(context.Background(), token)
		require.ErrorIs(t, err, ErrUnavailable, ip)
		require.ErrorIs(t, err, egress.ErrBlocked, ip)
		require.ErrorContains(t, err, `blocked "idp.corp.example"`, ip)
		require.NotContains(t, err.Error(), ip, "the resolved address is not named")
	}
	require.Zero(t, srv.hits.Load(), "a refused key server is never reached")
	client, err := JWKSClient(egressWith(func(eg *config.EgressConfig) { eg.JWKS.AllowCIDRs = []string{"127.0.0.0/8"} }),
		egress.WithResolver(fixedResolver("127.0.0.1")))
	require.NoError(t, err)
	v, err := NewJWTVerifier(JWTConfigFrom(config.AuthConfig{JWKSURL: internal}, client))
	require.NoError(t, err)
	_, err = v.Authenticate(context.Background(), token)
	require.NoError(t, err, "an allow-listed name is fetched")
	require.EqualValues(t, 1, srv.hits.Load())

	allowed := []struct {
		name string
		url  string
		eg   config.EgressConfig
	}{
		{"egress.jwks.allow_cidrs", byName,
			egressWith(func(eg *config.EgressConfig) { eg.JWKS.AllowCIDRs = []string{"127.0.0.0/8"} })},
		{"egress.allow_cidrs", srv.URL,
			egressWith(func(eg *config.EgressConfig) { eg.AllowCIDRs = []string{"127.0.0.0/8"} })},
	}
	for _, tc := range allowed {
		s, err := ServiceFromConfig(config.AuthConfig{JWKSURL: tc.url}, tc.eg, nil)
		require.NoError(t, err, tc.name)
		p, err := s.Authenticate(context.Background(), token)
		require.NoError(t, err, tc.name)
		require.Equal(t, "jwt:alice", p.ID, tc.name)
	}
	require.EqualValues(t, 3, srv.hits.Load(), "one fetch per allowed authenticator")
}

// fixedResolver resolves every name to one address.
type fixedResolver string

func (r fixedResolver) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	return []net.IPAddr{{IP: net.ParseIP(string(r))}}, nil
}

// TestJWKSGuardedRedirectNotFollowed: through the guarded client too, a
// redirect from the key server is a failed fetch, even to an allowed address.
func TestJWKSGuardedRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	k := getKeys(t)
	target := newJWKSServer(t, rsaJWK("r1", &k.rsa.PublicKey))
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
	t.Cleanup(redirect.Close)
	eg := config.Defaults().Egress
	eg.JWKS.AllowCIDRs = []string{"127.0.0.0/8"}
	s, err := ServiceFromConfig(config.AuthConfig{JWKSURL: redirect.URL}, eg, nil)
	require.NoError(t, err)
	now := time.Now()
	_, err = s.Authenticate(context.Background(), sign(t, jwt.SigningMethodRS256, "r1", k.rsa,
		jwt.MapClaims{"sub": "x", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}))
	require.ErrorIs(t, err, ErrUnavailable)
	require.ErrorContains(t, err, "status 302")
	require.Zero(t, target.hits.Load(), "the redirect was not followed")
}

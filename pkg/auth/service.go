package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/egress"
)

// ErrUnavailable means a credential could not be checked because a backend
// (PostgreSQL for API keys, the JWKS server before its first answer) is down:
// the request may be retried (503), and the credential is not known to be bad.
var ErrUnavailable = errors.New("authentication unavailable")

// BootstrapPrincipalID is the principal id of the bootstrap admin key.
const BootstrapPrincipalID = "bootstrap-admin"

// MinBootstrapKeyLen is the shortest bootstrap admin key accepted.
const MinBootstrapKeyLen = 20

// ServiceOptions configure a Service. Each credential kind is optional.
type ServiceOptions struct {
	// BootstrapAdminKey is an admin key from the configuration
	// (auth.bootstrap_admin_key). If empty, none.
	BootstrapAdminKey string
	// Keys authenticates API keys. If nil, API keys are refused.
	Keys *KeyStore
	// JWT authenticates tokens. If nil, JWTs are refused.
	JWT *JWTVerifier
}

// Service authenticates every kind of bearer credential: the bootstrap admin
// key, API keys ("tfk_…", checked against the database on every request so a
// revocation takes effect at once) and JWTs.
type Service struct {
	bootstrap StaticTokens
	keys      *KeyStore
	jwt       *JWTVerifier
}

// NewService returns a Service. A bootstrap key shorter than
// MinBootstrapKeyLen is refused.
func NewService(o ServiceOptions) (*Service, error) {
	s := &Service{keys: o.Keys, jwt: o.JWT}
	if o.BootstrapAdminKey != "" {
		if len(o.BootstrapAdminKey) < MinBootstrapKeyLen {
			return nil, fmt.Errorf("auth: auth.bootstrap_admin_key must be at least %d characters", MinBootstrapKeyLen)
		}
		s.bootstrap = StaticTokens{o.BootstrapAdminKey: {ID: BootstrapPrincipalID, Name: "bootstrap admin", Role: Admin}}
	}
	return s, nil
}

// ServiceFromConfig returns the Service the auth configuration describes: the
// bootstrap admin key (if set), API keys through keys, and JWTs when a JWT
// secret or a JWKS URL is set. The JWKS is fetched through the egress guard of
// eg's jwks purpose (JWKSClient), never with a plain client.
func ServiceFromConfig(c config.AuthConfig, eg config.EgressConfig, keys *KeyStore) (*Service, error) {
	var client *http.Client
	if c.JWKSURL != "" {
		var err error
		if client, err = JWKSClient(eg); err != nil {
			return nil, err
		}
	}
	var verifier *JWTVerifier
	v, err := NewJWTVerifier(JWTConfigFrom(c, client))
	switch {
	case err == nil:
		verifier = v
	case !errors.Is(err, ErrNoJWT):
		return nil, err
	}
	return NewService(ServiceOptions{BootstrapAdminKey: c.BootstrapAdminKey, Keys: keys, JWT: verifier})
}

// JWKSClient returns the client that fetches the identity provider's key set:
// the egress guard of purpose jwks (egress.jwks.allow_cidrs, else
// egress.allow_cidrs), so that a JWKS URL resolving to a loopback, private,
// link-local or metadata address is refused unless its range is allow-listed,
// and a refusal names the rule, never the resolved address. The verifier
// follows no redirect on top of it (NewJWTVerifier). opts are passed on to the
// guard (tests resolve names with their own resolver).
func JWKSClient(eg config.EgressConfig, opts ...egress.Option) (*http.Client, error) {
	g, err := egress.FromConfig(eg, egress.PurposeJWKS, opts...)
	if err != nil {
		return nil, fmt.Errorf("auth: jwks client: %w", err)
	}
	return g.Client(), nil
}

// Credential kinds, as recorded in audit details.
const (
	KindBootstrap = "bootstrap"
	KindAPIKey    = "api_key"
	KindJWT       = "jwt"
	KindUnknown   = "unknown"
)

// CredentialKind tells which kind of credential bearer looks like, without
// checking it.
func CredentialKind(bearer string) string {
	switch {
	case strings.HasPrefix(bearer, KeyPrefix):
		return KindAPIKey
	case strings.Count(bearer, ".") == 2:
		return KindJWT
	}
	return KindUnknown
}

// Authenticate implements Authenticator. Failures wrap ErrUnauthenticated (401)
// or ErrUnavailable (503).
func (s *Service) Authenticate(ctx context.Context, bearer string) (Principal, error) {
	if bearer == "" {
		return Principal{}, fmt.Errorf("%w: no credentials", ErrUnauthenticated)
	}
	if len(bearer) > MaxTokenBytes {
		return Principal{}, fmt.Errorf("%w: credential too large", ErrUnauthenticated)
	}
	if s.bootstrap != nil {
		if p, err := s.bootstrap.Authenticate(ctx, bearer); err == nil {
			return p, nil
		}
	}
	switch CredentialKind(bearer) {
	case KindAPIKey:
		if s.keys != nil {
			return s.keys.Authenticate(ctx, bearer)
		}
	case KindJWT:
		if s.jwt != nil {
			return s.jwt.Authenticate(ctx, bearer)
		}
	}
	return Principal{}, fmt.Errorf("%w: unrecognised credential", ErrUnauthenticated)
}

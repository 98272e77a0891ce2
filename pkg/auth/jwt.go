package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/taskforge/taskforge/pkg/config"
)

// Limits of tokens.
const (
	// MaxTokenBytes is the largest bearer credential considered at all.
	MaxTokenBytes = 8 << 10
	maxSubject    = 200
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
)

// JWTConfig configures JWT verification.
type JWTConfig struct {
	// Secret verifies HS256 tokens. If empty, HS256 is refused.
	Secret []byte
	// JWKSURL serves the RS256/ES256 keys. If empty, RS256 and ES256 are refused.
	JWKSURL string
	// HTTPClient fetches the key set. Required with JWKSURL.
	HTTPClient *http.Client
	// Issuer and Audience, when set, must match the iss and aud claims.
	Issuer   string
	Audience string
	// Algorithms pins the accepted algorithms (HS256, RS256, ES256). If empty,
	// all three; an algorithm without its key (secret or JWKS) is dropped.
	Algorithms []string
	// Leeway is the clock skew allowed. If zero, DefaultLeeway.
	Leeway time.Duration
	// JWKSRefresh is how long a fetched key set is used before it is fetched
	// again. If zero, DefaultJWKSRefresh.
	JWKSRefresh time.Duration
	// JWKSMinInterval is the least time between two fetches. If zero,
	// DefaultJWKSMinInterval.
	JWKSMinInterval time.Duration
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// JWTConfigFrom maps the auth configuration section to a JWTConfig. client
// fetches the JWKS.
func JWTConfigFrom(c config.AuthConfig, client *http.Client) JWTConfig {
	return JWTConfig{
		Secret: []byte(c.JWTSecret), JWKSURL: c.JWKSURL, HTTPClient: client,
		Issuer: c.JWTIssuer, Audience: c.JWTAudience, Algorithms: c.JWTAlgorithms,
	}
}

// JWTVerifier authenticates JSON Web Tokens: signature with a pinned
// algorithm, exp required, nbf honoured, iss and aud checked when configured.
// The role comes from the "role" claim (viewer when absent; an unknown role is
// refused) and the principal id is "jwt:" + sub.
type JWTVerifier struct {
	secret []byte
	jwks   *jwksCache
	algs   []string
	parser *jwt.Parser
}

// ErrNoJWT means neither a secret nor a JWKS URL is configured.
var ErrNoJWT = errors.New("auth: no jwt secret or jwks url configured")

// NewJWTVerifier returns a verifier, or ErrNoJWT when cfg enables no
// algorithm.
func NewJWTVerifier(cfg JWTConfig) (*JWTVerifier, error) {
	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = []string{"HS256", "RS256", "ES256"}
	}
	v := &JWTVerifier{secret: cfg.Secret}
	for _, a := range algs {
		switch a {
		case "HS256":
			if len(cfg.Secret) > 0 {
				v.algs = append(v.algs, a)
			}
		case "RS256", "ES256":
			if cfg.JWKSURL != "" {
				v.algs = append(v.algs, a)
			}
		default:
			return nil, fmt.Errorf("auth: jwt algorithm %q is not supported (HS256, RS256, ES256)", a)
		}
	}
	if len(v.algs) == 0 {
		return nil, ErrNoJWT
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	if cfg.JWKSURL != "" {
		if cfg.HTTPClient == nil {
			return nil, errors.New("auth: jwks url needs an http client")
		}
		c := &jwksCache{url: cfg.JWKSURL, client: cfg.HTTPClient, refresh: cfg.JWKSRefresh,
			minInterval: cfg.JWKSMinInterval, now: now}
		if c.refresh <= 0 {
			c.refresh = DefaultJWKSRefresh
		}
		if c.minInterval <= 0 {
			c.minInterval = DefaultJWKSMinInterval
		}
		v.jwks = c
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.algs), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway), jwt.WithTimeFunc(now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Algorithms returns the algorithms the verifier accepts.
func (v *JWTVerifier) Algorithms() []string { return slices.Clone(v.algs) }

// claims are the claims read from a token.
type claims struct {
	jwt.RegisteredClaims
	Role string `json:"role"`
	Name string `json:"name"`
}

// Authenticate implements Authenticator for JWTs. Failures wrap
// ErrUnauthenticated with the reason; an unreachable key server with no keys
// fetched yet wraps ErrUnavailable.
func (v *JWTVerifier) Authenticate(ctx context.Context, token string) (Principal, error) {
	if len(token) > MaxTokenBytes {
		return Principal{}, fmt.Errorf("%w: token too large", ErrUnauthenticated)
	}
	var c claims
	var keyErr error
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		k, err := v.key(ctx, t)
		keyErr = err
		return k, err
	})
	switch {
	case keyErr != nil:
		// Already wraps ErrUnauthenticated or ErrUnavailable.
		return Principal{}, keyErr
	case err != nil:
		return Principal{}, fmt.Errorf("%w: jwt: %w", ErrUnauthenticated, err)
	}
	if c.Subject == "" || len(c.Subject) > maxSubject || strings.ContainsFunc(c.Subject, isControl) {
		return Principal{}, fmt.Errorf("%w: jwt: sub missing or invalid", ErrUnauthenticated)
	}
	role := Viewer
	if c.Role != "" {
		role = Role(c.Role)
		if !role.Valid() {
			return Principal{}, fmt.Errorf("%w: jwt: unknown role", ErrUnauthenticated)
		}
	}
	name := c.Name
	if name == "" || len(name) > maxSubject || strings.ContainsFunc(name, isControl) {
		name = c.Subject
	}
	return Principal{ID: "jwt:" + c.Subject, Name: name, Role: role}, nil
}

// key returns the verification key for t. The algorithm is already one of the
// pinned ones (WithValidMethods); the key must also be of that algorithm, so
// an HS256 token is never checked against a public key.
func (v *JWTVerifier) key(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	switch alg {
	case "HS256":
		if len(v.secret) == 0 {
			return nil, fmt.Errorf("%w: jwt: hs256 not enabled", ErrUnauthenticated)
		}
		return v.secret, nil
	case "RS256", "ES256":
		if v.jwks == nil {
			return nil, fmt.Errorf("%w: jwt: %s not enabled", ErrUnauthenticated, alg)
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, fmt.Errorf("%w: jwt: kid header missing", ErrUnauthenticated)
		}
		k, err := v.jwks.key(ctx, kid)
		if err != nil {
			return nil, err
		}
		if k.alg != alg {
			return nil, fmt.Errorf("%w: jwt: key %s is not for %s", ErrUnauthenticated, kid, alg)
		}
		return k.key, nil
	}
	return nil, fmt.Errorf("%w: jwt: algorithm %s not accepted", ErrUnauthenticated, alg)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

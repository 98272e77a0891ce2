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
	// DefaultMaxLifetime is the longest a token may live (exp - iat).
	DefaultMaxLifetime = 24 * time.Hour
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
	// MaxLifetime is the longest a token may live: iat is required, and
	// exp - iat may not exceed it (nor exp lie further than it from now). If
	// zero, DefaultMaxLifetime.
	MaxLifetime time.Duration
	// RevokedIDs lists the jti of revoked tokens. Default none.
	RevokedIDs []string
	// MinIssuedAt refuses every token issued before it (the lever that logs
	// everyone out at once). Default zero: none refused.
	MinIssuedAt time.Time
	// Revoked, when set, says whether a token of subject sub with id jti
	// issued at iat is revoked (a per-subject minimum iat or a deny-list kept
	// elsewhere). Default nil.
	Revoked func(sub, jti string, iat time.Time) bool
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
	// Validate has checked the format; a bad value refuses every token.
	var minIAT time.Time
	if c.JWTMinIssuedAt != "" {
		var err error
		if minIAT, err = time.Parse(time.RFC3339, c.JWTMinIssuedAt); err != nil {
			minIAT = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		}
	}
	return JWTConfig{
		Secret: []byte(c.JWTSecret), JWKSURL: c.JWKSURL, HTTPClient: client,
		Issuer: c.JWTIssuer, Audience: c.JWTAudience, Algorithms: c.JWTAlgorithms,
		Leeway: c.JWTLeeway, MaxLifetime: c.JWTMaxLifetime, RevokedIDs: c.JWTRevokedIDs, MinIssuedAt: minIAT,
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
	// Lifetime and revocation checks, after the signature.
	now         func() time.Time
	leeway      time.Duration
	maxLifetime time.Duration
	revokedIDs  map[string]bool
	minIAT      time.Time
	revoked     func(sub, jti string, iat time.Time) bool
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
		// Redirects are never followed: the key set comes from the configured
		// URL or not at all (a redirect could lead the fetch anywhere).
		client := *cfg.HTTPClient
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		c := &jwksCache{url: cfg.JWKSURL, client: &client, refresh: cfg.JWKSRefresh,
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
	v.now, v.leeway, v.maxLifetime, v.minIAT, v.revoked = now, leeway, cfg.MaxLifetime, cfg.MinIssuedAt, cfg.Revoked
	if v.maxLifetime <= 0 {
		v.maxLifetime = DefaultMaxLifetime
	}
	v.revokedIDs = map[string]bool{}
	for _, id := range cfg.RevokedIDs {
		v.revokedIDs[id] = true
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
	if err := v.checkLifetime(c); err != nil {
		return Principal{}, err
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

// checkLifetime refuses a token without iat, one that lives longer than the
// maximum lifetime (exp - iat, or exp - now when iat was forged into the
// past), and a revoked one.
func (v *JWTVerifier) checkLifetime(c claims) error {
	if c.IssuedAt == nil || c.ExpiresAt == nil {
		return fmt.Errorf("%w: jwt: iat and exp are required", ErrUnauthenticated)
	}
	iat, exp := c.IssuedAt.Time, c.ExpiresAt.Time
	if exp.Sub(iat) > v.maxLifetime || exp.Sub(v.now()) > v.maxLifetime+v.leeway {
		return fmt.Errorf("%w: jwt: lifetime exceeds %s", ErrUnauthenticated, v.maxLifetime)
	}
	if c.ID != "" && v.revokedIDs[c.ID] {
		return fmt.Errorf("%w: jwt: token revoked", ErrUnauthenticated)
	}
	if !v.minIAT.IsZero() && iat.Before(v.minIAT) {
		return fmt.Errorf("%w: jwt: token issued before auth.jwt_min_issued_at", ErrUnauthenticated)
	}
	if v.revoked != nil && v.revoked(c.Subject, c.ID, iat) {
		return fmt.Errorf("%w: jwt: token revoked", ErrUnauthenticated)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

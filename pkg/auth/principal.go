// Package auth authenticates callers (API keys and JWTs) and decides what they may
// do. A Principal is the authenticated caller; handlers read it from the context.
package auth

import (
	"context"
	"crypto/subtle"
	"errors"
)

// Role is a caller's role.
type Role string

// The roles, from least to most powerful.
const (
	Viewer   Role = "viewer"
	Operator Role = "operator"
	Admin    Role = "admin"
)

// Valid reports whether r names a role.
func (r Role) Valid() bool { return r == Viewer || r == Operator || r == Admin }

// Principal is an authenticated caller.
type Principal struct {
	// ID is stable per caller ("key_…" for API keys, "jwt:<sub>" for tokens);
	// tasks record it as created_by.
	ID   string
	Name string
	Role Role
}

// IsAdmin reports whether p may see and act on everyone's resources.
func (p Principal) IsAdmin() bool { return p.Role == Admin }

// CanSee reports whether p may see a resource created by owner.
func (p Principal) CanSee(owner string) bool { return p.IsAdmin() || p.ID == owner }

// CanCreate reports whether p may create tasks (operators and admins).
func (p Principal) CanCreate() bool { return p.Role == Operator || p.Role == Admin }

type ctxKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal in ctx.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// ErrUnauthenticated means no or invalid credentials (401).
var ErrUnauthenticated = errors.New("unauthenticated")

// Authenticator turns a bearer credential (an API key or a JWT) into a Principal.
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (Principal, error)
}

// StaticTokens authenticates a fixed set of tokens; it serves the bootstrap
// admin key and tests.
type StaticTokens map[string]Principal

// Authenticate implements Authenticator in constant time per token.
func (s StaticTokens) Authenticate(_ context.Context, bearer string) (Principal, error) {
	var found Principal
	ok := false
	for tok, p := range s {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(bearer)) == 1 {
			found, ok = p, true
		}
	}
	if !ok || bearer == "" {
		return Principal{}, ErrUnauthenticated
	}
	return found, nil
}

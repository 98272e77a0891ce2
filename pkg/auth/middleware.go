package auth

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/clientip"
	"github.com/taskforge/taskforge/pkg/problem"
)

// DefaultRealm names the protection space in WWW-Authenticate.
const DefaultRealm = "taskforge"

// MiddlewareOptions configure Middleware.
type MiddlewareOptions struct {
	// Audit records failed authentications (a credential was presented and
	// refused), aggregated per client address and minute (audit.Entry's
	// Aggregate): a flood adds one row with a count, not a row per request.
	// Requests without any credential are not recorded: every browser's first
	// request is one. If nil, nothing is recorded.
	Audit audit.Recorder
	// Log receives audit write failures and backend outages. If nil, nothing is
	// logged.
	Log *zap.Logger
	// AllowBasic also accepts the credential as the password of HTTP Basic
	// authentication (any user name), so a browser can log in to the monitor.
	// Default false.
	AllowBasic bool
	// Realm is the WWW-Authenticate realm. If empty, DefaultRealm.
	Realm string
	// Skip lets requests through without authentication, e.g.
	// SkipPaths("/healthz", "/readyz"). If nil, every request is checked.
	Skip func(r *http.Request) bool
	// ClientIP returns the caller's address for the audit log (Echo's
	// c.RealIP() behind a trusted proxy). If nil, the host of r.RemoteAddr.
	ClientIP func(r *http.Request) string
	// AddressKey groups client addresses for the aggregated failure rows
	// (clientip.Resolver.Key). If nil, an IPv4 address or an IPv6 /64.
	AddressKey func(addr string) string
	// RequestID returns the request's id for the audit log. If nil, the
	// X-Request-Id of the response (set by Echo's RequestID middleware), else
	// of the request.
	RequestID func(w http.ResponseWriter, r *http.Request) string
}

// SkipPaths returns a Skip function for exact paths.
func SkipPaths(paths ...string) func(r *http.Request) bool {
	set := make(map[string]bool, len(paths))
	for _, p := range paths {
		set[p] = true
	}
	return func(r *http.Request) bool { return set[r.URL.Path] }
}

// Middleware authenticates every request with a, from "Authorization: Bearer
// <credential>" (or the HTTP Basic password when AllowBasic), and puts the
// Principal on the request's context (read it with FromContext). A missing or
// refused credential gets 401 problem+json with WWW-Authenticate; a backend
// outage 503 with Retry-After. It is plain net/http: Echo uses it through
// echo.WrapMiddleware.
func Middleware(a Authenticator, o MiddlewareOptions) func(http.Handler) http.Handler {
	if o.Realm == "" {
		o.Realm = DefaultRealm
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.ClientIP == nil {
		o.ClientIP = remoteHost
	}
	if o.AddressKey == nil {
		o.AddressKey = func(addr string) string { return clientip.Key(addr, clientip.DefaultIPv6Prefix) }
	}
	if o.RequestID == nil {
		o.RequestID = func(w http.ResponseWriter, r *http.Request) string {
			if id := w.Header().Get("X-Request-Id"); id != "" {
				return id
			}
			return r.Header.Get("X-Request-Id")
		}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if o.Skip != nil && o.Skip(r) {
				next.ServeHTTP(w, r)
				return
			}
			cred, ok := credential(r, o.AllowBasic)
			if !ok {
				o.challenge(w, r, false, "missing or malformed credentials: send Authorization: Bearer <API key or JWT>")
				return
			}
			p, err := a.Authenticate(r.Context(), cred)
			if err == nil {
				next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
				return
			}
			if errors.Is(err, ErrUnavailable) {
				o.Log.Warn("authentication backend unavailable", zap.Error(err))
				w.Header().Set("Retry-After", "5")
				problem.WriteStatus(w, r, http.StatusServiceUnavailable, "authentication is temporarily unavailable")
				return
			}
			o.record(w, r, cred, err)
			o.challenge(w, r, true, "invalid credentials")
		})
	}
}

// credential extracts the bearer credential of r.
func credential(r *http.Request, allowBasic bool) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, rest, ok := strings.Cut(h, " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		tok := strings.TrimSpace(rest)
		return tok, tok != ""
	}
	if allowBasic {
		if _, pass, ok := r.BasicAuth(); ok && pass != "" {
			return pass, true
		}
	}
	return "", false
}

// challenge answers 401.
func (o MiddlewareOptions) challenge(w http.ResponseWriter, r *http.Request, invalid bool, detail string) {
	bearer := `Bearer realm="` + o.Realm + `"`
	if invalid {
		bearer += `, error="invalid_token"`
	}
	w.Header().Add("WWW-Authenticate", bearer)
	if o.AllowBasic {
		w.Header().Add("WWW-Authenticate", `Basic realm="`+o.Realm+`", charset="UTF-8"`)
	}
	problem.WriteStatus(w, r, http.StatusUnauthorized, detail)
}

// record writes the audit row of a refused credential. The credential itself
// is never recorded: only its kind, an API key's public prefix and the reason.
func (o MiddlewareOptions) record(w http.ResponseWriter, r *http.Request, cred string, cause error) {
	if o.Audit == nil {
		return
	}
	kind := CredentialKind(cred)
	details := map[string]any{
		"credential": kind,
		"reason":     strings.TrimPrefix(cause.Error(), ErrUnauthenticated.Error()+": "),
		"method":     r.Method,
		"path":       r.URL.Path,
	}
	if prefix, ok := KeyLookupPrefix(cred); ok {
		details["key_prefix"] = prefix
	}
	ip := o.ClientIP(r)
	err := o.Audit.Record(r.Context(), audit.Entry{
		Action: audit.ActionAuthFailure, Outcome: audit.Failure,
		ClientIP: ip, RequestID: o.RequestID(w, r), Details: details, Aggregate: o.AddressKey(ip),
	})
	if err != nil {
		o.Log.Error("audit authentication failure", zap.Error(err))
	}
}

// RequireRole refuses, with 403 problem+json, requests whose principal's role
// is below min; requests without a principal get 401. Put it after Middleware,
// e.g. on /metrics and the monitor's UI with Admin.
func RequireRole(min Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := FromContext(r.Context())
			switch {
			case !ok:
				w.Header().Set("WWW-Authenticate", `Bearer realm="`+DefaultRealm+`"`)
				problem.WriteStatus(w, r, http.StatusUnauthorized, "authentication required")
			case !p.Role.AtLeast(min):
				problem.WriteStatus(w, r, http.StatusForbidden, "this needs the "+string(min)+" role")
			default:
				next.ServeHTTP(w, r)
			}
		})
	}
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// PrincipalFrom returns the principal of ctx, or the zero Principal (no role,
// allowed nothing) when there is none.
func PrincipalFrom(ctx context.Context) Principal {
	p, _ := FromContext(ctx)
	return p
}

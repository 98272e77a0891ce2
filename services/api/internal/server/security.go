package server

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/logging"
	"github.com/taskforge/taskforge/pkg/ratelimit"
)

// contentSecurityPolicy forbids everything: the API serves JSON and YAML, never
// pages, scripts or frames.
const contentSecurityPolicy = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// hstsValue is sent when Options.HSTS is set or the request came over TLS.
const hstsValue = "max-age=31536000"

// newGuard builds the middleware of every authenticated route: a per-address
// limit kept by each replica in memory (before authentication, so that a
// flood of bad credentials is refused before it costs a credential check and
// an audit row), authentication with the failures audited, then the caller's
// per-role limit, shared by every replica through Redis.
func (s *Server) newGuard(o Options) (echo.MiddlewareFunc, error) {
	ao := auth.MiddlewareOptions{Log: s.log.Named("auth"), ClientIP: o.ClientIP.ClientIP, AddressKey: o.ClientIP.Key}
	if o.Audit != nil {
		ao.Audit = o.Audit
	}
	chain := []func(http.Handler) http.Handler{auth.Middleware(o.Auth, ao)}
	if o.Limiter != nil && o.RateLimit.Enabled {
		perAddress := o.PerAddress
		if perAddress == (config.RateLimit{}) {
			for _, rl := range o.RateLimit.PerRole {
				if rl.RPS > perAddress.RPS {
					perAddress.RPS = rl.RPS
				}
				if rl.Burst > perAddress.Burst {
					perAddress.Burst = rl.Burst
				}
			}
		}
		ro := ratelimit.MiddlewareOptions{
			Config: o.RateLimit, Anonymous: perAddress, Log: s.log.Named("ratelimit"),
			ClientIP: o.ClientIP.ClientIP, AddressKey: o.ClientIP.Key,
		}
		// The address guard is this replica's own (no Redis round trip per
		// request); the caller's limit is shared by every replica.
		guard := ro
		guard.Local = true
		byAddress, err := ratelimit.Middleware(o.Limiter, guard)
		if err != nil {
			return nil, err
		}
		byCaller, err := ratelimit.Middleware(o.Limiter, ro)
		if err != nil {
			return nil, err
		}
		chain = []func(http.Handler) http.Handler{byAddress, chain[0], byCaller}
		// The webhook hooks take no bearer token: the address limit only.
		s.hookGuard = echo.WrapMiddleware(byAddress)
	}
	if s.hookGuard == nil {
		s.hookGuard = func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		// Innermost last: the chain's first middleware sees the request first.
		h := next
		for i := len(chain) - 1; i >= 0; i-- {
			h = echo.WrapMiddleware(chain[i])(h)
		}
		return h
	}, nil
}

// secureHeaders sets the headers every API response carries: no sniffing, no
// referrer, no caching, a deny-all content security policy, no framing, and
// Strict-Transport-Security behind TLS.
func (s *Server) secureHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if s.hsts || c.Request().TLS != nil {
			h.Set("Strict-Transport-Security", hstsValue)
		}
		return next(c)
	}
}

// corsFor allows the listed origins, and only them, to call the API from a
// browser with a bearer token (no cookies: credentials are never allowed).
func corsFor(origins []string) echo.MiddlewareFunc {
	return middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOrigins: origins,
		AllowMethods: []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
		AllowHeaders: []string{echo.HeaderAuthorization, echo.HeaderContentType, HeaderIdempotencyKey, HeaderRequestID},
		ExposeHeaders: []string{echo.HeaderLocation, "Retry-After", HeaderRequestID, "Idempotent-Replayed",
			"X-RateLimit-Limit", "X-RateLimit-Remaining"},
		MaxAge: 600,
	})
}

// record writes one audit row for the request in c: the caller, the client
// address and the request id are filled in. A failed write is logged, never
// returned: the mutation it describes has happened.
func (s *Server) record(c echo.Context, e audit.Entry) {
	if s.audit == nil {
		return
	}
	e = s.auditEntry(c, e)
	if err := s.audit.Record(c.Request().Context(), e); err != nil {
		s.log.Error("audit entry not recorded", logging.RequestID(e.RequestID), zap.String("action", e.Action), zap.Error(err))
	}
}

// auditEntry completes e with the request's actor (unless set), client
// address and request id.
func (s *Server) auditEntry(c echo.Context, e audit.Entry) audit.Entry {
	if e.Actor == "" {
		e.Actor = principal(c).ID
	}
	e.ClientIP, e.RequestID = c.RealIP(), requestID(c)
	return e
}

// outcome is the audit outcome of a handler's error: success, denied (403,
// or 404 for a resource the caller may not see) or failure.
func outcome(err error) (string, map[string]any) {
	if err == nil {
		return audit.Success, nil
	}
	ae, _ := classify(err)
	o := audit.Failure
	if ae.Status == http.StatusForbidden {
		o = audit.Denied
	}
	return o, map[string]any{"status": ae.Status, "reason": ae.Kind}
}

// recordTask audits a task mutation (create, cancel, retry); when an admin
// acted on another caller's task it also records the override.
func (s *Server) recordTask(c echo.Context, action, taskID, owner string, err error, details map[string]any) {
	o, why := outcome(err)
	for k, v := range why {
		if details == nil {
			details = map[string]any{}
		}
		details[k] = v
	}
	s.record(c, audit.Entry{Action: action, ResourceType: audit.ResourceTask, ResourceID: taskID, Outcome: o, Details: details})
	if p := principal(c); err == nil && p.IsAdmin() && owner != "" && owner != p.ID {
		s.record(c, audit.Entry{Action: audit.ActionAdminOverride, ResourceType: audit.ResourceTask, ResourceID: taskID,
			Outcome: audit.Success, Details: map[string]any{"action": action, "owner": owner}})
	}
}

// trimmed clips a caller-supplied value put in audit details.
func trimmed(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 100 {
		return s[:100]
	}
	return s
}

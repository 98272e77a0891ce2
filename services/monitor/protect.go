package main

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/config"
)

// authenticator recognises the API's callers: the bootstrap admin key, API
// keys in db and JWTs (when auth.jwt_secret or auth.jwks_url is set).
func authenticator(cfg config.Config, db *gorm.DB) (*auth.Service, error) {
	keys, err := auth.NewKeyStore(db)
	if err != nil {
		return nil, err
	}
	return auth.ServiceFromConfig(cfg.Auth, keys, &http.Client{Timeout: 10 * time.Second})
}

// protect is the monitor UI's guard: same-origin state changes, then
// authentication (Bearer, or HTTP Basic with the credential as password, so a
// browser can log in; refused credentials are audited), then the admin role.
func protect(a auth.Authenticator, rec audit.Recorder, log *zap.Logger) func(http.Handler) http.Handler {
	authn := auth.Middleware(a, auth.MiddlewareOptions{Audit: rec, Log: log, AllowBasic: true})
	admin := auth.RequireRole(auth.Admin)
	return func(next http.Handler) http.Handler {
		return sameOrigin(authn(admin(next)))
	}
}

// sameOrigin refuses, with 403, state-changing requests (anything but GET,
// HEAD and OPTIONS) that a browser sent from another site: with HTTP Basic
// authentication the browser attaches the credential by itself, so a page
// elsewhere could otherwise make an admin's browser delete or run tasks
// (CSRF). The request must say it is same-origin through Sec-Fetch-Site, or
// else through an Origin or Referer naming this host. A Bearer token is never
// attached by a browser on its own, so those requests pass.
func sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		if scheme, _, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
			next.ServeHTTP(w, r)
			return
		}
		if !fromSameOrigin(r) {
			auth.WriteProblem(w, r, http.StatusForbidden, "cross-site request refused: state-changing requests must come from the monitor's own pages")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func fromSameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	for _, h := range []string{"Origin", "Referer"} {
		v := r.Header.Get(h)
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
	}
	return false
}

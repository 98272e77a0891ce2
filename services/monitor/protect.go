package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/clientip"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/problem"
	"github.com/taskforge/taskforge/pkg/ratelimit"
	"github.com/taskforge/taskforge/services/monitor/internal/dashboard"
)

// authenticator recognises the API's callers: the bootstrap admin key, API
// keys in db and JWTs (when auth.jwt_secret or auth.jwks_url is set).
func authenticator(cfg config.Config, db *gorm.DB) (*auth.Service, error) {
	keys, err := auth.NewKeyStore(db)
	if err != nil {
		return nil, err
	}
	return auth.ServiceFromConfig(cfg.Auth, cfg.Egress, keys)
}

// guardOptions are what protect needs besides the authenticator.
type guardOptions struct {
	// Audit records refused credentials (aggregated per address and minute)
	// and every change made through Asynqmon, with the admin who made it.
	Audit audit.Recorder
	// Log receives audit and limiter failures.
	Log *zap.Logger
	// Limiter and Limit bound requests per client address before
	// authentication, as the API does (ratelimit.per_address). If Limiter is
	// nil, or limiting is disabled, nothing is limited.
	Limiter *ratelimit.Limiter
	Limit   config.RateLimitConfig
	// ClientIP finds the client's address behind trusted proxies. If nil, the
	// peer's address.
	ClientIP *clientip.Resolver
}

// protect is the monitor UI's guard: same-origin state changes, the
// per-address limit (before authentication, so that credential guessing is
// slowed and costs no audit rows past the budget), authentication (Bearer,
// or HTTP Basic with the credential as password, so a browser can log in;
// refused credentials are audited in aggregated rows), the admin role, then
// the audit of every change.
func protect(a auth.Authenticator, o guardOptions) (func(http.Handler) http.Handler, error) {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.ClientIP == nil {
		var err error
		if o.ClientIP, err = clientip.New(clientip.Options{}); err != nil {
			return nil, err
		}
	}
	ao := auth.MiddlewareOptions{Log: o.Log, AllowBasic: true, ClientIP: o.ClientIP.ClientIP, AddressKey: o.ClientIP.Key}
	if o.Audit != nil {
		ao.Audit = o.Audit
	}
	authn := auth.Middleware(a, ao)
	limit := func(next http.Handler) http.Handler { return next }
	if o.Limiter != nil && o.Limit.Enabled {
		// Only the per-address budget applies: the limiter sits before
		// authentication, where no request has a principal yet.
		mw, err := ratelimit.Middleware(o.Limiter, ratelimit.MiddlewareOptions{
			Config: config.RateLimitConfig{Enabled: true}, Anonymous: o.Limit.PerAddress,
			ClientIP: o.ClientIP.ClientIP, AddressKey: o.ClientIP.Key, Log: o.Log,
		})
		if err != nil {
			return nil, err
		}
		limit = mw
	}
	admin := auth.RequireRole(auth.Admin)
	changes := auditChanges(o.Audit, o.ClientIP.ClientIP, o.Log)
	return func(next http.Handler) http.Handler {
		return sameOrigin(limit(authn(admin(changes(next)))))
	}, nil
}

// maxAuditedIDs caps the task ids of a batch request kept in its audit row.
const maxAuditedIDs = 100

// auditChanges records every request that may change a queue (anything but
// GET, HEAD and OPTIONS) once it is answered: the admin, the operation
// ("monitor.pause", "monitor.delete", "monitor.run", "monitor.batch_archive",
// ...), the queue or task, the status and, for batch requests, the task ids.
func auditChanges(rec audit.Recorder, clientIP func(*http.Request) string, log *zap.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if rec == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.Method {
			case http.MethodGet, http.MethodHead, http.MethodOptions:
				next.ServeHTTP(w, r)
				return
			}
			e := changeEntry(r)
			if r.Body != nil && r.ContentLength != 0 {
				body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
				if err == nil {
					var batch struct {
						TaskIDs []string `json:"task_ids"`
					}
					if json.Unmarshal(body, &batch) == nil && len(batch.TaskIDs) > 0 {
						e.Details["task_count"] = len(batch.TaskIDs)
						e.Details["task_ids"] = batch.TaskIDs[:min(len(batch.TaskIDs), maxAuditedIDs)]
					}
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			next.ServeHTTP(sw, r)
			e.Actor = auth.PrincipalFrom(r.Context()).ID
			e.ClientIP = clientIP(r)
			e.Details["status"] = sw.status
			e.Outcome = audit.Success
			if sw.status >= 400 {
				e.Outcome = audit.Failure
			}
			if err := rec.Record(r.Context(), e); err != nil {
				log.Error("audit monitor change", zap.String("action", e.Action), zap.Error(err))
			}
		})
	}
}

// changeEntry describes an Asynqmon API request: its operation is the verb
// after the last ':' ("/queues/q:pause" → pause) or, for DELETE, "delete";
// its resource the task id when the path names one, else the queue.
func changeEntry(r *http.Request) audit.Entry {
	e := audit.Entry{Details: map[string]any{"method": r.Method, "path": r.URL.Path}}
	rest, ok := strings.CutPrefix(r.URL.Path, dashboard.RootPath+"/api/queues/")
	op := strings.ToLower(r.Method)
	if !ok {
		e.Action = audit.ActionMonitorChange + "." + op
		return e
	}
	segs := strings.Split(rest, "/")
	last := segs[len(segs)-1]
	if i := strings.LastIndexByte(last, ':'); i >= 0 {
		op, segs[len(segs)-1] = last[i+1:], last[:i]
	} else if r.Method == http.MethodDelete {
		op = "delete"
	}
	queue, _, _ := strings.Cut(segs[0], ":")
	e.Action = audit.ActionMonitorChange + "." + op
	e.ResourceType, e.ResourceID = audit.ResourceQueue, queue
	e.Details["queue"] = queue
	if n := len(segs); n >= 3 && strings.HasSuffix(segs[n-2], "_tasks") {
		e.ResourceType, e.ResourceID = audit.ResourceTask, segs[n-1]
		e.Details["state"] = strings.TrimSuffix(segs[n-2], "_tasks")
	} else if n >= 2 && strings.HasSuffix(segs[n-1], "_tasks") {
		e.Details["state"] = strings.TrimSuffix(segs[n-1], "_tasks")
	}
	return e
}

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
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
			problem.WriteStatus(w, r, http.StatusForbidden, "cross-site request refused: state-changing requests must come from the monitor's own pages")
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

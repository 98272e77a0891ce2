// Package dashboard builds the monitor's HTTP handler: Asynqmon's UI and API
// under RootPath, behind a slot for an authentication middleware, and the
// /healthz, /readyz and /metrics endpoints every service serves.
package dashboard

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/taskforge/taskforge/pkg/health"
	"github.com/taskforge/taskforge/pkg/problem"
)

// RootPath is where Asynqmon is served; its JSON API is under RootPath + "/api".
const RootPath = "/monitoring"

// Options configure the handler.
type Options struct {
	// RedisOpt reaches the Redis that carries the queues. Required.
	RedisOpt asynq.RedisConnOpt
	// ReadOnly hides Asynqmon's buttons that change queues and refuses every
	// request under RootPath that is not GET or HEAD. Default false.
	ReadOnly bool
	// Checker answers /readyz. Required.
	Checker *health.Checker
	// Gatherer serves /metrics. Required.
	Gatherer prometheus.Gatherer
	// Protect wraps Asynqmon's UI and API, e.g. an admin-only authentication
	// middleware. /healthz, /readyz and /metrics are never wrapped. Default nil.
	Protect func(http.Handler) http.Handler
	// PayloadFormatter renders task payloads in Asynqmon, e.g.
	// asynqmon.PayloadFormatterFunc(secret.FormatPayload) so that secret
	// params are redacted. If nil, Asynqmon's default (the raw bytes).
	PayloadFormatter asynqmon.PayloadFormatter
	// AllowAnonymous serves Asynqmon without Protect. Only development sets it:
	// when Protect is nil and AllowAnonymous is false, every request under
	// RootPath is refused with 403. Default false.
	AllowAnonymous bool
}

// Dashboard is the monitor's http.Handler.
type Dashboard struct {
	mux  *http.ServeMux
	amon *asynqmon.HTTPHandler
}

// New builds the handler. Close releases Asynqmon's Redis connections.
func New(o Options) (*Dashboard, error) {
	if o.RedisOpt == nil || o.Checker == nil || o.Gatherer == nil {
		return nil, errors.New("dashboard: RedisOpt, Checker and Gatherer are required")
	}
	amon := asynqmon.New(asynqmon.Options{RootPath: RootPath, RedisConnOpt: o.RedisOpt, ReadOnly: o.ReadOnly,
		PayloadFormatter: o.PayloadFormatter})

	// The chain of Asynqmon, innermost first: read-only guard, then
	// authentication (or the refusal that stands in for it), then headers.
	var ui http.Handler = amon
	if o.ReadOnly {
		ui = readOnly(ui)
	}
	switch {
	case o.Protect != nil:
		ui = o.Protect(ui)
	case !o.AllowAnonymous:
		ui = refuse(http.StatusForbidden,
			"the monitor UI needs authentication, which is not configured; it is open only when env is development")
	}
	ui = secureHeaders(ui)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", health.Healthz)
	mux.HandleFunc("GET /readyz", o.Checker.Readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	mux.Handle(RootPath, ui)
	mux.Handle(RootPath+"/", ui)
	mux.Handle("GET /{$}", http.RedirectHandler(RootPath+"/", http.StatusFound))
	return &Dashboard{mux: mux, amon: amon}, nil
}

// ServeHTTP implements http.Handler.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.mux.ServeHTTP(w, r) }

// Close closes Asynqmon's Redis connections.
func (d *Dashboard) Close() error {
	if err := d.amon.Close(); err != nil {
		return fmt.Errorf("dashboard: close: %w", err)
	}
	return nil
}

// readOnly refuses every method but GET and HEAD, whatever Asynqmon's own
// routes would allow.
func readOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			problem.WriteStatus(w, r, http.StatusMethodNotAllowed, "the monitor is read-only (monitor.read_only): "+r.Method+" is not allowed")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuse answers every request with status and detail.
func refuse(status int, detail string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { problem.WriteStatus(w, r, status, detail) })
}

// secureHeaders keeps the UI out of frames and stops content sniffing.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

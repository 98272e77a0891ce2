// Package server is the API's HTTP layer: Echo routes for tasks, the task type
// registry, queues, statistics, health and metrics; authentication and role
// checks; problem+json errors. The task logic lives in pkg/taskservice.
package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/callbackkey"
	"github.com/taskforge/taskforge/pkg/clientip"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/health"
	"github.com/taskforge/taskforge/pkg/pushsub"
	"github.com/taskforge/taskforge/pkg/ratelimit"
	"github.com/taskforge/taskforge/pkg/result/httpresult"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/trigger"
	"github.com/taskforge/taskforge/pkg/upload"
	"github.com/taskforge/taskforge/pkg/workflow"
	"github.com/taskforge/taskforge/services/api/internal/console"
	"github.com/taskforge/taskforge/services/api/internal/live"
)

// DefaultBodyLimit is the largest request body accepted when Options.BodyLimit
// is zero.
const DefaultBodyLimit = 1 << 20

// Options are what the server needs.
type Options struct {
	// Tasks creates, reads, cancels and retries tasks.
	Tasks *taskservice.Service
	// Auth turns bearer tokens into principals.
	Auth auth.Authenticator
	// Checker answers /readyz.
	Checker *health.Checker
	// Registry receives the HTTP metrics and is served at /metrics. If nil, a
	// fresh registry is used.
	Registry *prometheus.Registry
	// Log receives request and error logs.
	Log *zap.Logger
	// OpenAPI is the OpenAPI document served at /api/v1/openapi.yaml.
	OpenAPI []byte
	// BodyLimit is the largest request body, in bytes. If zero, 1 MiB.
	BodyLimit int64
	// Results serves the task result and signed download routes. If nil, they
	// answer 404.
	Results *httpresult.Handler
	// Schedules keeps the schedules served under /api/v1/schedules. If nil,
	// those routes answer 503.
	Schedules *schedule.Store
	// Keys manages API keys under /api/v1/api-keys. If nil, those routes
	// answer 503.
	Keys *auth.KeyStore
	// Audit records every mutation and failed authentication and serves
	// /api/v1/audit. If nil, nothing is recorded and /api/v1/audit answers 503.
	Audit *audit.Log
	// Limiter limits requests in Redis, shared by every replica. If nil, no
	// request is limited.
	Limiter *ratelimit.Limiter
	// RateLimit is the per-role limit applied after authentication.
	RateLimit config.RateLimitConfig
	// PerAddress limits requests per client address before authentication, so
	// that floods of bad credentials stay bounded. If zero, the largest role
	// limit.
	PerAddress config.RateLimit
	// CORSAllowOrigins lists the origins allowed by CORS. If empty, no CORS
	// headers are sent.
	CORSAllowOrigins []string
	// HSTS sends Strict-Transport-Security on every response (set it when
	// clients reach the API over HTTPS only). Requests that arrive over TLS get
	// it anyway.
	HSTS bool
	// Priorities caps the priority each role may give a task
	// (auth.max_priority). The zero value is auth.DefaultMaxPriority.
	Priorities auth.PriorityPolicy
	// AuditMinRetention is the fewest days of audit log a cleanup_old_data
	// may keep (retention.audit_min); asking for less is a 422. If zero, the
	// default 365.
	AuditMinRetention int
	// ClientIP finds the client's address (behind trusted proxies, from their
	// forwarding header) for the per-address limit, the audit log and the
	// request log. If nil, no proxy is trusted: the client is the peer.
	ClientIP *clientip.Resolver
	// Live serves the live event streams (/api/v1/tasks/{id}/events and
	// /api/v1/events). If nil, those routes answer 503.
	Live *live.Hub
	// Streams bounds the live event streams.
	Streams StreamOptions
	// Triggers keeps and fires the event triggers (/api/v1/triggers and the
	// webhook hooks /api/v1/hooks). If nil, the triggers routes answer 503
	// and the hooks 404.
	Triggers *trigger.Service
	// HookRateLimit is each webhook trigger's own limit (with Limiter). If
	// zero, DefaultHookRateLimit.
	HookRateLimit config.RateLimit
	// CallbackKeys rotates the callers' callback signing secrets
	// (/api/v1/callback-secret/rotate). If nil, that route answers 503.
	CallbackKeys *callbackkey.Store
	// Push keeps the callers' push subscriptions (/api/v1/push-subscriptions).
	// If nil, those routes answer 503.
	Push *pushsub.Store
	// VAPIDPublicKey is listed with the subscriptions for browsers to subscribe
	// with (push.vapid_public_key). Default empty: Web Push is off.
	VAPIDPublicKey string
	// Uploads keeps the files of POST /api/v1/uploads; its cap
	// (api.upload_limit) is that route's body limit instead of BodyLimit. If
	// nil, the upload routes answer 503.
	Uploads *upload.Store
	// UploadObserver is told of every stored upload (the upload triggers).
	// If nil, nobody is.
	UploadObserver upload.Observer
	// UploadTimeout bounds reading an upload's body and answering it
	// (api.upload_timeout), in place of the HTTP server's read and write
	// timeouts. If zero, 10 minutes.
	UploadTimeout time.Duration
	// Workflows runs the workflows (/api/v1/workflows). If nil, those routes
	// answer 503.
	Workflows *workflow.Service
}

// Server is the API's http.Handler.
type Server struct {
	echo      *echo.Echo
	tasks     *taskservice.Service
	auth      auth.Authenticator
	checker   *health.Checker
	reg       *prometheus.Registry
	log       *zap.Logger
	openapi   []byte
	limit     int64
	metrics   *httpMetrics
	results   *httpresult.Handler
	schedules *schedule.Store
	keys      *auth.KeyStore
	audit     *audit.Log
	live      *live.Hub
	streams   StreamOptions
	// triggers fires event triggers; nil answers 503 (hooks 404). limiter
	// (nil when rate limiting is off) and hookRate limit each webhook
	// trigger; hookGuard is the hooks' limit per client address (they take
	// no bearer token).
	triggers  *trigger.Service
	workflows *workflow.Service
	limiter   *ratelimit.Limiter
	hookRate  config.RateLimit
	hookGuard echo.MiddlewareFunc
	// guard authenticates a route's caller: the per-address limit, then
	// authentication (failures audited), then the caller's limit.
	guard      echo.MiddlewareFunc
	hsts       bool
	priorities auth.PriorityPolicy
	auditMin   int
	// callbackKeys rotates callback signing secrets; nil answers 503.
	callbackKeys *callbackkey.Store
	// push keeps push subscriptions; nil answers 503.
	push           *pushsub.Store
	vapidPublicKey string
	// console serves the web console at /console/.
	console *console.Console
	// uploads keeps uploads; nil answers 503. uploadObserver may be nil.
	uploads        *upload.Store
	uploadObserver upload.Observer
	uploadTimeout  time.Duration
	// listItems keeps rendered list items (GET /api/v1/tasks).
	listItems *listItems
}

// New builds the server and registers its routes.
func New(o Options) (*Server, error) {
	if o.Tasks == nil || o.Auth == nil || o.Checker == nil || o.Log == nil || len(o.OpenAPI) == 0 {
		return nil, errors.New("server: missing dependency")
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.BodyLimit <= 0 {
		o.BodyLimit = DefaultBodyLimit
	}
	m, err := newHTTPMetrics(o.Registry)
	if err != nil {
		return nil, err
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// Only the configured proxies are trusted: anyone else's address is the
	// peer's, so that a forged X-Forwarded-For can neither dodge the
	// per-address limit nor fake the audit log's client address.
	if o.ClientIP == nil {
		if o.ClientIP, err = clientip.New(clientip.Options{}); err != nil {
			return nil, err
		}
	}
	e.IPExtractor = o.ClientIP.ClientIP
	s := &Server{live: o.Live, streams: o.Streams.withDefaults(), echo: e, tasks: o.Tasks, auth: o.Auth, checker: o.Checker, reg: o.Registry, log: o.Log,
		openapi: o.OpenAPI, limit: o.BodyLimit, metrics: m, results: o.Results, schedules: o.Schedules,
		keys: o.Keys, audit: o.Audit, hsts: o.HSTS, priorities: o.Priorities, auditMin: o.AuditMinRetention,
		callbackKeys: o.CallbackKeys, push: o.Push, vapidPublicKey: o.VAPIDPublicKey,
		uploads: o.Uploads, uploadObserver: o.UploadObserver, uploadTimeout: o.UploadTimeout, listItems: newListItems()}
	if s.uploadTimeout <= 0 {
		s.uploadTimeout = 10 * time.Minute
	}
	if s.auditMin <= 0 {
		s.auditMin = config.Defaults().Retention.AuditMin
	}
	s.triggers, s.hookRate = o.Triggers, o.HookRateLimit
	if o.RateLimit.Enabled {
		s.limiter = o.Limiter
	}
	s.workflows = o.Workflows
	if s.hookRate == (config.RateLimit{}) {
		s.hookRate = config.RateLimit{RPS: DefaultHookRateLimit.RPS, Burst: DefaultHookRateLimit.Burst}
	}
	if s.guard, err = s.newGuard(o); err != nil {
		return nil, err
	}
	if s.console, err = console.New(); err != nil {
		return nil, err
	}
	e.HTTPErrorHandler = s.handleError
	e.Use(s.observe, s.secureHeaders)
	if len(o.CORSAllowOrigins) > 0 {
		e.Use(corsFor(o.CORSAllowOrigins))
	}
	e.Use(s.limitBody)
	s.routes()
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// Routes lists the registered routes (method and Echo path), for the test that
// holds them to the OpenAPI document.
func (s *Server) Routes() []*echo.Route { return s.echo.Routes() }

// routes registers every route. Each one is also in openapi.yaml; a test holds
// the two together. Authenticated routes take s.authenticate; role checks are
// in the handlers (or requireAdmin).
func (s *Server) routes() {
	e := s.echo
	authed := s.guard

	// Health: open to probes.
	e.GET("/healthz", echo.WrapHandler(http.HandlerFunc(health.Healthz)))
	e.GET("/readyz", echo.WrapHandler(http.HandlerFunc(s.checker.Readyz)))
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})), authed, requireAdmin)

	// The console: a static page and its hashed assets, open (the API calls
	// it makes are authenticated).
	e.GET("/console/", s.consoleIndex)
	e.GET("/console/assets/:name", s.consoleAsset)

	v1 := e.Group("/api/v1")
	// The caller: id, name and role.
	v1.GET("/whoami", s.whoami, authed)
	// Tasks.
	v1.POST("/tasks", s.createTask, authed)
	v1.GET("/tasks", s.listTasks, authed)
	v1.GET("/tasks/:task_id", s.getTask, authed)
	v1.DELETE("/tasks/:task_id", s.cancelTask, authed)
	v1.GET("/tasks/:task_id/logs", s.taskLogs, authed)
	v1.POST("/tasks/:task_id/retry", s.retryTask, authed)
	// Live events (server-sent events).
	v1.GET("/tasks/:task_id/events", s.taskEvents, authed)
	v1.GET("/events", s.events, authed)
	// Results: the download route is authorised by its signature alone.
	v1.GET("/tasks/:task_id/result", s.taskResult, authed)
	v1.GET("/results/:id/download", s.downloadResult)
	// Schedules: every caller reads them, admins change them.
	s.registerSchedules(v1, authed)
	// Event triggers: operators manage their own, admins every one; the
	// webhook hooks are authorised by their signature.
	s.registerTriggers(v1, authed)
	// Workflows: operators and admins create and cancel them; a caller sees
	// its own, admins every one.
	s.registerWorkflows(v1, authed)
	// Registry, monitoring and the contract.
	v1.GET("/task-types", s.taskTypes, authed)
	v1.GET("/queues", s.queues, authed)
	v1.POST("/queues/:queue/pause", s.pauseQueue, authed)
	v1.POST("/queues/:queue/resume", s.resumeQueue, authed)
	v1.GET("/stats", s.stats, authed)
	v1.GET("/openapi.yaml", s.openAPI, authed)
	// Security: API keys and the audit log, admins only.
	v1.POST("/api-keys", s.createAPIKey, authed)
	v1.GET("/api-keys", s.listAPIKeys, authed)
	v1.DELETE("/api-keys/:key_id", s.revokeAPIKey, authed)
	v1.GET("/audit", s.listAudit, authed)
	// Callback signing: every caller rotates its own secret.
	v1.POST("/callback-secret/rotate", s.rotateCallbackSecret, authed)
	v1.POST("/push-subscriptions", s.createPushSubscription, authed)
	v1.GET("/push-subscriptions", s.listPushSubscriptions, authed)
	v1.DELETE("/push-subscriptions/:subscription_id", s.deletePushSubscription, authed)
	// Uploads: operators and admins upload, uploaders read their own; the
	// download route is authorised by its signature alone.
	v1.POST("/uploads", s.createUpload, authed)
	v1.GET("/uploads/:upload_id", s.getUpload, authed)
	v1.GET("/uploads/:upload_id/download", s.downloadUpload)
}

// taskResult serves GET /api/v1/tasks/{task_id}/result (pkg/result/httpresult).
func (s *Server) taskResult(c echo.Context) error {
	if s.results == nil {
		return newError(http.StatusNotFound, "not-found", "result storage is not configured")
	}
	s.results.TaskResult(c.Response(), c.Request(), c.Param("task_id"))
	s.recordReadOf(c, readResult, c.Param("task_id"))
	return nil
}

// downloadResult serves GET /api/v1/results/{id}/download (pkg/result/httpresult).
func (s *Server) downloadResult(c echo.Context) error {
	if s.results == nil {
		return newError(http.StatusNotFound, "not-found", "result storage is not configured")
	}
	s.results.Download(c.Response(), c.Request(), c.Param("id"))
	return nil
}

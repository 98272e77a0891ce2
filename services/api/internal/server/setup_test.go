package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/callbackkey"
	"github.com/taskforge/taskforge/pkg/clientip"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/health"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/ratelimit"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/pkg/trigger"
	"github.com/taskforge/taskforge/pkg/upload"
	"github.com/taskforge/taskforge/pkg/worker"
	"github.com/taskforge/taskforge/pkg/workflow"
	"github.com/taskforge/taskforge/services/api/client"
	"github.com/taskforge/taskforge/services/api/internal/live"
)

// The callers of the tests, one per role (two operators to test ownership).
const (
	tokAdmin  = "tok-admin"
	tokOp     = "tok-operator"
	tokOp2    = "tok-operator-2"
	tokViewer = "tok-viewer"
)

var principals = auth.StaticTokens{
	tokAdmin:  {ID: "key_admin", Name: "admin", Role: auth.Admin},
	tokOp:     {ID: "key_op", Name: "operator", Role: auth.Operator},
	tokOp2:    {ID: "key_op2", Name: "operator 2", Role: auth.Operator},
	tokViewer: {ID: "key_viewer", Name: "viewer", Role: auth.Viewer},
}

// openapiDoc is the document the server is held to.
func openapiDoc(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../../openapi.yaml")
	require.NoError(t, err)
	return b
}

var (
	docOnce   sync.Once
	docRouter routers.Router
	docModel  *openapi3.T
	docErr    error
)

// contract loads and validates openapi.yaml once per test binary.
func contract(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	docOnce.Do(func() {
		b, err := os.ReadFile("../../openapi.yaml")
		if err != nil {
			docErr = err
			return
		}
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(b)
		if err != nil {
			docErr = err
			return
		}
		if docErr = doc.Validate(context.Background()); docErr != nil {
			return
		}
		// Match any host: the tests' servers listen on random ports.
		doc.Servers = nil
		docModel = doc
		docRouter, docErr = gorillamux.NewRouter(doc)
	})
	require.NoError(t, docErr, "openapi.yaml")
	return docModel, docRouter
}

// validating checks every response against openapi.yaml: its status must be
// declared for the route, its content type and body must match the schema. A
// request outside the document must get a problem+json 404 or 405.
type validating struct {
	t      testing.TB
	router routers.Router
	next   http.RoundTripper
}

func (v validating) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := v.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			v.t.Errorf("%s %s is not in openapi.yaml but answered %d", req.Method, req.URL.Path, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
			v.t.Errorf("%s %s: %d with content type %q, want application/problem+json", req.Method, req.URL.Path, resp.StatusCode, ct)
		}
		return resp, nil
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, ExcludeRequestBody: true, MultiError: true}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts},
		Status:                 resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(body)), Options: opts,
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		v.t.Errorf("%s %s answered %d, which breaks openapi.yaml: %v\nbody: %s", req.Method, req.URL.Path, resp.StatusCode, err, truncate(body))
	}
	if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" && route.Path != "/readyz" {
		v.t.Errorf("%s %s: %d is not problem+json", req.Method, req.URL.Path, resp.StatusCode)
	}
	return resp, nil
}

func truncate(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

// testBundle is a running API against the test's own PostgreSQL database and
// Redis database.
type testBundle struct {
	// audit, keys, schedules and results are set by the secure option.
	audit     *audit.Log
	keys      *auth.KeyStore
	schedules *schedule.Store
	results   *result.Store
	srv       *Server
	http      *httptest.Server
	svc       *taskservice.Service
	pg        testenv.Postgres
	rd        testenv.Redis
	inspector *asynq.Inspector
	reg       *prometheus.Registry

	// uploads and storageDir (the local result storage's directory) are set
	// by the secure option too.
	uploads    *upload.Store
	storageDir string

	// callbackKeys is set by the secure option too.
	callbackKeys *callbackkey.Store
	// triggers is set by the secure option too.
	triggers *trigger.Service
	// workflows runs the workflows on svc (its advancer is not running:
	// tests advance by hand or start it).
	workflows *workflow.Service
	// hub and events are set by the streams option.
	hub    *live.Hub
	events *event.Publisher
}

type setupOptions struct {
	db       *gorm.DB
	redisOpt asynq.RedisConnOpt
	log      *zap.Logger
	// The security layer (security_test.go): when auth is nil, the static
	// principals; sealer encrypts secret params; secure wires the audit log,
	// API keys, schedules (sealed with sealer) and results.
	auth       auth.Authenticator
	sealer     *secret.Keyring
	secure     bool
	limiter    *ratelimit.Limiter
	rateLimit  config.RateLimitConfig
	perAddress config.RateLimit
	cors       []string
	hsts       bool
	clientIP   *clientip.Resolver
	// With secure, bootstrap or jwt replace the static principals with the
	// real authentication service: the bootstrap admin key, API keys in the
	// test's database and, with jwt, tokens.
	bootstrap string
	jwt       *auth.JWTConfig
	// streams, when set, wires the live events: a publisher for the task
	// service and a hub with hubOpts for the event streams.
	streams *StreamOptions
	hubOpts live.Options
	// recipients, when set, is the task service's notification policy.
	recipients taskservice.RecipientPolicy
	// uploadLimit, with secure, caps uploads. If zero, 1 MiB.
	uploadLimit int64
	// hookRate is each webhook trigger's limit (with limiter and secure).
	hookRate config.RateLimit
}

func setup(t *testing.T) testBundle {
	return setupWith(t, setupOptions{})
}

func setupWith(t *testing.T, o setupOptions) testBundle {
	t.Helper()
	contract(t)
	pg := testenv.NewPostgres(t)
	rd := testenv.NewRedis(t)
	db := pg.DB
	if o.db != nil {
		db = o.db
	}
	var opt asynq.RedisConnOpt = rd.Opt()
	if o.redisOpt != nil {
		opt = o.redisOpt
	}
	ac, insp := asynq.NewClient(opt), asynq.NewInspector(opt)
	t.Cleanup(func() { _ = ac.Close(); _ = insp.Close() })
	// A generous count timeout: totals stay exact on a busy test machine.
	topts := taskservice.Options{CountTimeout: 5 * time.Second}
	if o.sealer != nil {
		topts.Sealer = o.sealer
	}
	topts.Recipients = o.recipients
	var pub *event.Publisher
	if o.streams != nil {
		var err error
		pub, err = event.NewPublisher(rd.Client, zap.NewNop(), nil, event.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { pub.Close(context.Background()) })
		topts.Events = pub
	}
	svc, err := taskservice.New(db, ac, insp, zap.NewNop(), topts)
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	rc := queue.Client(opt)
	t.Cleanup(func() { _ = rc.Close() })
	reg := prometheus.NewRegistry()
	checker := health.NewChecker(map[string]health.Check{
		"postgres": func(ctx context.Context) error { return store.Ping(ctx, db) },
		"redis":    func(ctx context.Context) error { return queue.Ping(ctx, rc) },
	}, reg)
	log := o.log
	if log == nil {
		log = zap.NewNop()
	}
	wopts := workflow.Options{}
	if o.sealer != nil {
		wopts.Keyring = o.sealer
	}
	workflows, err := workflow.New(db, svc, zap.NewNop(), wopts)
	require.NoError(t, err)
	opts := Options{Tasks: svc, Auth: principals, Checker: checker, Registry: reg, Log: log, Workflows: workflows,
		OpenAPI: openapiDoc(t), Limiter: o.limiter, RateLimit: o.rateLimit, PerAddress: o.perAddress,
		CORSAllowOrigins: o.cors, HSTS: o.hsts, ClientIP: o.clientIP}
	if o.auth != nil {
		opts.Auth = o.auth
	}
	var hub *live.Hub
	if o.streams != nil {
		rdr, err := event.NewReader(rd.Client, event.Options{})
		require.NoError(t, err)
		if o.hubOpts.Registerer == nil {
			o.hubOpts.Registerer = reg
		}
		hub, err = live.New(rdr, svc.Load, RenderTask, zap.NewNop(), o.hubOpts)
		require.NoError(t, err)
		hub.Start(context.Background())
		t.Cleanup(hub.Shutdown)
		opts.Live, opts.Streams = hub, *o.streams
	}
	var handler http.Handler
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(hs.Close)
	b := testBundle{http: hs, svc: svc, pg: pg, rd: rd, inspector: insp, reg: reg, hub: hub, events: pub, workflows: workflows}
	if o.secure {
		b.secureWith(t, &opts, db, o, hs.URL, log)
	}
	srv, err := New(opts)
	require.NoError(t, err)
	handler, b.srv = srv, srv
	return b
}

// client returns the generated client for a token ("" sends none); every
// response it receives is validated against openapi.yaml.
func (b testBundle) client(t testing.TB, token string) *client.ClientWithResponses {
	t.Helper()
	_, router := contract(t)
	hc := &http.Client{Transport: validating{t: t, router: router, next: http.DefaultTransport}}
	opts := []client.ClientOption{client.WithHTTPClient(hc)}
	if token != "" {
		opts = append(opts, client.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+token)
			return nil
		}))
	}
	c, err := client.NewClientWithResponses(b.http.URL, opts...)
	require.NoError(t, err)
	return c
}

// raw sends a request outside the generated client (wrong methods, odd
// headers), still validated against openapi.yaml.
func (b testBundle) raw(t testing.TB, method, path, token string, body io.Reader, header map[string]string) *http.Response {
	t.Helper()
	_, router := contract(t)
	req, err := http.NewRequest(method, b.http.URL+path, body)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Transport: validating{t: t, router: router, next: http.DefaultTransport}}).Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func ptr[T any](v T) *T { return &v }

// fields lists the field names of a problem's errors.
func fields(p *client.Problem) []string {
	if p == nil || p.Errors == nil {
		return nil
	}
	out := make([]string, 0, len(*p.Errors))
	for _, e := range *p.Errors {
		out = append(out, e.Field)
	}
	return out
}

// nonNilService is a task service whose dependencies are never reached (for
// tests that only inspect the router).
func nonNilService(t *testing.T) *taskservice.Service {
	t.Helper()
	db, err := store.Open(store.Options{URL: "postgres://none@127.0.0.1:1/none?sslmode=disable"})
	require.NoError(t, err)
	down := asynq.RedisClientOpt{Addr: "127.0.0.1:1"}
	ac, insp := asynq.NewClient(down), asynq.NewInspector(down)
	t.Cleanup(func() { _ = ac.Close(); _ = insp.Close() })
	// A generous count timeout: totals stay exact on a busy test machine.
	svc, err := taskservice.New(db, ac, insp, zap.NewNop(), taskservice.Options{CountTimeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(svc.Close)
	return svc
}

func nonNilChecker() *health.Checker { return health.NewChecker(map[string]health.Check{}, nil) }

func nopLog() *zap.Logger { return zap.NewNop() }

// serveTasks runs rt under an Asynq server on b's Redis with concurrency
// until the test ends, then closes rt.
func serveTasks(t *testing.T, b testBundle, rt *worker.Runtime, concurrency int) {
	t.Helper()
	srv := asynq.NewServer(b.rd.Opt(), rt.AsynqConfig(worker.ServerOptions{
		Concurrency: concurrency, StrictPriority: true, ShutdownTimeout: time.Second, TaskCheckInterval: 10 * time.Millisecond,
	}))
	require.NoError(t, srv.Start(rt))
	t.Cleanup(func() {
		srv.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rt.Close(ctx)
	})
}

// Package tracing owns OpenTelemetry in Taskforge: the tracer provider of a
// process (Setup, flushed by its shutdown function), the instrumentation of
// the shared clients (HTTP servers and transports, the pgx connections
// under GORM, go-redis clients), spans of the project's own code (Start) and
// the propagation of a trace and a request id from a task's creation to the
// worker that runs it (Headers, StartTask).
//
// Tracing is off by default. Off, nothing is instrumented: the wrappers
// return what they were given, Start returns the context as it was and a
// no-op span, and no header is made but the request id's.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/taskforge/taskforge/pkg/buildinfo"
	"github.com/taskforge/taskforge/pkg/config"
)

// instrumentation names the tracer of the project's own spans.
const instrumentation = "github.com/taskforge/taskforge"

// state is the process's tracing: set once by Setup.
var (
	on       atomic.Bool
	tracer   trace.Tracer         = noop.NewTracerProvider().Tracer(instrumentation)
	provider trace.TracerProvider = noop.NewTracerProvider()
)

// Enabled reports whether Setup turned tracing on in this process.
func Enabled() bool { return on.Load() }

// Setup installs the process's tracer provider when c.Enabled (and
// OTEL_SDK_DISABLED is not true): an OTLP/HTTP exporter to c.Endpoint (or
// the OTEL_EXPORTER_OTLP_* variables) behind a batch processor (OTEL_BSP_*),
// sampling c.SampleRatio of new traces (unless OTEL_TRACES_SAMPLER says
// otherwise), spans named service.name c.ServiceName or program, and the W3C
// trace context and baggage propagators. Call it before the clients are
// built, and call the returned function on shutdown, with the shutdown
// timeout's context: it exports the spans still buffered. Off, the function
// does nothing.
func Setup(ctx context.Context, c config.TracingConfig, program string) (func(context.Context) error, error) {
	nothing := func(context.Context) error { return nil }
	if !c.Enabled || strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return nothing, nil
	}
	var opts []otlptracehttp.Option
	if c.Endpoint != "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimRight(c.Endpoint, "/")+"/v1/traces"))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nothing, fmt.Errorf("tracing: exporter: %w", err)
	}
	name := c.ServiceName
	if name == "" {
		name = program
	}
	// The environment's OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES come
	// last, so that they win.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(name), semconv.ServiceVersion(buildinfo.Get().Version)),
		resource.WithTelemetrySDK(), resource.WithHost(), resource.WithFromEnv())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nothing, fmt.Errorf("tracing: resource: %w", err)
	}
	popts := []sdktrace.TracerProviderOption{sdktrace.WithBatcher(exp), sdktrace.WithResource(res)}
	if os.Getenv("OTEL_TRACES_SAMPLER") == "" {
		popts = append(popts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SampleRatio))))
	}
	tp := sdktrace.NewTracerProvider(popts...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	tracer = tp.Tracer(instrumentation, trace.WithInstrumentationVersion(buildinfo.Get().Version))
	provider = tp
	on.Store(true)
	return func(ctx context.Context) error {
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("tracing: flush: %w", err)
		}
		return nil
	}, nil
}

// Start starts a span of the project's own code, a child of ctx's span.
// Off, it returns ctx as it was and a no-op span.
func Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !on.Load() {
		return ctx, noop.Span{}
	}
	return tracer.Start(ctx, name, opts...)
}

// TraceID is the id of ctx's trace in hex, or "" when ctx holds none.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// Handler wraps an HTTP server's handler with a server span per request
// (named after the route when the router renames it, see SetRoute). Off, it
// returns h.
func Handler(h http.Handler, operation string) http.Handler {
	if !on.Load() {
		return h
	}
	return otelhttp.NewHandler(h, operation)
}

// SetRoute names ctx's server span after the request's route ("POST
// /api/v1/tasks"), once the router knows it.
func SetRoute(ctx context.Context, method, route string) {
	if !on.Load() {
		return
	}
	span := trace.SpanFromContext(ctx)
	span.SetName(method + " " + route)
	span.SetAttributes(semconv.HTTPRoute(route))
}

// Transport wraps an HTTP client's transport with a client span per
// request, and the traceparent header on it. Off, it returns rt.
func Transport(rt http.RoundTripper) http.RoundTripper {
	if !on.Load() {
		return rt
	}
	return otelhttp.NewTransport(rt)
}

// PGTracer is the tracer of pgx connections (a span per query, batch and
// copy; the statement's text without its arguments) made under a span, not
// the background loops' (a worker's state flushes, the scheduler's polls);
// nil when off.
func PGTracer() pgx.QueryTracer {
	if !on.Load() {
		return nil
	}
	return otelpgx.NewTracer(otelpgx.WithDisableAcquireTracer(), otelpgx.WithTracerProvider(childOnly{tp: provider}))
}

// InstrumentRedis adds a span per command and pipeline to c (its
// arguments, which may hold task payloads and passwords, are left out)
// made under a span, not the polling of Asynq's servers and the other
// background loops.
// Add it before any other hook, so that its span covers theirs. Off, it does
// nothing.
func InstrumentRedis(c redis.UniversalClient) error {
	if !on.Load() {
		return nil
	}
	if err := redisotel.InstrumentTracing(c, redisotel.WithTracerProvider(childOnly{tp: provider}),
		redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false)); err != nil {
		return fmt.Errorf("tracing: redis: %w", err)
	}
	return nil
}

// childOnly is a tracer provider whose spans are only made as children:
// under a context without a span, Start returns a no-op span, so that the
// clients' background work (Asynq's polling of Redis every few
// milliseconds, periodic flushes) makes no trace of its own.
type childOnly struct {
	embedded.TracerProvider
	tp trace.TracerProvider
}

func (p childOnly) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return childOnlyTracer{t: p.tp.Tracer(name, opts...)}
}

type childOnlyTracer struct {
	embedded.Tracer
	t trace.Tracer
}

func (t childOnlyTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, noop.Span{}
	}
	return t.t.Start(ctx, name, opts...)
}

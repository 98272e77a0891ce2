package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/taskforge/taskforge/pkg/config"
)

func TestSetupOffInstallsNothing(t *testing.T) {
	for name, c := range map[string]config.TracingConfig{
		"disabled":          {Enabled: false, SampleRatio: 1},
		"OTEL_SDK_DISABLED": {Enabled: true, SampleRatio: 1},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("OTEL_SDK_DISABLED", "true")
			flush, err := Setup(context.Background(), c, "taskforge-test")
			require.NoError(t, err)
			require.False(t, Enabled())
			require.NoError(t, flush(context.Background()))
			require.Nil(t, PGTracer(), "no pgx tracer")
			require.Nil(t, Transport(nil), "the transport as given")
		})
	}
}

// The clients' spans (Redis commands, SQL statements) are made only under a
// span: their background loops make no trace of their own.
func TestClientSpansOnlyUnderASpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	clients := childOnly{tp: tp}.Tracer("client")

	ctx, span := clients.Start(context.Background(), "BRPOPLPUSH")
	require.False(t, span.SpanContext().IsValid(), "no span without a parent")
	require.Equal(t, context.Background(), ctx)
	span.End()
	require.Empty(t, rec.Ended())

	parentCtx, parent := tp.Tracer("app").Start(context.Background(), "request")
	_, child := clients.Start(parentCtx, "evalsha", trace.WithSpanKind(trace.SpanKindClient))
	child.End()
	parent.End()
	ended := rec.Ended()
	require.Len(t, ended, 2)
	require.Equal(t, "evalsha", ended[0].Name())
	require.Equal(t, parent.SpanContext().SpanID(), ended[0].Parent().SpanID())
}

// Setup exports to the configured endpoint's /v1/traces, and its shutdown
// function flushes what the batch still holds.
func TestSetupExportsToTheEndpointAndFlushes(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	var bodies int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path)
		if len(body) > 0 {
			bodies++
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	prevTracer, prevProvider := tracer, provider
	t.Cleanup(func() {
		on.Store(false)
		tracer, provider = prevTracer, prevProvider
		otel.SetTracerProvider(noop.NewTracerProvider())
	})
	// A long batch delay: only the flush sends the span.
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
	t.Setenv("OTEL_SDK_DISABLED", "")
	flush, err := Setup(context.Background(), config.TracingConfig{Enabled: true, Endpoint: srv.URL + "/", SampleRatio: 1}, "taskforge-test")
	require.NoError(t, err)
	require.True(t, Enabled())
	_, span := Start(context.Background(), "work")
	require.True(t, span.IsRecording())
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, flush(ctx))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"POST /v1/traces"}, paths)
	require.Equal(t, 1, bodies)
}

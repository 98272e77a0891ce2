package tracing

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

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

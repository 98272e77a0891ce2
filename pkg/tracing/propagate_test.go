package tracing

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// traced turns tracing on for the test with a recording provider.
func traced(t testing.TB) *tracetest.SpanRecorder {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := tracer
	tracer = tp.Tracer(instrumentation)
	on.Store(true)
	t.Cleanup(func() { tracer = prev; on.Store(false); _ = tp.Shutdown(context.Background()) })
	return rec
}

func TestHeadersRoundTripMakesAChildSpan(t *testing.T) {
	rec := traced(t)
	ctx, create := Start(context.Background(), "POST /api/v1/tasks")
	h := Headers(ctx, "req-1")
	create.End()
	require.NotEmpty(t, h[HeaderTraceparent])
	require.Equal(t, "req-1", h[HeaderRequestID])

	c := FromHeaders(h)
	require.Equal(t, create.SpanContext().TraceID(), c.Parent.TraceID())
	require.Equal(t, create.SpanContext().SpanID(), c.Parent.SpanID())
	require.True(t, c.Parent.IsRemote())
	require.Equal(t, "req-1", c.RequestID)

	wctx, run := StartTask(context.Background(), c, Task{ID: "task_1", Type: "webhook_callback", Attempt: 1})
	run.End()
	ended := rec.Ended()
	require.Len(t, ended, 2)
	handler := ended[1]
	require.Equal(t, "task webhook_callback", handler.Name())
	require.Equal(t, create.SpanContext().TraceID(), handler.SpanContext().TraceID(), "same trace")
	require.Equal(t, create.SpanContext().SpanID(), handler.Parent().SpanID(), "child of the creating span")
	require.Equal(t, trace.SpanKindConsumer, handler.SpanKind())
	require.Equal(t, create.SpanContext().TraceID().String(), TaskTraceID(wctx, c))
}

func TestAbsentHeadersStartANewRoot(t *testing.T) {
	rec := traced(t)
	require.Nil(t, Headers(context.Background(), ""), "nothing to carry")
	h := Headers(context.Background(), "req-2")
	require.Equal(t, map[string]string{HeaderRequestID: "req-2"}, h, "a request id alone, no trace context")

	// The worker's own context may hold a span (none should be inherited).
	ctx, other := Start(context.Background(), "unrelated")
	defer other.End()
	for _, headers := range []map[string]string{nil, h, {HeaderTraceparent: "not-a-traceparent"}} {
		c := FromHeaders(headers)
		require.False(t, c.Parent.IsValid())
		_, run := StartTask(ctx, c, Task{Type: "x"})
		run.End()
		got := rec.Ended()[len(rec.Ended())-1]
		require.False(t, got.Parent().IsValid(), "a root span")
		require.NotEqual(t, other.SpanContext().TraceID(), got.SpanContext().TraceID())
		require.Empty(t, got.Links())
	}
}

func TestRetryAndLateDeliveryAreLinked(t *testing.T) {
	rec := traced(t)
	ctx, create := Start(context.Background(), "create")
	create.End()
	fresh := FromHeaders(Headers(ctx, ""))
	late := FromHeaders(Headers(ctx, ""))
	late.EnqueuedAt = time.Now().Add(-LinkAfter - time.Second)

	for name, tc := range map[string]struct {
		c           Carried
		redelivered bool
	}{"retry": {fresh, true}, "late": {late, false}} {
		t.Run(name, func(t *testing.T) {
			_, run := StartTask(context.Background(), tc.c, Task{Type: "x", Redelivered: tc.redelivered})
			run.End()
			got := rec.Ended()[len(rec.Ended())-1]
			require.False(t, got.Parent().IsValid(), "not a child")
			require.NotEqual(t, create.SpanContext().TraceID(), got.SpanContext().TraceID(), "a trace of its own")
			require.Len(t, got.Links(), 1)
			require.Equal(t, create.SpanContext().SpanID(), got.Links()[0].SpanContext.SpanID(), "linked to the creating span")
		})
	}
}

func TestEnqueuedAtIsRead(t *testing.T) {
	traced(t)
	ctx, span := Start(context.Background(), "create")
	defer span.End()
	h := Headers(ctx, "")
	ms, err := strconv.ParseInt(h[HeaderEnqueuedAt], 10, 64)
	require.NoError(t, err)
	require.Equal(t, time.UnixMilli(ms), FromHeaders(h).EnqueuedAt)
	require.True(t, FromHeaders(h).Child(false, time.UnixMilli(ms).Add(LinkAfter)))
	require.False(t, FromHeaders(h).Child(false, time.UnixMilli(ms).Add(LinkAfter+time.Millisecond)))
}

func TestOffCarriesTheCreatingTraceIDOnly(t *testing.T) {
	// A worker that does not trace still logs the creating trace's id.
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx, create := tp.Tracer("api").Start(context.Background(), "create")
	create.End()
	c := FromHeaders(Headers(ctx, "req-3"))

	require.False(t, Enabled())
	wctx, run := StartTask(context.Background(), c, Task{Type: "x"})
	require.Equal(t, noop.Span{}, run)
	require.Equal(t, context.Background(), wctx)
	require.Equal(t, create.SpanContext().TraceID().String(), TaskTraceID(wctx, c))
	sctx, span := Start(context.Background(), "x")
	require.Equal(t, noop.Span{}, span)
	require.Equal(t, context.Background(), sctx)
	require.Len(t, rec.Ended(), 1, "no span but the creating one")
}

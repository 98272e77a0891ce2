package tracing

import (
	"context"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Task headers: what a task carries from its creation to the worker (Asynq
// task headers, kept with the task in Redis across its retries).
const (
	// HeaderTraceparent and HeaderTracestate are the W3C trace context of
	// the span that enqueued the task.
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
	// HeaderRequestID is the id of the API request that created the task.
	HeaderRequestID = "request_id"
	// HeaderEnqueuedAt is when the trace context was taken, in Unix
	// milliseconds: how much later a delivery runs decides between a child
	// span and a link (see StartTask).
	HeaderEnqueuedAt = "enqueued_at"
)

// LinkAfter is how long after its creation a task's first delivery may run
// and still be a child of the creating request's span; a later one (a task
// scheduled ahead, a long queue) starts a trace of its own linked to it.
const LinkAfter = 5 * time.Minute

// traceContext is the W3C propagator of task headers, used whether or not
// this process traces, so that a worker without tracing still logs the
// creating trace's id.
var traceContext = propagation.TraceContext{}

// Headers returns the task headers for a task created under ctx by the
// request requestID: ctx's trace context, when it holds one, and the request
// id, when not empty; nil when there is neither.
func Headers(ctx context.Context, requestID string) map[string]string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() && requestID == "" {
		return nil
	}
	size := 1
	if sc.IsValid() {
		size = 4
	}
	h := make(map[string]string, size)
	if sc.IsValid() {
		traceContext.Inject(ctx, propagation.MapCarrier(h))
		h[HeaderEnqueuedAt] = strconv.FormatInt(time.Now().UnixMilli(), 10)
	}
	if requestID != "" {
		h[HeaderRequestID] = requestID
	}
	return h
}

// Carried is what a task's headers say about its creation.
type Carried struct {
	// Parent is the creating span's context; invalid when none was carried.
	Parent trace.SpanContext
	// RequestID is the creating request's id, "" when none.
	RequestID string
	// EnqueuedAt is when the trace context was taken; zero when unknown.
	EnqueuedAt time.Time
}

// FromHeaders reads task headers (nil is fine).
func FromHeaders(h map[string]string) Carried {
	c := Carried{RequestID: h[HeaderRequestID]}
	if h[HeaderTraceparent] == "" {
		return c
	}
	c.Parent = trace.SpanContextFromContext(traceContext.Extract(context.Background(), propagation.MapCarrier(h)))
	if ms, err := strconv.ParseInt(h[HeaderEnqueuedAt], 10, 64); err == nil {
		c.EnqueuedAt = time.UnixMilli(ms)
	}
	return c
}

// Child reports whether a delivery starting at now, the redelivered'th
// (0: the first), continues the creating trace as a child span. The rule:
// only the first delivery of a task, started within LinkAfter of its
// creation, is a child; a retry (Asynq's, a manual one or a reconciler's
// requeue) or a delivery much later than the creation is a new trace linked
// to the creating span, so that a trace does not stretch over hours and
// each attempt is a trace of its own.
func (c Carried) Child(redelivered bool, now time.Time) bool {
	return c.Parent.IsValid() && !redelivered && !c.EnqueuedAt.IsZero() && now.Sub(c.EnqueuedAt) <= LinkAfter
}

// Task names a delivery of a task for StartTask.
type Task struct {
	ID, Type, Queue string
	// Attempt is the attempt's number in the task's history (1 for the
	// first); Redelivered says that the message ran before (an Asynq retry)
	// or is a new message of a task that ran before (a manual retry, a
	// requeue).
	Attempt     int
	Redelivered bool
}

// StartTask starts the worker's span of one delivery of a task, "task
// <type>", as a child of the creating span or linked to it (Carried.Child).
// Off, it returns ctx as it was and a no-op span.
func StartTask(ctx context.Context, c Carried, t Task) (context.Context, trace.Span) {
	if !on.Load() {
		return ctx, noop.Span{}
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		attribute.String("task.id", t.ID), attribute.String("task.type", t.Type), attribute.Int("task.attempt", t.Attempt),
		attribute.String("messaging.system", "asynq"), attribute.String("messaging.destination.name", t.Queue))}
	switch {
	case c.Child(t.Redelivered, time.Now()):
		ctx = trace.ContextWithRemoteSpanContext(ctx, c.Parent)
	case c.Parent.IsValid():
		opts = append(opts, trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: c.Parent}))
	default:
		opts = append(opts, trace.WithNewRoot())
	}
	return tracer.Start(ctx, "task "+t.Type, opts...)
}

// TaskTraceID is the trace id a task's log lines carry: that of ctx's span
// (the delivery's, see StartTask) or, when this process does not trace, the
// creating trace's.
func TaskTraceID(ctx context.Context, c Carried) string {
	if id := TraceID(ctx); id != "" {
		return id
	}
	if c.Parent.HasTraceID() {
		return c.Parent.TraceID().String()
	}
	return ""
}

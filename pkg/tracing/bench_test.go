package tracing

import (
	"context"
	"testing"
)

// BenchmarkOff is what tracing costs the create path and the worker when it
// is off: the task headers (nil, or the request id alone), the worker's
// span and the project's own spans.
func BenchmarkOff(b *testing.B) {
	ctx := context.Background()
	b.Run("headers-none", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = Headers(ctx, "")
		}
	})
	b.Run("headers-request-id", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = Headers(ctx, "0123456789abcdef01234567")
		}
	})
	b.Run("start-task", func(b *testing.B) {
		b.ReportAllocs()
		c := FromHeaders(nil)
		for b.Loop() {
			sctx, span := StartTask(ctx, c, Task{ID: "task_1", Type: "webhook_callback", Queue: "normal", Attempt: 1})
			_ = TaskTraceID(sctx, c)
			span.End()
		}
	})
	b.Run("start", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, span := Start(ctx, "enqueue")
			if span.IsRecording() {
				b.Fatal("recording while off")
			}
			span.End()
		}
	})
}

// BenchmarkOn is the same with tracing on (spans recorded in memory), for
// comparison.
func BenchmarkOn(b *testing.B) {
	traced(b)
	ctx, parent := Start(context.Background(), "request")
	defer parent.End()
	b.Run("headers", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = Headers(ctx, "0123456789abcdef01234567")
		}
	})
	b.Run("start-task", func(b *testing.B) {
		b.ReportAllocs()
		c := FromHeaders(Headers(ctx, "0123456789abcdef01234567"))
		for b.Loop() {
			sctx, span := StartTask(context.Background(), c, Task{ID: "task_1", Type: "webhook_callback", Queue: "normal", Attempt: 1})
			_ = TaskTraceID(sctx, c)
			span.End()
		}
	})
}

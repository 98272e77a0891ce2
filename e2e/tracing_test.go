package e2e

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/api/client"
)

// TestTracingFollowsATaskFromRequestToHandler runs the stack with tracing on,
// exporting to an in-process OTLP/HTTP receiver, creates one task through
// the API and checks that one trace holds the create request's server span,
// the enqueue and its Redis command, a PostgreSQL statement and the worker's
// span of the task, whose parents lead to the request's span; that the
// worker's log lines about the task carry the trace id and the request id
// the API answered with; and that the task view and its log lines show the
// trace id.
func TestTracingFollowsATaskFromRequestToHandler(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	otlp := newOTLPReceiver(t)
	s := startStackOn(t, testenv.NewRedis(t),
		"TASKFORGE_TRACING_ENABLED=true",
		"TASKFORGE_TRACING_ENDPOINT="+otlp.srv.URL,
		// Batches go out every 100ms rather than every 5s.
		"OTEL_BSP_SCHEDULE_DELAY=100",
		// The worker's per-attempt lines are at debug level.
		"TASKFORGE_LOG_LEVEL=debug",
	)
	admin := s.client(s.adminKey)

	resp, err := admin.CreateTaskWithResponse(context.Background(), nil, newTask("webhook_callback", params{
		"url": s.hooks.srv.URL + "/traced", "payload": map[string]any{"traced": true},
	}))
	require.NoError(t, err)
	require.Equalf(t, http.StatusCreated, resp.StatusCode(), "%s", resp.Body)
	id, requestID := resp.JSON201.TaskId, resp.HTTPResponse.Header.Get("X-Request-ID")
	require.NotEmpty(t, requestID)
	task := s.waitStatus(t, admin, id, client.StatusCompleted, 60*time.Second)
	require.NotNil(t, task.TraceId, "the task view shows the trace id")
	traceID := *task.TraceId
	require.Len(t, traceID, 32, "a W3C trace id in hex")
	require.Len(t, s.hooks.received("/traced"), 1)
	require.NotEmpty(t, s.hooks.received("/traced")[0].Header.Get("Traceparent"),
		"the webhook's request through the egress guard carries the trace")
	require.Contains(t, s.hooks.received("/traced")[0].Header.Get("Traceparent"), traceID)

	// The trace, once every service exported its spans.
	var tr traceSpans
	require.Eventuallyf(t, func() bool {
		tr = otlp.trace(traceID)
		return tr.find("taskforge-worker", "task webhook_callback") != nil &&
			tr.find("taskforge-api", "POST /api/v1/tasks") != nil
	}, 30*time.Second, 100*time.Millisecond, "the request's and the handler's spans in trace %s; got %s", traceID, lazy(func() string {
		return otlp.trace(traceID).String()
	}))
	request := tr.find("taskforge-api", "POST /api/v1/tasks")
	require.Equal(t, tracepb.Span_SPAN_KIND_SERVER, request.span.GetKind())
	enqueue := tr.find("taskforge-api", "enqueue")
	require.NotNil(t, enqueue, "the enqueue span; got %s", tr)
	require.Equal(t, tracepb.Span_SPAN_KIND_PRODUCER, enqueue.span.GetKind())
	require.True(t, tr.descends(enqueue, request), "the enqueue is within the request; got %s", tr)
	redisSpan := tr.where("taskforge-api", func(sp *tracepb.Span) bool {
		return attr(sp, "db.system") == "redis" && tr.descends(tr.byID[hex.EncodeToString(sp.GetSpanId())], enqueue)
	})
	require.NotNil(t, redisSpan, "the enqueue's Redis command; got %s", tr)
	pgSpan := tr.where("", func(sp *tracepb.Span) bool {
		return attr(sp, "db.system.name") == "postgresql" || attr(sp, "db.system") == "postgresql"
	})
	require.NotNil(t, pgSpan, "a PostgreSQL statement; got %s", tr)
	handler := tr.find("taskforge-worker", "task webhook_callback")
	require.Equal(t, tracepb.Span_SPAN_KIND_CONSUMER, handler.span.GetKind())
	require.Equal(t, id, attr(handler.span, "task.id"))
	require.True(t, tr.descends(handler, enqueue), "the handler's span is the enqueue's child; got %s", tr)
	require.True(t, tr.descends(handler, request), "the handler's parents lead to the request's span; got %s", tr)
	out := tr.where("taskforge-worker", func(sp *tracepb.Span) bool {
		return sp.GetKind() == tracepb.Span_SPAN_KIND_CLIENT && attr(sp, "http.request.method") == "POST"
	})
	require.NotNil(t, out, "the webhook's outbound request; got %s", tr)
	require.True(t, tr.descends(tr.byID[hex.EncodeToString(out.GetSpanId())], handler))

	// The worker's log lines about the task, and its stored log lines.
	var lines []map[string]any
	for _, p := range s.procs {
		if !strings.HasPrefix(p.name, "worker") {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(p.Output()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["task_id"] == id {
				lines = append(lines, line)
			}
		}
	}
	require.NotEmpty(t, lines, "the worker logs the task's attempt")
	for _, line := range lines {
		require.Equal(t, traceID, line["trace_id"], "%v", line)
		require.Equal(t, requestID, line["request_id"], "%v", line)
		require.EqualValues(t, 1, line["attempt"], "%v", line)
	}
	stored := logs(t, admin, id)
	require.NotEmpty(t, stored.Logs)
	for _, l := range stored.Logs {
		require.NotNil(t, l.TraceId, "%+v", l)
		require.Equal(t, traceID, *l.TraceId, "%+v", l)
	}
}

// otlpReceiver is an OTLP/HTTP trace receiver: it decodes the protobuf
// ExportTraceServiceRequest of every POST /v1/traces and keeps the spans.
type otlpReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []receivedSpan
}

// receivedSpan is a span with the service.name of the process that sent it.
type receivedSpan struct {
	service string
	span    *tracepb.Span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	o := &otlpReceiver{}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		raw, err := io.ReadAll(body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(raw, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					o.spans = append(o.spans, receivedSpan{service: service, span: sp})
				}
			}
		}
		o.mu.Unlock()
		answer, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(answer)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

// trace returns the spans received so far of the trace id (hex).
func (o *otlpReceiver) trace(id string) traceSpans {
	o.mu.Lock()
	defer o.mu.Unlock()
	tr := traceSpans{byID: map[string]*receivedSpan{}}
	for i := range o.spans {
		sp := &o.spans[i]
		if hex.EncodeToString(sp.span.GetTraceId()) == id {
			tr.spans = append(tr.spans, sp)
			tr.byID[hex.EncodeToString(sp.span.GetSpanId())] = sp
		}
	}
	return tr
}

// traceSpans are the spans of one trace.
type traceSpans struct {
	spans []*receivedSpan
	byID  map[string]*receivedSpan
}

// find returns the span of service named name, or nil.
func (tr traceSpans) find(service, name string) *receivedSpan {
	for _, sp := range tr.spans {
		if sp.service == service && sp.span.GetName() == name {
			return sp
		}
	}
	return nil
}

// where returns a span of service ("" for any) that ok accepts, or nil.
func (tr traceSpans) where(service string, ok func(*tracepb.Span) bool) *tracepb.Span {
	for _, sp := range tr.spans {
		if (service == "" || sp.service == service) && ok(sp.span) {
			return sp.span
		}
	}
	return nil
}

// descends reports whether ancestor is on span's chain of parents.
func (tr traceSpans) descends(span, ancestor *receivedSpan) bool {
	for seen := 0; span != nil && seen <= len(tr.spans); seen++ {
		parent := hex.EncodeToString(span.span.GetParentSpanId())
		if parent == hex.EncodeToString(ancestor.span.GetSpanId()) {
			return true
		}
		span = tr.byID[parent]
	}
	return false
}

// String lists the spans, for failure messages.
func (tr traceSpans) String() string {
	var b strings.Builder
	for _, sp := range tr.spans {
		b.WriteString("\n  " + sp.service + ": " + sp.span.GetName() + " (" + sp.span.GetKind().String() + ") id " +
			hex.EncodeToString(sp.span.GetSpanId()) + " parent " + hex.EncodeToString(sp.span.GetParentSpanId()))
	}
	return b.String()
}

// attr is the string value of span's attribute key, or "".
func attr(sp *tracepb.Span, key string) string {
	for _, kv := range sp.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskforge/taskforge/services/api/client"
)

// sseServer serves a task's stream from a script of events; each connection
// continues after the Last-Event-ID it sends. cut makes the first connection
// break after that many events.
type sseServer struct {
	mu       sync.Mutex
	events   []string // "id|kind|data"
	cut      int
	conns    int
	resumeAt []string // the Last-Event-ID of each connection
	auth     []string
}

func (s *sseServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.conns++
	conn := s.conns
	s.resumeAt = append(s.resumeAt, r.Header.Get("Last-Event-ID"))
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	s.mu.Unlock()
	if r.URL.Path != "/api/v1/tasks/task_1/events" {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"type":"urn:taskforge:problem:not-found","title":"Not Found","status":404,"detail":"task not found","request_id":"r1"}`)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	start := 0
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		for i, e := range s.events {
			if strings.HasPrefix(e, id+"|") {
				start = i + 1
			}
		}
	}
	_, _ = io.WriteString(w, ": keep-alive\n\n")
	for i, e := range s.events[start:] {
		if conn == 1 && s.cut > 0 && i == s.cut {
			return // the connection breaks
		}
		parts := strings.SplitN(e, "|", 3)
		fmt.Fprintf(w, "id: %s\nevent: %s\n", parts[0], parts[1])
		for _, line := range strings.Split(parts[2], "\n") {
			fmt.Fprintf(w, "data: %s\n", line)
		}
		_, _ = io.WriteString(w, "\n")
		w.(http.Flusher).Flush()
	}
}

func taskJSON(status string, progress float64) string {
	return fmt.Sprintf(`{"task_id":"task_1","type":"refresh_portfolio","status":%q,"progress":%g,"current_step":"step","messages":[],"params":{},"priority":"normal","retry_policy":{"max_retries":3,"backoff":"exponential","base_seconds":60},"created_by":"k","attempts":1,"max_retries":3,"estimated_duration":1,"timeout_seconds":60,"cancel_requested":false,"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","scheduled_for":"2026-01-01T00:00:00Z"}`, status, progress)
}

func newScript(cut int) *sseServer {
	return &sseServer{cut: cut, events: []string{
		"1|task|" + taskJSON("pending", 0),
		"2|task|" + taskJSON("running", 0),
		"3|log|" + `{"attempt":1,"fields":{},"level":"info","message":"line one","ts":"2026-01-01T00:00:01Z"}`,
		// A multi-line data field joins with newlines (still one JSON value).
		"4|task|" + strings.Replace(taskJSON("running", 0.5), `"progress"`, "\n\"progress\"", 1),
		"5|task|" + taskJSON("completed", 1),
	}}
}

func TestTaskEventsParsesTheStream(t *testing.T) {
	t.Parallel()
	srv := newScript(0)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, err := client.NewClient(ts.URL, client.WithBearerToken("tok"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.TaskEvents(context.Background(), "task_1", "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []string
	for {
		ev, err := s.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case client.EventTask:
			got = append(got, fmt.Sprintf("%s:%s:%g", ev.ID, ev.Task.Status, ev.Task.Progress))
		case client.EventLog:
			got = append(got, ev.ID+":log:"+ev.Log.Message)
		}
	}
	want := "1:pending:0 2:running:0 3:log:line one 4:running:0.5 5:completed:1"
	if strings.Join(got, " ") != want {
		t.Fatalf("events\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if s.LastEventID() != "5" {
		t.Fatalf("last event id %q", s.LastEventID())
	}
	if srv.auth[0] != "Bearer tok" {
		t.Fatalf("authorization %q", srv.auth[0])
	}
}

func TestWatchTaskResumesWithLastEventID(t *testing.T) {
	t.Parallel()
	srv := newScript(3) // the first connection breaks after event 3
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, _ := client.NewClient(ts.URL)
	var ids []string
	final, err := c.WatchTask(context.Background(), "task_1", client.WatchOptions{
		OnEvent: func(ev client.Event) error { ids = append(ids, ev.ID); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if final.Status != client.StatusCompleted {
		t.Fatalf("final status %s", final.Status)
	}
	if strings.Join(ids, ",") != "1,2,3,4,5" {
		t.Fatalf("events seen %v: a resume must neither lose nor repeat one", ids)
	}
	if len(srv.resumeAt) != 2 || srv.resumeAt[1] != "3" {
		t.Fatalf("connections resumed at %q, want a second one after event 3", srv.resumeAt)
	}
}

func TestWatchTaskReturnsTheAPIError(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(newScript(0))
	defer ts.Close()
	c, _ := client.NewClient(ts.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.WatchTask(ctx, "task_other", client.WatchOptions{})
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
		t.Fatalf("error %v, want the API's 404", err)
	}
	if apiErr.RequestID() != "r1" || apiErr.Error() != "Not Found: task not found" {
		t.Fatalf("rendered %q (request id %q)", apiErr.Error(), apiErr.RequestID())
	}
}

func TestErrorFromRendersFieldErrors(t *testing.T) {
	t.Parallel()
	body := `{"type":"urn:taskforge:problem:validation","title":"Unprocessable Content","status":422,"detail":"invalid params","errors":[{"field":"params.portfolio_id","message":"required"}]}`
	err := client.ErrorFrom(422, "application/problem+json", []byte(body))
	if err == nil || err.Error() != "Unprocessable Content: invalid params\n  params.portfolio_id: required" {
		t.Fatalf("rendered %q", err)
	}
	if client.StatusOf(err) != 422 {
		t.Fatalf("status %d", client.StatusOf(err))
	}
	err = client.ErrorFrom(502, "text/html", []byte("<html>bad gateway</html>"))
	if err == nil || err.Error() != "HTTP 502 Bad Gateway: <html>bad gateway</html>" {
		t.Fatalf("rendered %q", err)
	}
	if client.ErrorFrom(204, "", nil) != nil {
		t.Fatal("a success is not an error")
	}
}

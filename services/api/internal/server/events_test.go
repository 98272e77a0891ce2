package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/lifecycle/lifecycletest"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/worker"
	"github.com/taskforge/taskforge/services/api/client"
	"github.com/taskforge/taskforge/services/api/internal/live"
)

// streamsSetup is a bundle with live events and short stream timings.
func streamsSetup(t *testing.T, hub live.Options) testBundle {
	return setupWith(t, setupOptions{streams: &StreamOptions{KeepAlive: 100 * time.Millisecond, WriteTimeout: 5 * time.Second},
		hubOpts: hub})
}

// streamClient is the generated client without the validating transport
// (which reads whole bodies: a stream has no end).
func (b testBundle) streamClient(t *testing.T, token string) *client.Client {
	t.Helper()
	c, err := client.NewClient(b.http.URL, client.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+token)
		return nil
	}))
	require.NoError(t, err)
	return c
}

// steps is a handler that reports one progress step per value sent on its
// channel and completes when the channel closes.
func steps(next <-chan string) job.Handler {
	return func(ctx context.Context, r job.Reporter, _ proto.Message) error {
		n := 0
		for step := range next {
			n++
			r.Progress(float64(n)/10, step, "did "+step)
			r.Log(job.Info, "step "+step, map[string]any{"n": n})
		}
		return r.SetResult(map[string]any{"steps": n})
	}
}

// runWorker runs a worker runtime with handler for refresh_portfolio, publishing
// its changes through b's publisher.
func runWorker(t *testing.T, b testBundle, handler job.Handler) {
	t.Helper()
	rt, err := worker.New(b.pg.DB, b.rd.Client, b.inspector, zap.NewNop(), worker.Options{
		WorkerID: "events-worker", Handlers: map[string]job.Handler{tasks.TypeRefreshPortfolio: handler},
		FlushInterval: 20 * time.Millisecond, Registerer: prometheus.NewRegistry(), Events: b.events,
	})
	require.NoError(t, err)
	srv := asynq.NewServer(b.rd.Opt(), rt.AsynqConfig(worker.ServerOptions{Concurrency: 4,
		QueueWeights: map[string]int{"critical": 8, "high": 4, "normal": 2, "low": 1}, StrictPriority: true,
		ShutdownTimeout: 5 * time.Second, TaskCheckInterval: 20 * time.Millisecond}))
	require.NoError(t, srv.Start(rt))
	t.Cleanup(func() {
		srv.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rt.Close(ctx)
	})
}

var refreshAll = client.CreateTaskRequest{Type: tasks.TypeRefreshPortfolio, Params: &map[string]any{"all": true}}

// next reads the next event within a deadline.
func next(t *testing.T, s *client.EventStream) (client.Event, error) {
	t.Helper()
	type res struct {
		ev  client.Event
		err error
	}
	ch := make(chan res, 1)
	go func() { ev, err := s.Next(); ch <- res{ev, err} }()
	select {
	case r := <-ch:
		return r.ev, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
		return client.Event{}, nil
	}
}

func nextTask(t *testing.T, s *client.EventStream) *client.Task {
	t.Helper()
	for {
		ev, err := next(t, s)
		require.NoError(t, err)
		if ev.Type == client.EventTask {
			require.NotEmpty(t, ev.ID)
			return ev.Task
		}
	}
}

// TestTaskStreamFollowsATaskToItsEnd: snapshot, running, each progress step
// with its log line, completed, then the end of the stream; the response is
// an uncompressed, unbuffered event stream.
func TestTaskStreamFollowsATaskToItsEnd(t *testing.T) {
	t.Parallel()
	b := streamsSetup(t, live.Options{})
	op := b.client(t, tokOp)
	stepCh := make(chan string)
	runWorker(t, b, steps(stepCh))

	// Headers, from a raw request.
	id := create(t, op, refreshAll)
	req, err := http.NewRequest(http.MethodGet, b.http.URL+"/api/v1/tasks/"+id+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tokOp)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	require.Equal(t, "no", resp.Header.Get("X-Accel-Buffering"))
	require.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
	require.NotEqual(t, "gzip", resp.Header.Get("Content-Encoding"))
	_ = resp.Body.Close()

	s, err := b.streamClient(t, tokOp).TaskEvents(ctx, id, "")
	require.NoError(t, err)
	defer s.Close()
	snap := nextTask(t, s)
	require.Equal(t, id, snap.TaskId)
	require.Contains(t, []client.Status{"pending", "running"}, snap.Status, "the worker may have started it already")

	var statuses []string
	var stepsSeen []string
	var logs []string
	for _, step := range []string{"one", "two", "three"} {
		stepCh <- step
		for {
			ev, err := next(t, s)
			require.NoError(t, err)
			if ev.Type == client.EventLog {
				logs = append(logs, ev.Log.Message)
				continue
			}
			statuses = append(statuses, string(ev.Task.Status))
			if ev.Task.CurrentStep == step {
				stepsSeen = append(stepsSeen, step)
				break
			}
		}
	}
	close(stepCh)
	var last *client.Task
	for {
		ev, err := next(t, s)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		require.Nil(t, last, "nothing follows the terminal event")
		if ev.Type == client.EventLog {
			logs = append(logs, ev.Log.Message)
		} else if ev.Task.Status == "completed" {
			last = ev.Task
		}
	}
	require.NotNil(t, last, "the stream ends with the completed task")
	require.Equal(t, "running", statuses[0])
	require.Equal(t, []string{"one", "two", "three"}, stepsSeen)
	require.Contains(t, logs, "step one")
	require.Contains(t, logs, "step three")
	require.InDelta(t, 1.0, last.Progress, 1e-9)

	// A stream of a task already terminal: its snapshot, then the end.
	s2, err := b.streamClient(t, tokOp).TaskEvents(ctx, id, "")
	require.NoError(t, err)
	defer s2.Close()
	require.Equal(t, client.Status("completed"), nextTask(t, s2).Status)
	_, err = next(t, s2)
	require.ErrorIs(t, err, io.EOF)
}

// TestTaskStreamResumesWithLastEventID: a client that reconnects gets every
// log line it missed, then the task as it is now; a resume after the terminal
// event ends at once; an unknown id starts again from a snapshot.
func TestTaskStreamResumesWithLastEventID(t *testing.T) {
	t.Parallel()
	b := streamsSetup(t, live.Options{})
	op := b.client(t, tokOp)
	stepCh := make(chan string)
	runWorker(t, b, steps(stepCh))
	id := create(t, op, refreshAll)
	sc := b.streamClient(t, tokOp)

	s, err := sc.TaskEvents(ctx, id, "")
	require.NoError(t, err)
	nextTask(t, s)
	stepCh <- "one"
	for {
		ev, err := next(t, s)
		require.NoError(t, err)
		if ev.Type == client.EventLog && ev.Log.Message == "step one" {
			break
		}
	}
	resumeAt := s.LastEventID()
	require.NoError(t, s.Close())

	// Missed while away: two steps and the end.
	stepCh <- "two"
	stepCh <- "three"
	close(stepCh)
	require.Eventually(t, func() bool { return taskRow(t, b, id).Status == "completed" }, 10*time.Second, 20*time.Millisecond)

	r, err := sc.TaskEvents(ctx, id, resumeAt)
	require.NoError(t, err)
	defer r.Close()
	var logs []string
	var final *client.Task
	for {
		ev, err := next(t, r)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		require.Nil(t, final, "nothing follows the terminal event")
		if ev.Type == client.EventLog {
			logs = append(logs, ev.Log.Message)
		} else {
			final = ev.Task
		}
	}
	require.Contains(t, logs, "step two")
	require.Contains(t, logs, "step three")
	require.NotContains(t, logs, "step one", "what the client had is not sent again")
	require.NotNil(t, final)
	require.Equal(t, client.Status("completed"), final.Status)

	// Resumed after the terminal event: nothing more, the stream ends.
	again, err := sc.TaskEvents(ctx, id, r.LastEventID())
	require.NoError(t, err)
	defer again.Close()
	_, err = next(t, again)
	require.ErrorIs(t, err, io.EOF)

	// An id the history does not hold: a fresh snapshot.
	fresh, err := sc.TaskEvents(ctx, id, "not-an-event-id")
	require.NoError(t, err)
	defer fresh.Close()
	require.Equal(t, client.Status("completed"), nextTask(t, fresh).Status)
}

// TestStreamsShowOnlyWhatTheCallerMaySee: another owner's task stream is 404;
// /events shows a caller's own tasks, an admin's every task; bad filters are
// 400 naming the parameter.
func TestStreamsShowOnlyWhatTheCallerMaySee(t *testing.T) {
	t.Parallel()
	b := streamsSetup(t, live.Options{})
	op, op2 := b.client(t, tokOp), b.client(t, tokOp2)
	mine := create(t, op, refreshAll)

	resp := b.raw(t, http.MethodGet, "/api/v1/tasks/"+mine+"/events", tokViewer, nil, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp = b.raw(t, http.MethodGet, "/api/v1/tasks/"+mine+"/events", tokOp2, nil, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	for param, field := range map[string]string{"status=sleeping": "status", "priority=urgent": "priority", "limit=0": "limit"} {
		code, body, _ := b.call(t, http.MethodGet, "/api/v1/events?"+param, tokOp, "")
		require.Equal(t, http.StatusBadRequest, code, param)
		require.Contains(t, body, `"field":"`+field+`"`, param)
	}

	mineStream, err := b.streamClient(t, tokOp).Events(ctx, client.EventFilter{}, "")
	require.NoError(t, err)
	defer mineStream.Close()
	adminStream, err := b.streamClient(t, tokAdmin).Events(ctx, client.EventFilter{Type: tasks.TypeRefreshPortfolio}, "")
	require.NoError(t, err)
	defer adminStream.Close()
	// The snapshots: op's one task; the admin's every task of the type.
	require.Equal(t, mine, nextTask(t, mineStream).TaskId)
	require.Equal(t, mine, nextTask(t, adminStream).TaskId)

	// Live: op2's task reaches the admin only; op's next task reaches both.
	theirs := create(t, op2, refreshAll)
	require.Equal(t, theirs, nextTask(t, adminStream).TaskId)
	again := create(t, op, refreshAll)
	require.Equal(t, again, nextTask(t, adminStream).TaskId)
	require.Equal(t, again, nextTask(t, mineStream).TaskId, "op never sees op2's task")
}

// TestStreamKeepAliveAndCaps: a silent stream sends a comment at the
// configured interval; past the caller's cap, or the replica's, a new stream
// gets 429 with Retry-After; a closed stream frees its place.
func TestStreamKeepAliveAndCaps(t *testing.T) {
	t.Parallel()
	b := streamsSetup(t, live.Options{MaxPerCaller: 2, MaxStreams: 3})
	op := b.client(t, tokOp)
	id := create(t, op, refreshAll)

	open := func(token string) (*http.Response, *bufio.Reader) {
		req, err := http.NewRequest(http.MethodGet, b.http.URL+"/api/v1/tasks/"+id+"/events", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp, bufio.NewReader(resp.Body)
	}
	first, r := open(tokOp)
	require.Equal(t, http.StatusOK, first.StatusCode)
	// Two keep-alive comments after the snapshot, 100 ms apart.
	comments := 0
	deadline := time.Now().Add(10 * time.Second)
	for comments < 2 && time.Now().Before(deadline) {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(line, ": keep-alive") {
			comments++
		}
	}
	require.Equal(t, 2, comments)

	second, _ := open(tokOp)
	require.Equal(t, http.StatusOK, second.StatusCode)
	third, _ := open(tokOp)
	require.Equal(t, http.StatusTooManyRequests, third.StatusCode, "the caller's cap")
	require.Equal(t, "application/problem+json", third.Header.Get("Content-Type"))
	require.NotEmpty(t, third.Header.Get("Retry-After"))

	adm, _ := open(tokAdmin)
	require.Equal(t, http.StatusOK, adm.StatusCode)
	adm2, _ := open(tokAdmin)
	require.Equal(t, http.StatusTooManyRequests, adm2.StatusCode, "the replica's cap")

	// A closed stream frees its place.
	require.NoError(t, second.Body.Close())
	require.Eventually(t, func() bool {
		resp, _ := open(tokOp)
		ok := resp.StatusCode == http.StatusOK
		_ = resp.Body.Close()
		return ok
	}, 5*time.Second, 20*time.Millisecond)
}

// TestTaskStreamRereadsALostChange: a change whose publication was lost (a
// direct update of the row) reaches the stream at the next quiet keep-alive.
func TestTaskStreamRereadsALostChange(t *testing.T) {
	t.Parallel()
	b := streamsSetup(t, live.Options{})
	op := b.client(t, tokOp)
	id := create(t, op, refreshAll)
	s, err := b.streamClient(t, tokOp).TaskEvents(ctx, id, "")
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, client.Status("pending"), nextTask(t, s).Status)
	require.NoError(t, lifecycletest.Force(b.pg.DB, id, `current_step = 'unannounced'`))
	require.Equal(t, "unannounced", nextTask(t, s).CurrentStep)
}

// TestStreamsEndWhenTheHubCloses: shutting the hub down ends every stream.
func TestStreamsEndWhenTheHubCloses(t *testing.T) {
	t.Parallel()
	b := streamsSetup(t, live.Options{})
	id := create(t, b.client(t, tokOp), refreshAll)
	s, err := b.streamClient(t, tokOp).TaskEvents(ctx, id, "")
	require.NoError(t, err)
	defer s.Close()
	all, err := b.streamClient(t, tokAdmin).Events(ctx, client.EventFilter{}, "")
	require.NoError(t, err)
	defer all.Close()
	nextTask(t, s)
	nextTask(t, all)
	b.hub.Shutdown()
	for _, st := range []*client.EventStream{s, all} {
		var err error
		for err == nil {
			_, err = next(t, st)
		}
		require.ErrorIs(t, err, io.EOF)
	}
	resp := b.raw(t, http.MethodGet, "/api/v1/tasks/"+id+"/events", tokOp, nil, nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

// TestConditionalGets: a task's strong ETag changes with the row; If-None-Match
// with the current one is 304 without a body; a list page likewise.
func TestConditionalGets(t *testing.T) {
	t.Parallel()
	b := setup(t)
	op := b.client(t, tokOp)
	id := create(t, op, refreshAll)

	get := func(path, inm string) *http.Response {
		h := map[string]string{}
		if inm != "" {
			h["If-None-Match"] = inm
		}
		return b.raw(t, http.MethodGet, path, tokOp, nil, h)
	}
	for _, path := range []string{"/api/v1/tasks/" + id, "/api/v1/tasks"} {
		first := get(path, "")
		require.Equal(t, http.StatusOK, first.StatusCode)
		tag := first.Header.Get("ETag")
		require.Regexp(t, `^"[^"]+"$`, tag, "a strong ETag")
		same := get(path, tag)
		require.Equal(t, http.StatusNotModified, same.StatusCode, path)
		body, _ := io.ReadAll(same.Body)
		require.Empty(t, body)
		require.Equal(t, tag, same.Header.Get("ETag"))
		require.Equal(t, http.StatusNotModified, get(path, `"other", W/`+tag).StatusCode, "a list and weak comparison")
		require.Equal(t, http.StatusOK, get(path, `"other"`).StatusCode)
	}
	tag := get("/api/v1/tasks/"+id, "").Header.Get("ETag")
	listTag := get("/api/v1/tasks", "").Header.Get("ETag")
	require.NoError(t, lifecycletest.Force(b.pg.DB, id, `progress = 0.5`))
	changed := get("/api/v1/tasks/"+id, tag)
	require.Equal(t, http.StatusOK, changed.StatusCode)
	require.NotEqual(t, tag, changed.Header.Get("ETag"))
	require.Equal(t, http.StatusOK, get("/api/v1/tasks", listTag).StatusCode)
}

// TestEventsStreamWritesWaitingEventsTogether: changes published at once
// reach an /events stream complete and in order, in fewer writes than
// events.
func TestEventsStreamWritesWaitingEventsTogether(t *testing.T) {
	t.Parallel()
	b := streamsSetup(t, live.Options{})
	op := b.client(t, tokOp)
	s, err := b.streamClient(t, tokAdmin).Events(ctx, client.EventFilter{}, "")
	require.NoError(t, err)
	defer s.Close()
	const n = 60
	ids := make([]string, n)
	for i := range ids {
		ids[i] = create(t, op, refreshAll)
		require.Equal(t, ids[i], nextTask(t, s).TaskId)
	}
	writes, delivered := counter(t, b.reg, "taskforge_events_writes_total"), counter(t, b.reg, "taskforge_events_delivered_total")

	evs := make([]event.Event, n)
	for i, id := range ids {
		evs[i] = event.Task(id, 1, "pending")
	}
	b.events.Publish(evs...)
	for _, id := range ids {
		require.Equal(t, id, nextTask(t, s).TaskId, "in the order published")
	}
	// At least n: a delivery of the creates above may be counted after its
	// event was read, once the counters were taken.
	require.Eventually(t, func() bool { return counter(t, b.reg, "taskforge_events_delivered_total")-delivered >= n }, 5*time.Second, 10*time.Millisecond)
	wrote := counter(t, b.reg, "taskforge_events_writes_total") - writes
	require.Positive(t, wrote)
	require.Less(t, wrote, float64(n), "events waiting for the stream share a write")
}

// counter sums the samples of a counter in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

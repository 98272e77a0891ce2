package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/services/api/internal/live"
)

// StreamOptions bound the live event streams (config events.*).
type StreamOptions struct {
	// KeepAlive is the longest a stream stays silent (a comment line); a
	// task's stream that had nothing to send re-reads the task as often. If
	// zero, 15s.
	KeepAlive time.Duration
	// WriteTimeout bounds each write to a client (a write has between ¾ of it
	// and all of it). If zero, 10s.
	WriteTimeout time.Duration
	// History is the most events a resumed task stream replays (the per-task
	// history's cap). If zero, 1000.
	History int64
	// ResumeMax is the most events a resumed /api/v1/events stream replays.
	// If zero, 10000.
	ResumeMax int64
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.KeepAlive <= 0 {
		o.KeepAlive = 15 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.History <= 0 {
		o.History = event.DefaultHistory
	}
	if o.ResumeMax <= 0 {
		o.ResumeMax = 10000
	}
	return o
}

// retryMillis is the reconnection delay the streams suggest to clients.
const retryMillis = 1000

// RenderTask is the JSON of a task as GET /api/v1/tasks/{id} shows it: the
// data of a task event (live.Renderer).
func RenderTask(t store.Task) ([]byte, error) {
	var buf bytes.Buffer
	if err := jsonEncoder(&buf).Encode(taskDetails(t)); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// A write of the events stream carries at most coalesceEvents events, or
// about coalesceBytes.
const (
	coalesceEvents = 32
	coalesceBytes  = 32 << 10
)

// sse writes one stream: each write under a deadline, flushed at once.
type sse struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	// deadline is the connection's write deadline. A write moves it to
	// timeout from now only when less than ¾ of timeout is left, so a write
	// has between ¾ timeout and timeout to finish and a busy stream does not
	// re-arm the connection's timer on every event.
	deadline time.Time
	buf      []byte
}

// open sends the stream's headers: no caching, no proxy buffering, no
// compression, and the server's read and write timeouts lifted (the stream's
// writes set their own deadline).
func openSSE(c echo.Context, timeout time.Duration) (*sse, error) {
	w := c.Response()
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Content-Encoding", "identity")
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: rc, timeout: timeout}
	return s, s.write([]byte("retry: " + strconv.Itoa(retryMillis) + "\n\n"))
}

func (s *sse) write(b []byte) error {
	if now := time.Now(); s.deadline.Sub(now) < s.timeout*3/4 {
		s.deadline = now.Add(s.timeout)
		if err := s.rc.SetWriteDeadline(s.deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
	}
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}

// event writes one event; data is one line of JSON.
func (s *sse) event(id, kind string, data []byte) error {
	s.add(id, kind, data)
	return s.send()
}

// add buffers one event for the next send.
func (s *sse) add(id, kind string, data []byte) {
	s.buf = append(s.buf, "id: "...)
	s.buf = append(s.buf, id...)
	s.buf = append(s.buf, "\nevent: "...)
	s.buf = append(s.buf, kind...)
	s.buf = append(s.buf, "\ndata: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, "\n\n"...)
}

// send writes the buffered events at once. A buffer grown past a few events is
// let go, so that an idle stream holds little.
func (s *sse) send() error {
	err := s.write(s.buf)
	if cap(s.buf) > 8<<10 {
		s.buf = nil
	} else {
		s.buf = s.buf[:0]
	}
	return err
}

func (s *sse) keepAlive() error { return s.write([]byte(": keep-alive\n\n")) }

// streamRefused answers a subscription the hub refused.
func streamRefused(c echo.Context, err error) error {
	switch {
	case errors.Is(err, live.ErrTooManyForCaller):
		c.Response().Header().Set("Retry-After", "5")
		return newError(http.StatusTooManyRequests, "too-many-streams", "you have too many event streams open")
	case errors.Is(err, live.ErrTooManyStreams):
		c.Response().Header().Set("Retry-After", "5")
		return newError(http.StatusTooManyRequests, "too-many-streams", "this server has too many event streams open")
	}
	return newError(http.StatusServiceUnavailable, "unavailable", "the server is shutting down")
}

// streamEnded records why a stream's write failed: a passed deadline is a
// dropped consumer; a client that went away is not.
func (s *Server) streamEnded(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.live.Dropped("write")
	}
	return nil
}

// taskEventID is the id of a task stream's events: the stream position and
// the version of the task the client has been shown, "<ms>-<seq>.<version>".
func taskEventID(pos string, version int64) string {
	return pos + "." + strconv.FormatInt(version, 10)
}

func parseTaskEventID(s string) (pos string, version int64, ok bool) {
	p, v, found := strings.Cut(s, ".")
	if !found {
		return "", 0, false
	}
	if _, ok := event.ParseID(p); !ok {
		return "", 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return "", 0, false
	}
	return p, n, true
}

// taskEvents handles GET /api/v1/tasks/{task_id}/events.
func (s *Server) taskEvents(c echo.Context) error {
	ctx := c.Request().Context()
	p := principal(c)
	id := c.Param("task_id")
	t, err := s.tasks.Get(ctx, p, id)
	if err != nil {
		return err
	}
	s.recordRead(c, readTask, t.ID, t.CreatedBy)
	if s.live == nil {
		return newError(http.StatusServiceUnavailable, "unavailable", "live events are not configured")
	}
	sub, err := s.live.Subscribe(p.ID, live.Interest{TaskID: id})
	if err != nil {
		return streamRefused(c, err)
	}
	defer sub.Close()

	// The position: the client's when its missed events are still held,
	// else the newest, with a fresh snapshot. Everything after it reaches
	// the subscription, which was open before it was read.
	rdr := s.live.Reader()
	pos, version, resumed := parseTaskEventID(c.Request().Header.Get("Last-Event-ID"))
	var replay []event.Entry
	if resumed {
		replay, err = rdr.Since(ctx, id, pos, s.streams.History)
		switch {
		case errors.Is(err, event.ErrGone):
			resumed = false
		case err != nil:
			return newError(http.StatusServiceUnavailable, "unavailable", "live events are unavailable; try again later")
		}
	}
	if !resumed {
		version = 0
		if pos, err = rdr.Last(ctx, id); err != nil {
			return newError(http.StatusServiceUnavailable, "unavailable", "live events are unavailable; try again later")
		}
	}
	row, err := s.tasks.Get(ctx, p, id)
	if err != nil {
		return err
	}

	out, err := openSSE(c, s.streams.WriteTimeout)
	if err != nil {
		return s.streamEnded(err)
	}
	// send writes row as a task event at pos when it is newer than what the
	// client was shown; done is true once the terminal state was written.
	send := func(row store.Task, at string) (done bool, err error) {
		if row.Version <= version {
			return tasks.IsTerminal(row.Status), nil
		}
		data, err := RenderTask(row)
		if err != nil {
			return false, err
		}
		if err := out.event(taskEventID(at, row.Version), event.KindTask, data); err != nil {
			return false, err
		}
		version = row.Version
		return tasks.IsTerminal(row.Status), nil
	}
	if resumed {
		for _, d := range live.Render(replay, map[string]store.Task{id: row}, RenderTask) {
			pos = d.ID
			if d.Kind == event.KindTask {
				continue // the row read now is shown below, once
			}
			if err := out.event(taskEventID(d.ID, version), d.Kind, d.Data); err != nil {
				return s.streamEnded(err)
			}
		}
		if len(replay) > 0 {
			pos = replay[len(replay)-1].ID
		}
	}
	if done, err := send(row, pos); err != nil || done {
		return s.streamEnded(err)
	}

	tick := time.NewTicker(s.streams.KeepAlive)
	defer tick.Stop()
	heard := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-sub.C:
			if !ok {
				return nil // shutdown, or the client fell behind: it resumes
			}
			heard = true
			if !event.After(d.ID, pos) {
				continue
			}
			pos = d.ID
			if d.Kind == event.KindTask {
				if d.Version <= version {
					continue
				}
				if err := out.event(taskEventID(d.ID, d.Version), d.Kind, d.Data); err != nil {
					return s.streamEnded(err)
				}
				version = d.Version
				s.live.Wrote()
				s.live.Delivered(d)
				if d.Terminal {
					return nil
				}
				continue
			}
			if err := out.event(taskEventID(d.ID, version), d.Kind, d.Data); err != nil {
				return s.streamEnded(err)
			}
			s.live.Wrote()
			s.live.Delivered(d)
		case <-tick.C:
			if !heard {
				// Nothing heard for a while: a publication may have been
				// lost, the row is the truth.
				rctx, cancel := context.WithTimeout(ctx, s.streams.WriteTimeout)
				row, err := s.tasks.Get(rctx, p, id)
				cancel()
				if err == nil {
					if done, err := send(row, pos); err != nil || done {
						return s.streamEnded(err)
					}
				} else if errors.Is(err, taskservice.ErrNotFound) {
					return nil
				}
			}
			heard = false
			if err := out.keepAlive(); err != nil {
				return s.streamEnded(err)
			}
		}
	}
}

// eventsQuery is the filter of GET /api/v1/events.
type eventsQuery struct {
	list     taskservice.ListQuery
	statuses map[string]bool
}

func parseEventsQuery(c echo.Context) (eventsQuery, error) {
	q := c.QueryParams()
	eq := eventsQuery{list: taskservice.ListQuery{Type: q.Get("type"), Priority: q.Get("priority"), ScheduleID: q.Get("schedule_id"),
		TriggerID: q.Get("trigger_id"), WorkflowID: q.Get("workflow_id")}}
	if eq.list.Priority != "" && !queue.ValidPriority(eq.list.Priority) {
		return eq, badRequest("priority", "must be critical, high, normal or low")
	}
	if v := q.Get("status"); v != "" {
		eq.statuses = map[string]bool{}
		for _, st := range strings.Split(v, ",") {
			st = strings.TrimSpace(st)
			if !tasks.ValidStatus(st) {
				return eq, badRequest("status", strconv.Quote(st)+" is not a status")
			}
			eq.statuses[st] = true
			eq.list.Statuses = append(eq.list.Statuses, st)
		}
	}
	var err error
	if eq.list.Limit, err = queryLimit(q.Get("limit"), taskservice.DefaultListLimit); err != nil {
		return eq, err
	}
	return eq, nil
}

// filter accepts the rows p may see that match the query.
func (q eventsQuery) filter(p auth.Principal) live.Filter {
	return func(t store.Task) bool {
		switch {
		case !p.IsAdmin() && (p.ID == "" || t.CreatedBy != p.ID),
			q.list.Type != "" && t.Type != q.list.Type,
			q.list.Priority != "" && t.Priority != q.list.Priority,
			q.statuses != nil && !q.statuses[t.Status],
			q.list.ScheduleID != "" && (t.ScheduleID == nil || *t.ScheduleID != q.list.ScheduleID),
			q.list.TriggerID != "" && (t.TriggerID == nil || *t.TriggerID != q.list.TriggerID),
			q.list.WorkflowID != "" && (t.WorkflowID == nil || *t.WorkflowID != q.list.WorkflowID):
			return false
		}
		return true
	}
}

// events handles GET /api/v1/events.
func (s *Server) events(c echo.Context) error {
	if s.live == nil {
		return newError(http.StatusServiceUnavailable, "unavailable", "live events are not configured")
	}
	q, err := parseEventsQuery(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	p := principal(c)
	filter := q.filter(p)
	in := live.Interest{Filter: filter}
	if !p.IsAdmin() {
		// Only the caller's own rows pass the filter: the hub need not offer
		// it anyone else's.
		in.Owner = p.ID
	}
	sub, err := s.live.Subscribe(p.ID, in)
	if err != nil {
		return streamRefused(c, err)
	}
	defer sub.Close()

	rdr := s.live.Reader()
	pos := c.Request().Header.Get("Last-Event-ID")
	var first []live.Delivery
	replay, err := rdr.Since(ctx, "", pos, s.streams.ResumeMax)
	switch {
	case err == nil:
		ids := map[string]bool{}
		for _, e := range replay {
			if e.Kind == event.KindTask {
				ids[e.TaskID] = true
			}
		}
		rows, err := s.tasks.Load(ctx, keys(ids))
		if err != nil {
			return err
		}
		for _, d := range live.Render(replay, rows, RenderTask) {
			if d.Kind == event.KindTask && filter(rows[d.TaskID]) {
				first = append(first, d)
			}
		}
		if len(replay) > 0 {
			pos = replay[len(replay)-1].ID
		}
	case errors.Is(err, event.ErrGone):
		// A fresh snapshot: the list's first page for the same filters, as
		// GET /api/v1/tasks/{id} shows each task.
		if pos, err = rdr.Last(ctx, ""); err != nil {
			return newError(http.StatusServiceUnavailable, "unavailable", "live events are unavailable; try again later")
		}
		page, err := s.tasks.List(ctx, p, q.list)
		if err != nil {
			return err
		}
		ids := make([]string, len(page.Items))
		for i, t := range page.Items {
			ids[i] = t.ID
		}
		rows, err := s.tasks.Load(ctx, ids)
		if err != nil {
			return err
		}
		for _, id := range ids {
			row, ok := rows[id]
			if !ok {
				continue
			}
			data, err := RenderTask(row)
			if err != nil {
				return err
			}
			first = append(first, live.Delivery{ID: pos, Kind: event.KindTask, TaskID: id, Version: row.Version, Data: data})
		}
	default:
		return newError(http.StatusServiceUnavailable, "unavailable", "live events are unavailable; try again later")
	}

	out, err := openSSE(c, s.streams.WriteTimeout)
	if err != nil {
		return s.streamEnded(err)
	}
	for _, d := range first {
		if err := out.event(d.ID, d.Kind, d.Data); err != nil {
			return s.streamEnded(err)
		}
	}
	tick := time.NewTicker(s.streams.KeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-sub.C:
			// The events already waiting go out with this one in one write:
			// a worker's flush publishes many changes at once, and a write
			// per event would cost a system call per event per stream.
			var batch [coalesceEvents]*live.Delivery
			n := 0
			for more := ok; more; {
				if event.After(d.ID, pos) {
					pos = d.ID
					out.add(d.ID, d.Kind, d.Data)
					batch[n] = d
					n++
				}
				if n == len(batch) || len(out.buf) >= coalesceBytes {
					break
				}
				select {
				case d, more = <-sub.C:
					ok = more
				default:
					more = false
				}
			}
			if n > 0 {
				if err := out.send(); err != nil {
					return s.streamEnded(err)
				}
				s.live.Wrote()
				for _, d := range batch[:n] {
					s.live.Delivered(d)
				}
			}
			if !ok {
				return nil
			}
		case <-tick.C:
			if err := out.keepAlive(); err != nil {
				return s.streamEnded(err)
			}
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

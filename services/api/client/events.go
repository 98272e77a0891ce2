package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Event kinds of the live streams.
const (
	EventTask = "task" // Data is a Task (the whole view)
	EventLog  = "log"  // Data is a LogLine
)

// Event is one server-sent event of GET /api/v1/tasks/{id}/events or
// GET /api/v1/events.
type Event struct {
	// ID resumes the stream after this event (Last-Event-ID).
	ID string
	// Type is EventTask or EventLog (other kinds are passed on undecoded).
	Type string
	// Data is the event's JSON.
	Data json.RawMessage
	// Task is set for EventTask, Log for EventLog.
	Task *Task
	Log  *LogLine
}

// EventStream reads a text/event-stream response. It is not safe for
// concurrent use.
type EventStream struct {
	body   io.ReadCloser
	r      *bufio.Reader
	lastID string
}

// maxEventBytes bounds one event: a task view with its params and messages is
// far below it.
const maxEventBytes = 4 << 20

// EventFilter selects the tasks of GET /api/v1/events, as the list's filters.
type EventFilter struct {
	Type, Status, Priority, ScheduleID, TriggerID, WorkflowID string
}

func (f EventFilter) values() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{
		"type": f.Type, "status": f.Status, "priority": f.Priority,
		"schedule_id": f.ScheduleID, "trigger_id": f.TriggerID, "workflow_id": f.WorkflowID,
	} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// TaskEvents opens the live stream of one task. lastEventID, when not empty,
// resumes after that event. A task the caller may not see is an *APIError
// with status 404.
func (c *Client) TaskEvents(ctx context.Context, taskID, lastEventID string) (*EventStream, error) {
	return c.openStream(ctx, "api/v1/tasks/"+url.PathEscape(taskID)+"/events", nil, lastEventID)
}

// Events opens the live stream of every task the caller may see that passes
// the filter.
func (c *Client) Events(ctx context.Context, f EventFilter, lastEventID string) (*EventStream, error) {
	return c.openStream(ctx, "api/v1/events", f.values(), lastEventID)
}

func (c *Client) openStream(ctx context.Context, path string, q url.Values, lastEventID string) (*EventStream, error) {
	base, err := url.Parse(c.Server)
	if err != nil {
		return nil, err
	}
	u, err := base.Parse(path)
	if err != nil {
		return nil, err
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	if err := c.applyEditors(ctx, req, nil); err != nil {
		return nil, err
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return nil, err
	}
	if err := ResponseError(resp); err != nil {
		_ = resp.Body.Close()
		return nil, err
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("client: %s answered %q, not an event stream", path, ct)
	}
	return &EventStream{body: resp.Body, r: bufio.NewReaderSize(resp.Body, 32<<10), lastID: lastEventID}, nil
}

// Next returns the next event. It returns io.EOF when the server ended the
// stream (after a task's terminal event), and the read error when the
// connection broke; comments (keep-alives) are skipped.
func (s *EventStream) Next() (Event, error) {
	var ev Event
	var data strings.Builder
	for {
		line, err := s.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && data.Len() > 0 {
				err = io.ErrUnexpectedEOF
			}
			return Event{}, err
		}
		if line == "" { // the end of an event
			if data.Len() == 0 && ev.Type == "" {
				continue
			}
			if ev.Type == "" {
				ev.Type = "message"
			}
			ev.Data = json.RawMessage(data.String())
			if ev.ID != "" {
				s.lastID = ev.ID
			}
			if err := ev.decode(); err != nil {
				return Event{}, err
			}
			return ev, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			ev.Type = value
		case "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			if data.Len() > maxEventBytes {
				return Event{}, fmt.Errorf("client: an event larger than %d bytes", maxEventBytes)
			}
		case "id":
			ev.ID = value
		}
	}
}

func (s *EventStream) readLine() (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := s.r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > maxEventBytes {
			return "", fmt.Errorf("client: an event line larger than %d bytes", maxEventBytes)
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

func (ev *Event) decode() error {
	switch ev.Type {
	case EventTask:
		ev.Task = new(Task)
		if err := json.Unmarshal(ev.Data, ev.Task); err != nil {
			return fmt.Errorf("client: task event %s: %w", ev.ID, err)
		}
	case EventLog:
		ev.Log = new(LogLine)
		if err := json.Unmarshal(ev.Data, ev.Log); err != nil {
			return fmt.Errorf("client: log event %s: %w", ev.ID, err)
		}
	}
	return nil
}

// LastEventID is the id of the last event read (or the one the stream was
// opened after).
func (s *EventStream) LastEventID() string { return s.lastID }

// Close ends the stream.
func (s *EventStream) Close() error { return s.body.Close() }

// WatchOptions tune WatchTask.
type WatchOptions struct {
	// OnEvent sees every event in order (optional). An error it returns stops
	// the watch and is returned.
	OnEvent func(Event) error
	// MaxBackoff bounds the wait between reconnections after a broken
	// connection. Default 5s.
	MaxBackoff time.Duration
}

// WatchTask follows a task's live stream until the task is terminal and
// returns its final view. A broken connection is resumed with Last-Event-ID
// (with backoff); an answer of the API (404, 401, ...) is returned as an
// *APIError. The task's own outcome (failed, cancelled) is not an error: look
// at the returned task's Status.
func (c *Client) WatchTask(ctx context.Context, taskID string, o WatchOptions) (*Task, error) {
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	var last *Task
	lastID := ""
	backoff := 100 * time.Millisecond
	for {
		s, err := c.TaskEvents(ctx, taskID, lastID)
		if err != nil {
			if StatusOf(err) != 0 && StatusOf(err) != http.StatusServiceUnavailable && StatusOf(err) != http.StatusTooManyRequests {
				return nil, err
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		} else {
			for {
				ev, err := s.Next()
				if err != nil {
					_ = s.Close()
					if errors.Is(err, io.EOF) && last != nil && IsTerminal(last.Status) {
						return last, nil
					}
					break
				}
				backoff = 100 * time.Millisecond
				lastID = s.LastEventID()
				if ev.Task != nil {
					last = ev.Task
				}
				if o.OnEvent != nil {
					if err := o.OnEvent(ev); err != nil {
						_ = s.Close()
						return last, err
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, o.MaxBackoff)
	}
}

// Package event carries the live changes of tasks from the processes that
// commit them (the worker's state writer, the task service, the reconciler)
// to every API replica, which streams them to clients as server-sent events.
//
// A writer publishes after its transaction commits. Events go to one capped
// Redis stream that every API replica reads (XREAD), and each task's events
// also to a capped stream of its own, with the same ids, that serves a
// reconnecting client's Last-Event-ID for a while (Options.HistoryTTL). Both
// are written by one script per event, and a batch of events costs one round
// trip. A task event names the row's version after the change, not its
// contents: the API reads the row (PostgreSQL stays the record) and shows it
// as GET /api/v1/tasks/{id} does. A log event carries its line.
//
// Publishing never blocks a writer and never fails its transaction: when Redis
// is unreachable or the queue is full the events are dropped and counted, and
// a stream that hears nothing re-reads the row.
package event

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The kinds of event.
const (
	// KindTask: a task row changed (status, progress, step, messages,
	// attempt, cancel request).
	KindTask = "task"
	// KindLog: a handler wrote a log line.
	KindLog = "log"
)

// Event is one change of a task.
type Event struct {
	// Kind is KindTask or KindLog.
	Kind string
	// TaskID is the task's id.
	TaskID string
	// Version is the row's version after the change (KindTask).
	Version int64
	// Status is the row's status after the change (KindTask).
	Status string
	// Log is the line (KindLog).
	Log *Log
	// Published is when the event was handed to the publisher; Publish sets
	// it. The API measures publish-to-deliver latency from it.
	Published time.Time
}

// Task is the event of a committed change of a task row.
func Task(id string, version int64, status string) Event {
	return Event{Kind: KindTask, TaskID: id, Version: version, Status: status}
}

// Log is one log line, as GET /api/v1/tasks/{id}/logs shows it.
type Log struct {
	TS      time.Time       `json:"ts"`
	Level   string          `json:"level"`
	Message string          `json:"message"`
	Attempt int             `json:"attempt"`
	Fields  json.RawMessage `json:"fields"`
}

// Entry is an event read back from a stream, at its position.
type Entry struct {
	// ID is the stream id ("<ms>-<seq>"); ids grow in publication order and
	// are the same in the shared stream and the task's own.
	ID string
	Event
}

// Field names of an event in a stream entry.
const (
	fieldKind      = "k"
	fieldTask      = "t"
	fieldVersion   = "v"
	fieldStatus    = "s"
	fieldPublished = "p"
	fieldLog       = "l"
)

// fields encodes e as the field/value pairs of a stream entry.
func (e Event) fields() ([]any, error) {
	out := []any{fieldKind, e.Kind, fieldTask, e.TaskID, fieldPublished, strconv.FormatInt(e.Published.UnixNano(), 10)}
	switch e.Kind {
	case KindTask:
		out = append(out, fieldVersion, strconv.FormatInt(e.Version, 10), fieldStatus, e.Status)
	case KindLog:
		if e.Log == nil {
			return nil, fmt.Errorf("event: log event of %s without a line", e.TaskID)
		}
		l := *e.Log
		if len(l.Fields) == 0 || !json.Valid(l.Fields) {
			l.Fields = json.RawMessage(`{}`)
		}
		b, err := json.Marshal(l)
		if err != nil {
			return nil, fmt.Errorf("event: log of %s: %w", e.TaskID, err)
		}
		out = append(out, fieldLog, string(b))
	default:
		return nil, fmt.Errorf("event: unknown kind %q", e.Kind)
	}
	return out, nil
}

// decode reads a stream entry's fields.
func decode(id string, values map[string]any) (Entry, error) {
	str := func(k string) string { s, _ := values[k].(string); return s }
	e := Entry{ID: id, Event: Event{Kind: str(fieldKind), TaskID: str(fieldTask), Status: str(fieldStatus)}}
	if e.TaskID == "" {
		return e, fmt.Errorf("event: entry %s has no task id", id)
	}
	if ns, err := strconv.ParseInt(str(fieldPublished), 10, 64); err == nil {
		e.Published = time.Unix(0, ns)
	}
	switch e.Kind {
	case KindTask:
		v, err := strconv.ParseInt(str(fieldVersion), 10, 64)
		if err != nil {
			return e, fmt.Errorf("event: entry %s: version: %w", id, err)
		}
		e.Version = v
	case KindLog:
		var l Log
		if err := json.Unmarshal([]byte(str(fieldLog)), &l); err != nil {
			return e, fmt.Errorf("event: entry %s: log: %w", id, err)
		}
		e.Log = &l
	default:
		return e, fmt.Errorf("event: entry %s: unknown kind %q", id, e.Kind)
	}
	return e, nil
}

// ID is a stream position: milliseconds and a sequence number.
type ID struct {
	MS, Seq uint64
}

// ParseID reads "<ms>-<seq>" (or "<ms>", sequence 0).
func ParseID(s string) (ID, bool) {
	ms, seq, found := strings.Cut(s, "-")
	a, err := strconv.ParseUint(ms, 10, 64)
	if err != nil {
		return ID{}, false
	}
	if !found {
		return ID{MS: a}, true
	}
	b, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return ID{}, false
	}
	return ID{MS: a, Seq: b}, true
}

// String is the stream's form of the id.
func (i ID) String() string {
	return strconv.FormatUint(i.MS, 10) + "-" + strconv.FormatUint(i.Seq, 10)
}

// Compare returns -1, 0 or 1 as i is before, at or after j.
func (i ID) Compare(j ID) int {
	switch {
	case i.MS < j.MS || (i.MS == j.MS && i.Seq < j.Seq):
		return -1
	case i == j:
		return 0
	}
	return 1
}

// After reports whether stream id a comes after b; an id that does not parse
// comes before every other.
func After(a, b string) bool {
	x, _ := ParseID(a)
	y, _ := ParseID(b)
	return x.Compare(y) > 0
}

package server

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/taskforge/taskforge/pkg/memo"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

// The JSON bodies of the responses; openapi.yaml describes each one and the
// tests validate every body they receive against it.

// taskCreated is the specification's creation response.
type taskCreated struct {
	TaskID            string    `json:"task_id"`
	Status            string    `json:"status"`
	CreatedAt         time.Time `json:"created_at"`
	ScheduledFor      time.Time `json:"scheduled_for"`
	Priority          string    `json:"priority"`
	EstimatedDuration int       `json:"estimated_duration"`
}

func createdView(t store.Task) taskCreated {
	return taskCreated{TaskID: t.ID, Status: t.Status, CreatedAt: t.CreatedAt.UTC(), ScheduledFor: t.ScheduledFor.UTC(),
		Priority: t.Priority, EstimatedDuration: t.EstimatedDuration}
}

type taskError struct {
	Message string `json:"message"`
	Kind    string `json:"kind,omitempty"`
	Attempt *int   `json:"attempt,omitempty"`
}

// taskView is a task's details.
type taskView struct {
	TaskID            string            `json:"task_id"`
	Type              string            `json:"type"`
	Status            string            `json:"status"`
	Priority          string            `json:"priority"`
	Params            json.RawMessage   `json:"params"`
	CreatedAt         time.Time         `json:"created_at"`
	UpdatedAt         time.Time         `json:"updated_at"`
	ScheduledFor      time.Time         `json:"scheduled_for"`
	EstimatedDuration int               `json:"estimated_duration"`
	Progress          float64           `json:"progress"`
	CurrentStep       string            `json:"current_step"`
	Messages          []string          `json:"messages"`
	StartedAt         *time.Time        `json:"started_at"`
	CompletedAt       *time.Time        `json:"completed_at"`
	Attempts          int               `json:"attempts"`
	MaxRetries        int               `json:"max_retries"`
	NextRetryAt       *time.Time        `json:"next_retry_at"`
	RetryPolicy       tasks.RetryPolicy `json:"retry_policy"`
	TimeoutSeconds    int               `json:"timeout_seconds"`
	DurationMs        *int64            `json:"duration_ms"`
	Result            json.RawMessage   `json:"result,omitempty"`
	ResultURL         *string           `json:"result_url"`
	Error             *taskError        `json:"error"`
	CreatedBy         string            `json:"created_by"`
	CallbackURL       *string           `json:"callback_url"`
	CancelRequested   bool              `json:"cancel_requested"`
	TraceID           string            `json:"trace_id"`
	ScheduleID        *string           `json:"schedule_id"`
	TriggerID         *string           `json:"trigger_id"`
	WorkflowID        *string           `json:"workflow_id"`
	StepID            *string           `json:"step_id"`
}

// taskDetails renders a row whose params are already redacted (taskservice's
// read operations redact them).
func taskDetails(t store.Task) taskView {
	v := taskView{
		TaskID: t.ID, Type: t.Type, Status: t.Status, Priority: t.Priority, Params: json.RawMessage(t.Params),
		CreatedAt: t.CreatedAt.UTC(), UpdatedAt: t.UpdatedAt.UTC(), ScheduledFor: t.ScheduledFor.UTC(),
		EstimatedDuration: t.EstimatedDuration, Progress: t.Progress, CurrentStep: t.CurrentStep,
		Messages: messages(t.Messages), StartedAt: utc(t.StartedAt), CompletedAt: utc(t.CompletedAt),
		Attempts: t.Attempt, MaxRetries: t.MaxRetries, NextRetryAt: utc(t.NextRetryAt),
		TimeoutSeconds: t.TimeoutSeconds, DurationMs: t.DurationMs, ResultURL: t.ResultURL,
		Error: errorView(t.Error), CreatedBy: t.CreatedBy, CallbackURL: t.CallbackURL,
		CancelRequested: t.CancelRequested, ScheduleID: t.ScheduleID, TriggerID: t.TriggerID,
		WorkflowID: t.WorkflowID, StepID: t.StepID,
	}
	v.TraceID = t.TraceID
	if len(v.Params) == 0 {
		v.Params = json.RawMessage(`{}`)
	}
	if len(t.Result) > 0 && string(t.Result) != "null" {
		v.Result = json.RawMessage(t.Result)
	}
	v.RetryPolicy = tasks.DefaultRetry
	if spec, ok := tasks.LookupAny(t.Type); ok {
		v.RetryPolicy = spec.Retry
	}
	_ = json.Unmarshal(t.RetryPolicy, &v.RetryPolicy)
	return v
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// messages reads the recent progress messages: strings, or objects with a
// "message" field.
func messages(raw store.JSON) []string {
	var items []json.RawMessage
	out := []string{}
	if json.Unmarshal(raw, &items) != nil {
		return out
	}
	for _, it := range items {
		var s string
		if json.Unmarshal(it, &s) == nil {
			out = append(out, s)
			continue
		}
		var obj struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(it, &obj) == nil && obj.Message != "" {
			out = append(out, obj.Message)
		}
	}
	return out
}

// errorView reads the task's error: {"message","kind","attempt"} or a string.
func errorView(raw store.JSON) *taskError {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var e taskError
	if json.Unmarshal(raw, &e) == nil && e.Message != "" {
		return &e
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return &taskError{Message: s}
	}
	return &taskError{Message: "unknown error"}
}

// listItems keeps the JSON of list items by task id, with the row's version:
// a row's version changes with every update of it, so a page of rows that
// did not change since it was last shown (a dashboard polling its first
// page) is answered without rendering them again. Items larger than
// maxListItem bytes are rendered every time; at most 4096 are kept.
type listItems struct {
	m *memo.Map[string, renderedItem]
}

type renderedItem struct {
	version int64
	json    []byte
}

const maxListItem = 4 << 10

func newListItems() *listItems { return &listItems{m: memo.New[string, renderedItem](4096)} }

// render returns t's JSON as a list item (RenderTask of its list columns).
func (l *listItems) render(t store.Task) ([]byte, error) {
	if r, ok := l.m.Get(t.ID); ok && r.version == t.Version {
		return r.json, nil
	}
	b, err := RenderTask(t)
	if err != nil {
		return nil, err
	}
	if len(b) <= maxListItem {
		l.m.Put(t.ID, renderedItem{version: t.Version, json: b})
	}
	return b, nil
}

// listBody writes a list page as JSON: {"items":[…],"next_cursor":…,
// "total":N,"total_is_estimate":…} and a newline, as encoding the page's
// view would.
func (l *listItems) listBody(buf *bytes.Buffer, p taskservice.Page) error {
	buf.WriteString(`{"items":[`)
	for i, t := range p.Items {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, err := l.render(t)
		if err != nil {
			return err
		}
		buf.Write(b)
	}
	buf.WriteString(`],"next_cursor":`)
	if p.NextCursor == "" {
		buf.WriteString("null")
	} else if err := jsonEncoder(buf).Encode(p.NextCursor); err != nil {
		return err
	} else {
		buf.Truncate(buf.Len() - 1) // Encode's newline
	}
	buf.WriteString(`,"total":`)
	buf.WriteString(strconv.FormatInt(p.Total, 10))
	buf.WriteString(`,"total_is_estimate":`)
	buf.WriteString(strconv.FormatBool(p.TotalIsEstimate))
	buf.WriteString("}\n")
	return nil
}

type logLine struct {
	TS      time.Time       `json:"ts"`
	Level   string          `json:"level"`
	Message string          `json:"message"`
	Attempt int             `json:"attempt"`
	Fields  json.RawMessage `json:"fields"`
	TraceID string          `json:"trace_id"`
}

type attemptView struct {
	Attempt     int        `json:"attempt"`
	Worker      string     `json:"worker"`
	StartedAt   time.Time  `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	DurationMs  *int64     `json:"duration_ms"`
	QueueWaitMs *int64     `json:"queue_wait_ms"`
	Outcome     string     `json:"outcome"`
	Error       *string    `json:"error"`
	ErrorKind   *string    `json:"error_kind"`
	Stack       *string    `json:"stack"`
}

type logMetrics struct {
	QueueWaitMs *int64 `json:"queue_wait_ms"`
	RunMs       *int64 `json:"run_ms"`
	TotalMs     *int64 `json:"total_ms"`
	Retries     int    `json:"retries"`
}

type taskLogs struct {
	TaskID     string        `json:"task_id"`
	Logs       []logLine     `json:"logs"`
	Attempts   []attemptView `json:"attempts"`
	Metrics    logMetrics    `json:"metrics"`
	NextCursor *string       `json:"next_cursor"`
}

func logsView(l taskservice.Logs) taskLogs {
	out := taskLogs{TaskID: l.TaskID, Logs: make([]logLine, len(l.Lines)), Attempts: make([]attemptView, len(l.Attempts)),
		Metrics: logMetrics{QueueWaitMs: l.Metrics.QueueWaitMs, RunMs: l.Metrics.RunMs, TotalMs: l.Metrics.TotalMs, Retries: l.Metrics.Retries}}
	for i, ln := range l.Lines {
		fields := json.RawMessage(ln.Fields)
		if len(fields) == 0 || string(fields) == "null" {
			fields = json.RawMessage(`{}`)
		}
		out.Logs[i] = logLine{TS: ln.TS.UTC(), Level: ln.Level, Message: ln.Message, Attempt: ln.Attempt, Fields: fields,
			TraceID: ln.TraceID}
	}
	for i, a := range l.Attempts {
		out.Attempts[i] = attemptView{Attempt: a.Attempt, Worker: a.Worker, StartedAt: a.StartedAt.UTC(),
			FinishedAt: utc(a.FinishedAt), DurationMs: a.DurationMs, QueueWaitMs: a.QueueWaitMs, Outcome: a.Outcome,
			Error: nonEmpty(a.ErrorMessage), ErrorKind: nonEmpty(a.ErrorKind), Stack: nonEmpty(a.Stack)}
	}
	if l.NextCursor != "" {
		c := l.NextCursor
		out.NextCursor = &c
	}
	return out
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

type taskType struct {
	Name              string            `json:"name"`
	Description       string            `json:"description"`
	Category          string            `json:"category"`
	DefaultPriority   string            `json:"default_priority"`
	TimeoutSeconds    int               `json:"timeout_seconds"`
	RetryPolicy       tasks.RetryPolicy `json:"retry_policy"`
	EstimatedDuration int               `json:"estimated_duration"`
	AdminOnly         bool              `json:"admin_only"`
	ParamsSchema      map[string]any    `json:"params_schema"`
}

type queueView struct {
	Name      string  `json:"name"`
	Size      int     `json:"size"`
	Pending   int     `json:"pending"`
	Running   int     `json:"running"`
	Scheduled int     `json:"scheduled"`
	Retrying  int     `json:"retrying"`
	Dead      int     `json:"dead"`
	Latency   float64 `json:"latency"`
	Paused    bool    `json:"paused"`
}

type typeStats struct {
	Type             string   `json:"type,omitempty"`
	Completed        int64    `json:"completed"`
	Failed           int64    `json:"failed"`
	Cancelled        int64    `json:"cancelled"`
	ThroughputPerMin float64  `json:"throughput_per_min"`
	SuccessRate      *float64 `json:"success_rate"`
	AvgDurationMs    *float64 `json:"avg_duration_ms"`
	P95DurationMs    *float64 `json:"p95_duration_ms"`
}

func typeStatsView(t taskservice.TypeStats) typeStats {
	return typeStats{Type: t.Type, Completed: t.Completed, Failed: t.Failed, Cancelled: t.Cancelled,
		ThroughputPerMin: t.ThroughputPerMin, SuccessRate: t.SuccessRate, AvgDurationMs: t.AvgDurationMs,
		P95DurationMs: t.P95DurationMs}
}

type statsView struct {
	Window string      `json:"window"`
	From   time.Time   `json:"from"`
	To     time.Time   `json:"to"`
	Types  []typeStats `json:"types"`
	Total  typeStats   `json:"total"`
}

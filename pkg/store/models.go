package store

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"time"
)

// JSON is a jsonb column kept as raw bytes.
type JSON json.RawMessage

// Value implements driver.Valuer.
func (j JSON) Value() (driver.Value, error) {
	if len(j) == 0 {
		return nil, nil
	}
	return string(j), nil
}

// Scan implements sql.Scanner.
func (j *JSON) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*j = nil
	case []byte:
		*j = append((*j)[:0], v...)
	case string:
		*j = JSON(v)
	default:
		return fmt.Errorf("store: cannot scan %T into JSON", src)
	}
	return nil
}

// MarshalJSON keeps the raw document.
func (j JSON) MarshalJSON() ([]byte, error) {
	if len(j) == 0 {
		return []byte("null"), nil
	}
	return j, nil
}

// UnmarshalJSON keeps the raw document.
func (j *JSON) UnmarshalJSON(b []byte) error {
	*j = append((*j)[:0], b...)
	return nil
}

// Task is a row of tasks: the record of one task.
type Task struct {
	ID                string `gorm:"primaryKey"`
	Type              string
	Status            string
	Priority          string
	Params            JSON
	KeyID             string
	CreatedBy         string
	IdempotencyKey    *string
	RequestHash       string
	CreatedAt         time.Time
	UpdatedAt         time.Time
	ScheduledFor      time.Time
	StartedAt         *time.Time
	CompletedAt       *time.Time
	Progress          float64
	CurrentStep       string
	Messages          JSON
	Attempt           int
	RetryBase         int
	MaxRetries        int
	RetryPolicy       JSON
	TimeoutSeconds    int
	EstimatedDuration int
	NextRetryAt       *time.Time
	Result            JSON
	ResultURL         *string
	Error             JSON
	WorkerID          string
	CancelRequested   bool
	CallbackURL       *string
	ScheduleID        *string
	FireTime          *time.Time
	TriggerID         *string
	// WorkflowID and StepID tie a task to the workflow step it runs (unique
	// together: a step has one task).
	WorkflowID  *string
	StepID      *string
	QueueWaitMs *int64
	DurationMs  *int64
	// TraceID is the trace the task was created in (hex; empty without
	// tracing), shown in the task view.
	TraceID string
	// RequestID is the id of the API request that created the task (empty
	// for a schedule's, a trigger's or a workflow's).
	RequestID string
	// Version is bumped by a trigger on every update of the row: the strong
	// ETag of the task and the order of its live events.
	Version int64 `gorm:"->"`
}

// TaskAttempt is a row of task_attempts: one attempt of a task.
type TaskAttempt struct {
	TaskID       string `gorm:"primaryKey"`
	Attempt      int    `gorm:"primaryKey"`
	Worker       string
	StartedAt    time.Time
	FinishedAt   *time.Time
	DurationMs   *int64
	QueueWaitMs  *int64
	Outcome      string
	ErrorKind    string
	ErrorMessage string
	Stack        string
}

// TaskLog is a row of task_logs: one log line a handler wrote.
type TaskLog struct {
	ID      int64 `gorm:"primaryKey"`
	TaskID  string
	Attempt int
	TS      time.Time `gorm:"column:ts"`
	Level   string
	Message string
	Fields  JSON
	// TraceID is the trace of the attempt that wrote the line (hex; may be
	// empty).
	TraceID string
}

// Models returns every model, for the test that holds them to the migrated
// schema. A package that adds a table adds its model here.
func Models() []any {
	return []any{
		&Task{}, &TaskAttempt{}, &TaskLog{},
		&Asset{}, &Price{}, &Portfolio{}, &Holding{}, &Benchmark{}, &PortfolioValue{}, &RiskMetric{},
		&Result{}, &Upload{},
		&APIKey{}, &AuditEntry{},
		&Schedule{},
		&TaskCallback{}, &CallbackSecret{}, &NotificationDelivery{},
		&PushSubscription{},
		&Trigger{}, &TriggerDelivery{}, &TriggerEvent{},
		&Workflow{}, &WorkflowStep{}, &WorkflowWakeup{},
	}
}

// Workflow is a row of workflows: a named DAG of steps (pkg/workflow).
type Workflow struct {
	ID              string
	Name            string
	Status          string
	CreatedBy       string
	Role            string
	CancelRequested bool
	CreatedAt       time.Time
	UpdatedAt       time.Time
	CompletedAt     *time.Time
	// ScheduleID and FireTime name the schedule fire that started the
	// workflow (unique together).
	ScheduleID *string
	FireTime   *time.Time
	// TriggerID and EventKey name the trigger event that started the
	// workflow (unique together); Event is that event, for the steps'
	// params_from.
	TriggerID *string
	EventKey  *string
	Event     JSON
}

// WorkflowStep is a row of workflow_steps: one step of a workflow as it was
// asked for (params sealed as a task's are, under KeyID).
type WorkflowStep struct {
	WorkflowID     string `gorm:"primaryKey"`
	StepID         string `gorm:"primaryKey"`
	Position       int
	Type           string
	Params         JSON
	KeyID          string
	ParamsFrom     JSON
	Priority       string
	RetryPolicy    JSON
	TimeoutSeconds *int
	DependsOn      JSON
	Error          string
}

// WorkflowWakeup is a row of workflow_wakeups: a workflow due an advance.
type WorkflowWakeup struct {
	ID         int64 `gorm:"primaryKey"`
	WorkflowID string
	QueuedAt   time.Time
}

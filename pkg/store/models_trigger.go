package store

import "time"

// Trigger is a row of triggers: an event trigger (pkg/trigger) whose events
// create its task.
type Trigger struct {
	ID        string `gorm:"primaryKey"`
	Name      string
	Kind      string
	Enabled   bool
	Owner     string
	OwnerRole string
	TaskType  string
	Params    JSON
	ParamMap  JSON
	// Workflow, when set, is the steps of the workflow each event starts
	// ({"steps": [...]}; TaskType is empty then).
	Workflow JSON
	// Priority, RetryPolicy and TimeoutSeconds are nil for the type's default.
	Priority       *string
	RetryPolicy    JSON
	TimeoutSeconds *int
	CallbackURL    *string
	// Secret and PreviousSecret are sealed (webhook triggers).
	Secret          *string
	PreviousSecret  *string
	PreviousUntil   *time.Time
	Table           *string `gorm:"column:table_name"`
	Operations      JSON
	DebounceSeconds int
	Filter          JSON
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// TriggerDelivery is a row of trigger_deliveries: one delivery to a trigger.
type TriggerDelivery struct {
	ID         string `gorm:"primaryKey"`
	TriggerID  string
	ReceivedAt time.Time
	WebhookID  *string
	Accepted   bool
	Status     int
	TaskID     *string
	Reason     string
	Excerpt    string
}

// TriggerEvent is a row of trigger_events: one statement's change to a table
// watched by a database trigger.
type TriggerEvent struct {
	ID          int64 `gorm:"primaryKey"`
	TriggerID   string
	Table       string `gorm:"column:table_name"`
	Operation   string
	RowData     JSON
	Changes     int
	CreatedAt   time.Time
	ProcessedAt *time.Time
	TaskID      *string
}

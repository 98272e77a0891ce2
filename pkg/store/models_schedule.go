package store

import "time"

// Schedule is a row of schedules: a cron schedule whose fires create tasks.
type Schedule struct {
	ID       string `gorm:"primaryKey"`
	Name     string
	Cron     string
	Timezone string
	Type     string
	Params   JSON
	// Workflow, when set, is the steps of the workflow each fire starts
	// (Type is empty then): {"steps": [...]}, secret params sealed.
	Workflow JSON
	// Priority, RetryPolicy and TimeoutSeconds are nil for the type's default.
	Priority       *string
	RetryPolicy    JSON
	TimeoutSeconds *int
	Enabled        bool
	CreatedBy      string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	// FiredThrough is the fire watermark: every tick up to it was created or
	// deliberately skipped.
	FiredThrough time.Time
	LastRunAt    *time.Time
	LastTaskID   *string
}

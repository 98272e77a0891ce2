package store

import "time"

// TaskCallback is a row of task_callbacks: one pending or finished delivery of
// a task's final state to its callback_url.
type TaskCallback struct {
	ID            int64 `gorm:"primaryKey"`
	TaskID        string
	URL           string `gorm:"column:url"`
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	DeliveredAt   *time.Time
	AbandonedAt   *time.Time
	CreatedAt     time.Time
}

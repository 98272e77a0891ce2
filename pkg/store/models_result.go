package store

import "time"

// Result is a row of results: one file a task produced, kept in result storage
// under Key by Backend until ExpiresAt.
type Result struct {
	ID          string `gorm:"primaryKey"`
	TaskID      string
	Name        string
	ContentType string
	Size        int64
	// SHA256 is the hex SHA-256 of the file's bytes.
	SHA256    string `gorm:"column:sha256"`
	Backend   string
	Key       string
	CreatedAt time.Time
	ExpiresAt time.Time
}

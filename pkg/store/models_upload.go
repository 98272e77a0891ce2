package store

import "time"

// Upload is a row of uploads: one file a caller uploaded, kept in result
// storage under Key by Backend until ExpiresAt.
type Upload struct {
	ID string `gorm:"primaryKey"`
	// CreatedBy is the principal who uploaded the file.
	CreatedBy   string
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

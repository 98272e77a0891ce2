package store

import "time"

// APIKey is a row of api_keys: an API key's metadata. The key itself is never
// stored; Hash is the hex SHA-256 of the whole key and Prefix its lookup part.
type APIKey struct {
	ID         string `gorm:"primaryKey"`
	Name       string
	Role       string
	Prefix     string
	Hash       string
	CreatedBy  string
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
	LastUsedAt *time.Time
}

// AuditEntry is a row of audit_log: one mutation or failed authentication.
type AuditEntry struct {
	ID           int64     `gorm:"primaryKey"`
	TS           time.Time `gorm:"column:ts"`
	Actor        string
	Action       string
	ResourceType string
	ResourceID   string
	Outcome      string
	ClientIP     string
	RequestID    string
	Details      JSON
	// Count is how many events an aggregated row stands for (1 for others).
	Count int
	// AggregateKey, when set, merges rows with the same key into one whose
	// Count grows (refused credentials: action, minute and client address).
	AggregateKey *string
}

// TableName is audit_log (the table is singular: it is one log).
func (AuditEntry) TableName() string { return "audit_log" }

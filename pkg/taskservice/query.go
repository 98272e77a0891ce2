package taskservice

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/memo"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
)

// Limits and defaults of the read operations.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
	DefaultLogLimit  = 100
	// CountCap bounds the exact count of a list: past it, total is the
	// planner's estimate and Page.TotalIsEstimate is set.
	CountCap = 10000
	// DefaultCountTimeout is Options.CountTimeout's default.
	DefaultCountTimeout = 5 * time.Millisecond
	DefaultWindow       = 24 * time.Hour
	MaxWindow           = 90 * 24 * time.Hour
	minWindow           = time.Minute
	maxTaskIDLength     = 64
	listSortDefault     = "-created_at"
	sortCreatedAt       = "created_at"
	sortScheduledFor    = "scheduled_for"
)

// InvalidQueryError is a list or logs query the service cannot run: a bad
// filter, sort, limit or cursor. The API answers it with 400.
type InvalidQueryError struct {
	Field   string
	Message string
}

func (e *InvalidQueryError) Error() string { return "invalid query: " + e.Field + ": " + e.Message }

func badQuery(field, format string, args ...any) error {
	return &InvalidQueryError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Get returns the task with id if p may see it, params redacted; otherwise
// ErrNotFound (also for tasks of other callers).
func (s *Service) Get(ctx context.Context, p auth.Principal, id string) (store.Task, error) {
	row, err := s.find(ctx, s.db, p, id)
	if err != nil {
		return row, err
	}
	row.Params = RedactParams(row.Type, row.Params)
	return row, nil
}

// find reads the row of a task p may see, params as stored.
func (s *Service) find(ctx context.Context, db *gorm.DB, p auth.Principal, id string) (store.Task, error) {
	var row store.Task
	if !strings.HasPrefix(id, "task_") || len(id) > maxTaskIDLength || (!p.IsAdmin() && p.ID == "") {
		return row, ErrNotFound
	}
	q := db.WithContext(ctx).Where("id = ?", id)
	if !p.IsAdmin() {
		q = q.Where("created_by = ?", p.ID)
	}
	if err := q.Take(&row).Error; err != nil {
		return row, translate("get task "+id, err)
	}
	return row, nil
}

// RedactParams returns params (as stored: JSON with proto field names) with
// every secret value of the type's message replaced by "***"
// (secret.RedactJSON, the one redaction of stored params). Params that do not
// parse come back as an empty object, never as they were. The result is
// shared: read it, never change it.
//
// It is a pure function of its arguments, and a list page asks it for every
// row (decoding and encoding the type's message: a tenth of the API's CPU
// per page), so small params are remembered with their redaction.
func RedactParams(typ string, params store.JSON) store.JSON {
	if len(params) > maxRememberedParams {
		return store.JSON(secret.RedactJSON(typ, json.RawMessage(params)))
	}
	key := typ + "\x00" + string(params)
	if r, ok := redacted.Get(key); ok {
		return r
	}
	r := store.JSON(secret.RedactJSON(typ, json.RawMessage(params)))
	redacted.Put(key, r)
	return r
}

// redacted remembers RedactParams' answers for params of at most
// maxRememberedParams bytes: at most 4096 × (2 + 2) KiB, 16 MiB.
var redacted = memo.New[string, store.JSON](4096)

const maxRememberedParams = 2 << 10

// Package audit keeps the audit log: one row per mutation (tasks created,
// cancelled or retried, schedule and API key changes) and per failed
// authentication, with who did it, to what, how it ended, from where and under
// which request id. Rows are only inserted (an aggregated row's count is
// raised, see Entry.Aggregate); no API deletes them (retention in
// cleanup_old_data is the one thing that prunes them). One exception keeps
// the log true: a task's creation row is written by the task service in the
// task's own statement (NewRow, taskservice.CreateRequest.Audit), and when
// that creation is undone before anyone was told of it (its enqueue failed)
// the row goes with the task, in one statement, and the refusal is recorded
// as any failure.
package audit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/groupcommit"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// ErrInvalidEntry means an entry lacks its action or has an unknown outcome.
var ErrInvalidEntry = errors.New("invalid audit entry")

// Outcomes of an audited action.
const (
	Success = "success"
	Failure = "failure"
	// Denied means the caller was authenticated but not allowed.
	Denied = "denied"
)

// Actions recorded by the services. New actions are added here so that the
// names stay consistent across the API, the CLI and the monitor.
const (
	ActionAuthFailure    = "auth.failure"
	ActionTaskCreate     = "task.create"
	ActionTaskCancel     = "task.cancel"
	ActionTaskRetry      = "task.retry"
	ActionScheduleCreate = "schedule.create"
	ActionScheduleUpdate = "schedule.update"
	ActionScheduleDelete = "schedule.delete"
	ActionAPIKeyCreate   = "api_key.create"
	ActionAPIKeyRevoke   = "api_key.revoke"
	ActionQueuePause     = "queue.pause"
	ActionQueueResume    = "queue.resume"
	// Event triggers: changes, secret rotations and refused deliveries.
	ActionTriggerCreate          = "trigger.create"
	ActionTriggerUpdate          = "trigger.update"
	ActionTriggerDelete          = "trigger.delete"
	ActionTriggerRotate          = "trigger.rotate_secret"
	ActionTriggerDeliveryRefused = "trigger.delivery_refused"
	// Workflows: creation and cancel.
	ActionWorkflowCreate = "workflow.create"
	ActionWorkflowCancel = "workflow.cancel"
	// ActionAdminOverride records an admin acting on (or reading) a resource
	// created by someone else.
	ActionAdminOverride = "admin.override"
	// ActionMonitorChange prefixes the changes made through Asynqmon:
	// "monitor.pause", "monitor.delete", "monitor.run", "monitor.archive_all"...
	ActionMonitorChange = "monitor"
)

// Resource types.
const (
	ResourceTask     = "task"
	ResourceSchedule = "schedule"
	ResourceAPIKey   = "api_key"
	ResourceQueue    = "queue"
	ResourceTrigger  = "trigger"
	ResourceWorkflow = "workflow"
)

// Limits of a query page.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// maxField caps every text field, so that caller-controlled values (a request
// id header, a token subject) cannot bloat a row.
const maxField = 256

// writeTimeout bounds one insert. The insert runs on a context that ignores the
// caller's cancellation: a client that hangs up must not erase its audit row.
const writeTimeout = 5 * time.Second

// Entry is one audited event.
type Entry struct {
	// Time is when it happened. If zero, now.
	Time time.Time
	// Actor is the principal id ("key_…", "jwt:<sub>", "bootstrap-admin"), or
	// for a failed authentication what the credential claimed, if anything.
	Actor        string
	Action       string
	ResourceType string
	ResourceID   string
	// Outcome is Success, Failure or Denied.
	Outcome   string
	ClientIP  string
	RequestID string
	// Details holds extra facts (a failure's reason, the task type). It must
	// never carry secrets or credentials.
	Details map[string]any
	// Aggregate, when set, merges this entry with the others of the same
	// action and Aggregate in the same minute (UTC) into one row, whose Count
	// says how many there were and whose other fields are the first entry's.
	// Refused credentials aggregate by client address, so that a flood of
	// them adds at most one row per address per minute.
	Aggregate string
}

// Recorder records audit entries. The auth middleware and the API depend on
// this interface, not on the database.
type Recorder interface {
	Record(ctx context.Context, e Entry) error
}

// Log is the audit log in PostgreSQL.
type Log struct {
	db *gorm.DB
	w  *groupcommit.Committer[*store.AuditEntry, struct{}]
}

// New returns a Log writing to db.
func New(db *gorm.DB) (*Log, error) {
	if db == nil {
		return nil, errors.New("audit: nil database")
	}
	return &Log{db: db, w: newWriter(db)}, nil
}

// Close writes the rows already handed over and stops the writer; a Record
// after it fails.
func (l *Log) Close() { l.w.Close() }

// NewRow checks e and makes its row, as Record writes it. A caller that
// writes the row in a statement of its own (the task service writes a
// creation's row with the task's) calls it.
func NewRow(e Entry) (store.AuditEntry, error) {
	if e.Action == "" {
		return store.AuditEntry{}, fmt.Errorf("audit: %w: action is empty", ErrInvalidEntry)
	}
	switch e.Outcome {
	case Success, Failure, Denied:
	default:
		return store.AuditEntry{}, fmt.Errorf("audit: %w: outcome %q", ErrInvalidEntry, e.Outcome)
	}
	details := []byte("{}")
	if len(e.Details) > 0 {
		b, err := json.Marshal(e.Details)
		if err != nil {
			return store.AuditEntry{}, fmt.Errorf("audit: %w: details: %v", ErrInvalidEntry, err)
		}
		details = b
	}
	ts := e.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	row := store.AuditEntry{
		TS: ts.UTC(), Actor: clip(e.Actor), Action: clip(e.Action),
		ResourceType: clip(e.ResourceType), ResourceID: clip(e.ResourceID),
		Outcome: e.Outcome, ClientIP: clip(e.ClientIP), RequestID: clip(e.RequestID),
		Details: store.JSON(details), Count: 1,
	}
	if e.Aggregate != "" {
		key := clip(e.Action + "|" + ts.UTC().Truncate(time.Minute).Format(time.RFC3339) + "|" + e.Aggregate)
		row.AggregateKey = &key
	}
	return row, nil
}

// Record inserts one row at once (no buffering, so nothing is lost when the
// process stops). It returns an error if the row could not be written; the
// caller logs it.
func (l *Log) Record(ctx context.Context, e Entry) error {
	row, err := NewRow(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	if _, err := l.w.Do(ctx, &row); err != nil {
		return fmt.Errorf("audit: record %s: %w", e.Action, store.Translate(err))
	}
	return nil
}

// clip keeps at most maxField bytes of s, cut on a rune boundary, and drops
// invalid UTF-8 (PostgreSQL text refuses it).
func clip(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) <= maxField {
		return s
	}
	cut := maxField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// Query selects audit rows, newest first. Empty fields do not filter.
type Query struct {
	Actor      string
	Action     string
	ResourceID string
	// Since keeps rows at or after this time.
	Since time.Time
	// Limit is the page size, 1..MaxLimit. If zero, DefaultLimit.
	Limit int
	// Cursor continues from a previous page's NextCursor.
	Cursor string
}

// Page is one page of rows.
type Page struct {
	Items []store.AuditEntry
	// NextCursor continues the listing; empty on the last page.
	NextCursor string
}

// List returns a page of rows matching q, newest first. The cursor is keyset
// based (the last id seen), so pages neither skip nor repeat rows while new
// ones are written. A bad limit or cursor gives a tasks.ValidationError naming
// the field.
func (l *Log) List(ctx context.Context, q Query) (Page, error) {
	limit := q.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	if limit < 1 || limit > MaxLimit {
		return Page{}, tasks.Invalid("limit", "must be between 1 and %d", MaxLimit)
	}
	db := l.db.WithContext(ctx).Model(&store.AuditEntry{})
	if q.Cursor != "" {
		before, err := decodeCursor(q.Cursor)
		if err != nil {
			return Page{}, tasks.Invalid("cursor", "is not a valid cursor")
		}
		db = db.Where("id < ?", before)
	}
	if q.Actor != "" {
		db = db.Where("actor = ?", q.Actor)
	}
	if q.Action != "" {
		db = db.Where("action = ?", q.Action)
	}
	if q.ResourceID != "" {
		db = db.Where("resource_id = ?", q.ResourceID)
	}
	if !q.Since.IsZero() {
		db = db.Where("ts >= ?", q.Since.UTC())
	}
	var rows []store.AuditEntry
	if err := db.Order("id DESC").Limit(limit + 1).Find(&rows).Error; err != nil {
		return Page{}, fmt.Errorf("audit: list: %w", store.Translate(err))
	}
	page := Page{Items: rows}
	if len(rows) > limit {
		page.Items = rows[:limit]
		page.NextCursor = encodeCursor(rows[limit-1].ID)
	}
	return page, nil
}

func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("a:" + strconv.FormatInt(id, 10)))
}

func decodeCursor(c string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, err
	}
	s, ok := strings.CutPrefix(string(b), "a:")
	if !ok {
		return 0, errors.New("bad cursor")
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, errors.New("bad cursor")
	}
	return id, nil
}

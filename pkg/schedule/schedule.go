// Package schedule holds Taskforge's cron schedules: their validation and
// storage in PostgreSQL, next-run computation in each schedule's timezone
// (daylight-saving changes included), the provider that feeds Asynq's
// PeriodicTaskManager, and the fire path that turns a schedule's tick into a
// task through the task service, exactly once per (schedule, fire time).
package schedule

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/workflow"
)

// Errors of the package, translated to status codes at the API's edge.
var (
	// ErrNotFound: no schedule with that id.
	ErrNotFound = errors.New("schedule not found")
	// ErrNameTaken: another schedule has the name.
	ErrNameTaken = errors.New("schedule name already taken")
	// ErrUnavailable: PostgreSQL is down; the request may be retried.
	ErrUnavailable = errors.New("dependency unavailable")
	// ErrBadCursor: a page cursor that this package did not issue.
	ErrBadCursor = errors.New("invalid cursor")
)

// Limits on a schedule.
const (
	MaxNameLength = 100
	DefaultLimit  = 50
	MaxLimit      = 500
)

// Schedule is a schedule as the API shows it.
type Schedule struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Cron           string            `json:"cron"`
	Timezone       string            `json:"timezone"`
	Type           string            `json:"type"`
	Params         json.RawMessage   `json:"params"`
	Workflow       json.RawMessage   `json:"workflow,omitempty"`
	Priority       string            `json:"priority"`
	RetryPolicy    tasks.RetryPolicy `json:"retry_policy"`
	TimeoutSeconds int               `json:"timeout_seconds"`
	Enabled        bool              `json:"enabled"`
	NextRunAt      *time.Time        `json:"next_run_at"`
	LastRunAt      *time.Time        `json:"last_run_at"`
	LastTaskID     *string           `json:"last_task_id"`
	CreatedBy      string            `json:"created_by"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
}

// Input is a create, replace or patch request; nil fields are absent.
type Input struct {
	Name     *string         `json:"name"`
	Cron     *string         `json:"cron"`
	Timezone *string         `json:"timezone"`
	Type     *string         `json:"type"`
	Params   json.RawMessage `json:"params"`
	// Workflow, instead of Type and Params, starts a workflow at each fire:
	// {"steps": [...]} as POST /api/v1/workflows takes them.
	Workflow json.RawMessage `json:"workflow"`
	Priority *string         `json:"priority"`
	// RetryPolicy is a JSON object of the policy fields to set; the others
	// keep the type's default (or, for a patch, the schedule's policy).
	RetryPolicy    json.RawMessage `json:"retry_policy"`
	TimeoutSeconds *int            `json:"timeout_seconds"`
	Enabled        *bool           `json:"enabled"`
}

// Store reads and writes schedules.
type Store struct {
	db  *gorm.DB
	now func() time.Time
	// keys, when set, seals secret params (NewSealedStore).
	keys Keyring
}

// NewStore returns a Store on db.
func NewStore(db *gorm.DB) (*Store, error) {
	if db == nil {
		return nil, errors.New("schedule: nil database")
	}
	return &Store{db: db, now: func() time.Time { return time.Now().UTC() }}, nil
}

// NewID returns a new schedule id: "sch_" and a lower-case ULID.
func NewID() string {
	return "sch_" + strings.ToLower(ulid.MustNew(ulid.Now(), rand.Reader).String())
}

// Create validates in and stores a new schedule. Its first fire is the first
// tick after now: a new schedule never fires for the past.
func (s *Store) Create(ctx context.Context, in Input, createdBy string) (Schedule, error) {
	row := store.Schedule{Timezone: "UTC", Enabled: true, Params: store.JSON("{}")}
	if err := apply(&row, in, true); err != nil {
		return Schedule{}, err
	}
	if err := s.seal(&row); err != nil {
		return Schedule{}, err
	}
	now := s.now()
	row.ID, row.CreatedBy, row.CreatedAt, row.UpdatedAt, row.FiredThrough = NewID(), createdBy, now, now, now
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		return Schedule{}, translate("create schedule", err)
	}
	return View(row, now), nil
}

// Get returns one schedule.
func (s *Store) Get(ctx context.Context, id string) (Schedule, error) {
	row, err := s.get(ctx, s.db, id)
	if err != nil {
		return Schedule{}, err
	}
	return View(row, s.now()), nil
}

// Row returns one schedule's row.
func (s *Store) Row(ctx context.Context, id string) (store.Schedule, error) {
	return s.get(ctx, s.db, id)
}

func (s *Store) get(ctx context.Context, db *gorm.DB, id string) (store.Schedule, error) {
	var row store.Schedule
	if err := db.WithContext(ctx).Take(&row, "id = ?", id).Error; err != nil {
		return row, translate("get schedule "+id, err)
	}
	return row, nil
}

// Replace overwrites a schedule with in (PUT): absent optional fields go back
// to their defaults.
func (s *Store) Replace(ctx context.Context, id string, in Input) (Schedule, error) {
	return s.update(ctx, id, func(row *store.Schedule) error {
		fresh := store.Schedule{Timezone: "UTC", Enabled: true, Params: store.JSON("{}")}
		if err := apply(&fresh, in, true); err != nil {
			return err
		}
		if err := s.seal(&fresh); err != nil {
			return err
		}
		fresh.ID, fresh.CreatedBy, fresh.CreatedAt = row.ID, row.CreatedBy, row.CreatedAt
		fresh.FiredThrough, fresh.LastRunAt, fresh.LastTaskID = row.FiredThrough, row.LastRunAt, row.LastTaskID
		*row = fresh
		return nil
	})
}

// Patch changes the fields present in in.
func (s *Store) Patch(ctx context.Context, id string, in Input) (Schedule, error) {
	return s.update(ctx, id, func(row *store.Schedule) error {
		if err := apply(row, in, false); err != nil {
			return err
		}
		return s.seal(row)
	})
}

// update reads the row under a lock, changes it and writes it back. When the
// schedule is re-enabled or its cron or timezone change, its fire watermark
// moves to now: ticks of the old definition, or of the time it was off, are
// not made up.
func (s *Store) update(ctx context.Context, id string, change func(*store.Schedule) error) (Schedule, error) {
	var out store.Schedule
	now := s.now()
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row store.Schedule
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Take(&row, "id = ?", id).Error; err != nil {
			return err
		}
		before := row
		if err := change(&row); err != nil {
			return err
		}
		if (row.Enabled && !before.Enabled) || row.Cron != before.Cron || row.Timezone != before.Timezone {
			if now.After(row.FiredThrough) {
				row.FiredThrough = now
			}
		}
		row.UpdatedAt = now
		if err := tx.Save(&row).Error; err != nil {
			return err
		}
		out = row
		return nil
	})
	if err != nil {
		if _, ok := tasks.AsValidation(err); ok {
			return Schedule{}, err
		}
		return Schedule{}, translate("update schedule "+id, err)
	}
	return View(out, now), nil
}

// Delete removes a schedule. The tasks it created stay.
func (s *Store) Delete(ctx context.Context, id string) error {
	res := s.db.WithContext(ctx).Delete(&store.Schedule{}, "id = ?", id)
	if res.Error != nil {
		return translate("delete schedule "+id, res.Error)
	}
	if res.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// Page is one page of a list.
type Page[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

// List returns schedules ordered by id (creation order), limit at a time.
func (s *Store) List(ctx context.Context, limit int, cursor string) (Page[Schedule], error) {
	limit = clampLimit(limit)
	q := s.db.WithContext(ctx).Order("id").Limit(limit + 1)
	if cursor != "" {
		after, err := decodeCursor(cursor)
		if err != nil {
			return Page[Schedule]{}, err
		}
		q = q.Where("id > ?", after)
	}
	var rows []store.Schedule
	if err := q.Find(&rows).Error; err != nil {
		return Page[Schedule]{}, translate("list schedules", err)
	}
	page := Page[Schedule]{Items: []Schedule{}}
	if len(rows) > limit {
		rows = rows[:limit]
		c := encodeCursor(rows[limit-1].ID)
		page.NextCursor = &c
	}
	now := s.now()
	for _, r := range rows {
		page.Items = append(page.Items, View(r, now))
	}
	return page, nil
}

// Run is a task a schedule created.
type Run struct {
	TaskID      string     `json:"task_id"`
	FireTime    time.Time  `json:"fire_time"`
	Status      string     `json:"status"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at"`
	CompletedAt *time.Time `json:"completed_at"`
	Attempts    int        `json:"attempts"`
	Error       store.JSON `json:"error"`
}

// Runs lists the tasks a schedule created, newest fire first. Fire times are
// unique per schedule, so the keyset is the fire time alone.
func (s *Store) Runs(ctx context.Context, id string, limit int, cursor string) (Page[Run], error) {
	if _, err := s.get(ctx, s.db, id); err != nil {
		return Page[Run]{}, err
	}
	limit = clampLimit(limit)
	q := s.db.WithContext(ctx).Model(&store.Task{}).Where("schedule_id = ?", id).
		Order("fire_time DESC").Limit(limit + 1)
	if cursor != "" {
		raw, err := decodeCursor(cursor)
		if err != nil {
			return Page[Run]{}, err
		}
		before, err := time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			return Page[Run]{}, ErrBadCursor
		}
		q = q.Where("fire_time < ?", before)
	}
	var rows []store.Task
	if err := q.Find(&rows).Error; err != nil {
		return Page[Run]{}, translate("list runs of "+id, err)
	}
	page := Page[Run]{Items: []Run{}}
	if len(rows) > limit {
		rows = rows[:limit]
		c := encodeCursor(rows[limit-1].FireTime.UTC().Format(time.RFC3339Nano))
		page.NextCursor = &c
	}
	for _, r := range rows {
		page.Items = append(page.Items, Run{
			TaskID: r.ID, FireTime: r.FireTime.UTC(), Status: r.Status, CreatedAt: r.CreatedAt.UTC(),
			StartedAt: utc(r.StartedAt), CompletedAt: utc(r.CompletedAt), Attempts: r.Attempt, Error: r.Error,
		})
	}
	return page, nil
}

// View renders a row for the API at time now; secret params are redacted.
func View(row store.Schedule, now time.Time) Schedule {
	spec, _ := tasks.Lookup(row.Type)
	v := Schedule{
		ID: row.ID, Name: row.Name, Cron: row.Cron, Timezone: row.Timezone, Type: row.Type,
		Params: redact(row.Type, row.Params), Priority: spec.Priority, RetryPolicy: spec.Retry,
		TimeoutSeconds: int(spec.Timeout / time.Second), Enabled: row.Enabled,
		LastRunAt: utc(row.LastRunAt), LastTaskID: row.LastTaskID, CreatedBy: row.CreatedBy,
		CreatedAt: row.CreatedAt.UTC(), UpdatedAt: row.UpdatedAt.UTC(),
	}
	if row.Workflow != nil {
		v.Workflow, v.Priority = redactSteps(row.Workflow), ""
	}
	if row.Priority != nil {
		v.Priority = *row.Priority
	}
	if len(row.RetryPolicy) > 0 {
		_ = json.Unmarshal(row.RetryPolicy, &v.RetryPolicy)
	}
	if row.TimeoutSeconds != nil {
		v.TimeoutSeconds = *row.TimeoutSeconds
	}
	if row.Enabled {
		v.NextRunAt = NextRun(row, now)
	}
	return v
}

// NextRun returns the schedule's next fire after now (or after its fire
// watermark, when that is later), or nil if its cron never fires again.
func NextRun(row store.Schedule, now time.Time) *time.Time {
	c, ferr := ParseCron(row.Cron, row.Timezone)
	if ferr != nil {
		return nil
	}
	from := now
	if row.FiredThrough.After(from) {
		from = row.FiredThrough
	}
	n := c.Next(from)
	if n.IsZero() {
		return nil
	}
	n = n.UTC()
	return &n
}

// apply validates in and writes its fields into row. With full, the
// required fields (name, cron, type) must be present.
func apply(row *store.Schedule, in Input, full bool) error {
	var errs []tasks.FieldError
	bad := func(field, msg string) { errs = append(errs, tasks.FieldError{Field: field, Message: msg}) }
	if in.Name != nil {
		name, problem := tasks.CheckName(*in.Name, MaxNameLength)
		if problem != "" {
			bad("name", problem)
		}
		row.Name = name
	} else if full {
		bad("name", "is required")
	}
	if in.Cron != nil {
		row.Cron = strings.TrimSpace(*in.Cron)
	} else if full {
		bad("cron", "is required")
	}
	if in.Timezone != nil {
		row.Timezone = *in.Timezone
		if row.Timezone == "" {
			row.Timezone = "UTC"
		}
	}
	if row.Cron != "" || in.Timezone != nil {
		if _, ferr := ParseCron(row.Cron, row.Timezone); ferr != nil {
			errs = append(errs, *ferr)
		}
	}
	if in.Workflow != nil || (row.Workflow != nil && in.Type == nil) {
		errs = append(errs, applyWorkflow(row, in)...)
		if in.Enabled != nil {
			row.Enabled = *in.Enabled
		}
		if len(errs) > 0 {
			return &tasks.ValidationError{Errors: errs}
		}
		return nil
	}
	typeChanged := false
	if in.Type != nil {
		typeChanged = *in.Type != row.Type
		row.Type = *in.Type
		row.Workflow = nil // a task from now on
	} else if full {
		bad("type", "is required (or workflow)")
	}
	spec, ok := tasks.Lookup(row.Type)
	switch {
	case row.Type == "" && in.Type != nil:
		bad("type", "must not be empty")
	case row.Type != "" && !ok:
		bad("type", fmt.Sprintf("unknown task type %q", row.Type))
	case ok && (in.Params != nil || typeChanged || full):
		raw := in.Params
		if raw == nil && !full {
			raw = json.RawMessage(row.Params)
		}
		msg, err := tasks.DecodeParams(spec, raw, "params")
		if v, isV := tasks.AsValidation(err); isV {
			errs = append(errs, v.Errors...)
		} else if err != nil {
			return err
		} else {
			b, err := tasks.ParamsJSON(msg)
			if err != nil {
				return fmt.Errorf("schedule: params: %w", err)
			}
			row.Params = store.JSON(b)
		}
	}
	switch {
	case in.Priority != nil && *in.Priority == "":
		row.Priority = nil
	case in.Priority != nil && !queue.ValidPriority(*in.Priority):
		bad("priority", "must be critical, high, normal or low")
	case in.Priority != nil:
		p := *in.Priority
		row.Priority = &p
	case full:
		row.Priority = nil
	}
	switch {
	case in.RetryPolicy != nil:
		base := spec.Retry
		if !full && !typeChanged && len(row.RetryPolicy) > 0 {
			_ = json.Unmarshal(row.RetryPolicy, &base)
		}
		p, perrs := tasks.OverlayRetryPolicy(in.RetryPolicy, base)
		if len(perrs) == 0 {
			perrs = p.Validate("retry_policy")
		}
		errs = append(errs, perrs...)
		b, _ := json.Marshal(p)
		row.RetryPolicy = store.JSON(b)
	case full:
		row.RetryPolicy = nil
	}
	switch {
	case in.TimeoutSeconds != nil && (*in.TimeoutSeconds < 1 || *in.TimeoutSeconds > taskservice.MaxTimeoutSeconds):
		bad("timeout_seconds", fmt.Sprintf("must be between 1 and %d", taskservice.MaxTimeoutSeconds))
	case in.TimeoutSeconds != nil:
		t := *in.TimeoutSeconds
		row.TimeoutSeconds = &t
	case full:
		row.TimeoutSeconds = nil
	}
	if in.Enabled != nil {
		row.Enabled = *in.Enabled
	}
	if len(errs) > 0 {
		return &tasks.ValidationError{Errors: errs}
	}
	return nil
}

func clampLimit(limit int) int { return store.ClampLimit(limit, DefaultLimit, MaxLimit) }

func encodeCursor(s string) string { return store.EncodeCursor(s) }

func decodeCursor(c string) (string, error) {
	key, ok := store.DecodeCursor(c, 100)
	if !ok {
		return "", ErrBadCursor
	}
	return key, nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// translate maps a PostgreSQL error to the package's errors.
func translate(op string, err error) error {
	err = store.Translate(err)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound
	case errors.Is(err, store.ErrConflict):
		return ErrNameTaken
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: postgres: %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("schedule: %s: %w", op, err)
}

// applyWorkflow applies in to a schedule that starts a workflow (in.Workflow
// given, or the schedule has one and in names no type): the steps are
// checked as workflow.CheckSteps does; a workflow's steps carry their own
// type, params, priority, retry policy and timeout, so those fields are
// refused beside it.
func applyWorkflow(row *store.Schedule, in Input) []tasks.FieldError {
	var errs []tasks.FieldError
	for field, given := range map[string]bool{"type": in.Type != nil, "params": in.Params != nil, "priority": in.Priority != nil,
		"retry_policy": in.RetryPolicy != nil, "timeout_seconds": in.TimeoutSeconds != nil} {
		if given {
			errs = append(errs, tasks.FieldError{Field: field, Message: "is not set on a schedule that starts a workflow: each step has its own"})
		}
	}
	if in.Workflow == nil {
		return errs
	}
	b, werrs := workflow.ParseBody(in.Workflow, false)
	if errs = append(errs, werrs...); len(errs) > 0 {
		return errs
	}
	row.Workflow, row.Type, row.Params = store.JSON(b), "", store.JSON("{}")
	row.Priority, row.RetryPolicy, row.TimeoutSeconds = nil, nil, nil
	return nil
}

// Package trigger holds Taskforge's event triggers: a webhook delivery, a
// database change or an upload creates the trigger's task through the task
// service (pkg/taskservice, the one creation path), owned by the trigger's
// owner and recording tasks.trigger_id.
//
// The rules live here: what a trigger is and who may manage it (Store), how
// an event's values become params (param_map: a param name to a JSON Pointer
// into the event), how a webhook delivery is verified and deduplicated
// (Service.Deliver), how database changes become tasks (Dispatcher, run by
// the scheduler) and which upload triggers an upload fires (Service.FireUpload,
// for the uploads code to call).
package trigger

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/workflow"
)

// Errors of the package, translated to status codes at the API's edge.
var (
	// ErrNotFound: no trigger with that id that the caller may see (also a
	// disabled one, for a hook delivery).
	ErrNotFound = errors.New("trigger not found")
	// ErrUnavailable: PostgreSQL is down; the request may be retried.
	ErrUnavailable = errors.New("dependency unavailable")
	// ErrBadCursor: a page cursor that this package did not issue.
	ErrBadCursor = errors.New("invalid cursor")
	// ErrNotWebhook: the operation needs a webhook trigger.
	ErrNotWebhook = errors.New("not a webhook trigger")
	// ErrOwnersTable: only admins watch tables whose rows belong to owners
	// (a trigger's task would carry other owners' rows).
	ErrOwnersTable = errors.New("only admins may watch holdings and portfolios")
)

// Kinds of trigger.
const (
	KindWebhook  = "webhook"
	KindDatabase = "database"
	KindUpload   = "upload"
)

// Limits on a trigger.
const (
	MaxNameLength   = 100
	DefaultLimit    = 50
	MaxLimit        = 500
	MaxDebounce     = 24 * 3600
	MaxParamMap     = 32
	MaxPointer      = 200
	DefaultOverlap  = 24 * time.Hour
	maxGlob         = 200
	maxContentType  = 200
	hookPathPrefix  = "/api/v1/hooks/"
	secretContextOf = "trigger_secret:"
)

// Tables are the tables a database trigger may watch (the migration installs
// their PostgreSQL triggers).
var Tables = []string{"prices", "holdings", "portfolios", "assets", "benchmarks"}

// ownersTables hold rows of one owner or another (portfolios and their
// holdings): only an admin's database trigger may watch them. The others hold
// market data every caller reads.
var ownersTables = []string{"holdings", "portfolios"}

// Operations are the changes a database trigger may watch.
var Operations = []string{"insert", "update", "delete"}

// eventRoots are the top-level fields of each kind's event: a JSON Pointer
// must start with one of them.
var eventRoots = map[string][]string{
	KindWebhook:  {"body", "webhook_id"},
	KindDatabase: {"table", "operation", "row", "changes"},
	KindUpload:   {"upload_id", "name", "size", "sha256", "content_type"},
}

// Template is the task a trigger creates, as in POST /api/v1/tasks, plus
// ParamMap.
type Template struct {
	Type   string          `json:"type"`
	Params json.RawMessage `json:"params"`
	// ParamMap maps a param name to a JSON Pointer (RFC 6901) into the event;
	// the value found there replaces (or supplies) the param.
	ParamMap       map[string]string `json:"param_map"`
	Priority       string            `json:"priority"`
	RetryPolicy    json.RawMessage   `json:"retry_policy,omitempty"`
	TimeoutSeconds *int              `json:"timeout_seconds,omitempty"`
	CallbackURL    string            `json:"callback_url,omitempty"`
}

// Filter is an upload trigger's filter; empty fields match everything.
type Filter struct {
	ContentType string `json:"content_type,omitempty"`
	NameGlob    string `json:"name_glob,omitempty"`
}

// Input is a create or patch request; nil fields are absent.
type Input struct {
	Name    *string
	Kind    *string
	Enabled *bool
	Task    *Template
	// Workflow, instead of Task, starts a workflow at each event:
	// {"steps": [...]} as POST /api/v1/workflows takes them, whose
	// params_from may point into the event (/event/…).
	Workflow        json.RawMessage
	Table           *string
	Operations      []string
	DebounceSeconds *int
	Filter          *Filter
}

// TaskView is a trigger's task as the API shows it.
type TaskView struct {
	Type           string            `json:"type"`
	Params         json.RawMessage   `json:"params"`
	ParamMap       map[string]string `json:"param_map"`
	Priority       string            `json:"priority"`
	RetryPolicy    tasks.RetryPolicy `json:"retry_policy"`
	TimeoutSeconds int               `json:"timeout_seconds"`
	CallbackURL    *string           `json:"callback_url"`
}

// Trigger is a trigger as the API shows it.
type Trigger struct {
	ID      string   `json:"trigger_id"`
	Name    string   `json:"name"`
	Kind    string   `json:"kind"`
	Enabled bool     `json:"enabled"`
	Owner   string   `json:"owner"`
	Task    TaskView `json:"task"`
	// Workflow is the workflow each event starts, when the trigger starts
	// one (Task is empty then).
	Workflow json.RawMessage `json:"workflow,omitempty"`
	HookURL  string          `json:"hook_url,omitempty"`
	// Secret is set in the creation's answer only.
	Secret                  string     `json:"secret,omitempty"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	Table                   string     `json:"table,omitempty"`
	Operations              []string   `json:"operations,omitempty"`
	DebounceSeconds         *int       `json:"debounce_seconds,omitempty"`
	Filter                  *Filter    `json:"filter,omitempty"`
	CreatedAt               time.Time  `json:"created_at"`
	UpdatedAt               time.Time  `json:"updated_at"`
}

// Page is one page of a listing.
type Page[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

// Sealer seals and opens strings bound to a context (*secret.Keyring).
type Sealer interface {
	SealString(context, plaintext string) string
	OpenString(context, sealed string) (string, error)
}

// Store reads and writes triggers. It is safe for concurrent use.
type Store struct {
	db      *gorm.DB
	sealer  Sealer
	overlap time.Duration
	now     func() time.Time
}

// NewStore returns a Store on db that seals webhook secrets with sealer.
// overlap is how long a rotated-out secret still verifies: zero means
// DefaultOverlap, negative none.
func NewStore(db *gorm.DB, sealer Sealer, overlap time.Duration) (*Store, error) {
	if db == nil || sealer == nil {
		return nil, errors.New("trigger: nil dependency")
	}
	if overlap == 0 {
		overlap = DefaultOverlap
	}
	return &Store{db: db, sealer: sealer, overlap: max(overlap, 0), now: func() time.Time { return time.Now().UTC() }}, nil
}

// NewID returns a new trigger id: "trg_" and a lower-case ULID.
func NewID() string { return "trg_" + newULID() }

func newULID() string { return strings.ToLower(ulid.MustNew(ulid.Now(), rand.Reader).String()) }

// HookPath is a webhook trigger's delivery path.
func HookPath(id string) string { return hookPathPrefix + id }

// Create validates in and stores a new trigger owned by owner. A webhook
// trigger's answer carries its secret, this once.
func (s *Store) Create(ctx context.Context, in Input, owner auth.Principal) (Trigger, error) {
	row := store.Trigger{Enabled: true, Owner: owner.ID, OwnerRole: string(owner.Role), Params: store.JSON("{}"), ParamMap: store.JSON("{}")}
	if err := apply(&row, in, true); err != nil {
		return Trigger{}, err
	}
	if err := mayWatch(row, owner); err != nil {
		return Trigger{}, err
	}
	now := s.now()
	row.ID, row.CreatedAt, row.UpdatedAt = NewID(), now, now
	var secret string
	if row.Kind == KindWebhook {
		raw := notify.NewSecret()
		sealed := s.sealer.SealString(secretContextOf+row.ID, string(raw))
		row.Secret, secret = &sealed, notify.FormatSecret(raw)
	}
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		return Trigger{}, translate("create trigger", err)
	}
	v := View(row, now)
	v.Secret = secret
	return v, nil
}

// mayWatch refuses a database trigger on an owners' table to anyone but an
// admin.
func mayWatch(row store.Trigger, p auth.Principal) error {
	if row.Kind == KindDatabase && row.Table != nil && slices.Contains(ownersTables, *row.Table) && !p.IsAdmin() {
		return ErrOwnersTable
	}
	return nil
}

// visible scopes a query to the triggers p may manage: an admin's every
// trigger, anyone else's own.
func visible(db *gorm.DB, p auth.Principal) *gorm.DB {
	if p.IsAdmin() {
		return db
	}
	return db.Where("owner = ?", p.ID)
}

// Get returns one trigger p may see.
func (s *Store) Get(ctx context.Context, p auth.Principal, id string) (Trigger, error) {
	var row store.Trigger
	if err := visible(s.db.WithContext(ctx), p).Take(&row, "id = ?", id).Error; err != nil {
		return Trigger{}, translate("get trigger", err)
	}
	return View(row, s.now()), nil
}

// Row returns one trigger's row, whoever owns it.
func (s *Store) Row(ctx context.Context, id string) (store.Trigger, error) {
	var row store.Trigger
	if err := s.db.WithContext(ctx).Take(&row, "id = ?", id).Error; err != nil {
		return row, translate("get trigger", err)
	}
	return row, nil
}

// List returns a page of the triggers p may see, in creation order.
func (s *Store) List(ctx context.Context, p auth.Principal, limit int, cursor string) (Page[Trigger], error) {
	limit = clampLimit(limit)
	q := visible(s.db.WithContext(ctx), p).Order("id").Limit(limit + 1)
	if cursor != "" {
		after, err := decodeCursor(cursor)
		if err != nil {
			return Page[Trigger]{}, err
		}
		q = q.Where("id > ?", after)
	}
	var rows []store.Trigger
	if err := q.Find(&rows).Error; err != nil {
		return Page[Trigger]{}, translate("list triggers", err)
	}
	out := Page[Trigger]{Items: make([]Trigger, 0, min(len(rows), limit))}
	now := s.now()
	for i, r := range rows {
		if i == limit {
			c := encodeCursor(rows[i-1].ID)
			out.NextCursor = &c
			break
		}
		out.Items = append(out.Items, View(r, now))
	}
	return out, nil
}

// Patch changes the fields present in in; the kind cannot change.
func (s *Store) Patch(ctx context.Context, p auth.Principal, id string, in Input) (Trigger, error) {
	var out store.Trigger
	now := s.now()
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row store.Trigger
		if err := visible(tx, p).Clauses(clause.Locking{Strength: "UPDATE"}).Take(&row, "id = ?", id).Error; err != nil {
			return err
		}
		if in.Kind != nil && *in.Kind != row.Kind {
			return tasks.Invalid("kind", "cannot change; create another trigger")
		}
		if err := apply(&row, in, false); err != nil {
			return err
		}
		if err := mayWatch(row, p); err != nil {
			return err
		}
		row.UpdatedAt = now
		if err := tx.Save(&row).Error; err != nil {
			return err
		}
		out = row
		return nil
	})
	if err != nil {
		if _, ok := tasks.AsValidation(err); ok || errors.Is(err, ErrOwnersTable) {
			return Trigger{}, err
		}
		return Trigger{}, translate("patch trigger", err)
	}
	return View(out, now), nil
}

// Delete removes a trigger p may see, and its deliveries and pending events.
func (s *Store) Delete(ctx context.Context, p auth.Principal, id string) error {
	res := visible(s.db.WithContext(ctx), p).Where("id = ?", id).Delete(&store.Trigger{})
	if res.Error != nil {
		return translate("delete trigger", res.Error)
	}
	if res.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// Rotated is the answer of a secret rotation. Secret is shown this once.
type Rotated struct {
	Secret            string     `json:"secret"`
	PreviousExpiresAt *time.Time `json:"previous_expires_at"`
}

// RotateSecret gives a webhook trigger p may see a new secret; the current
// one still verifies until the overlap has passed.
func (s *Store) RotateSecret(ctx context.Context, p auth.Principal, id string) (Rotated, error) {
	var out Rotated
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row store.Trigger
		if err := visible(tx, p).Clauses(clause.Locking{Strength: "UPDATE"}).Take(&row, "id = ?", id).Error; err != nil {
			return err
		}
		if row.Kind != KindWebhook || row.Secret == nil {
			return ErrNotWebhook
		}
		raw := notify.NewSecret()
		sealed := s.sealer.SealString(secretContextOf+row.ID, string(raw))
		now := s.now()
		updates := map[string]any{"secret": sealed, "updated_at": now, "previous_secret": nil, "previous_until": nil}
		if s.overlap > 0 {
			until := now.Add(s.overlap)
			updates["previous_secret"], updates["previous_until"] = *row.Secret, until
			out.PreviousExpiresAt = &until
		}
		out.Secret = notify.FormatSecret(raw)
		return tx.Model(&store.Trigger{}).Where("id = ?", row.ID).Updates(updates).Error
	})
	if err != nil {
		if errors.Is(err, ErrNotWebhook) {
			return Rotated{}, err
		}
		return Rotated{}, translate("rotate trigger secret", err)
	}
	return out, nil
}

// secrets opens the secrets that verify a webhook trigger's deliveries now:
// the current one, then the previous one while its overlap lasts.
func (s *Store) secrets(row store.Trigger, now time.Time) ([][]byte, error) {
	if row.Secret == nil {
		return nil, ErrNotWebhook
	}
	cur, err := s.sealer.OpenString(secretContextOf+row.ID, *row.Secret)
	if err != nil {
		return nil, fmt.Errorf("trigger: open secret: %w", err)
	}
	out := [][]byte{[]byte(cur)}
	if row.PreviousSecret != nil && row.PreviousUntil != nil && now.Before(*row.PreviousUntil) {
		prev, err := s.sealer.OpenString(secretContextOf+row.ID, *row.PreviousSecret)
		if err != nil {
			return nil, fmt.Errorf("trigger: open previous secret: %w", err)
		}
		out = append(out, []byte(prev))
	}
	return out, nil
}

// Delivery is one delivery to a trigger as the API shows it.
type Delivery struct {
	ID         string    `json:"delivery_id"`
	ReceivedAt time.Time `json:"received_at"`
	WebhookID  *string   `json:"webhook_id"`
	Accepted   bool      `json:"accepted"`
	Status     int       `json:"status"`
	TaskID     *string   `json:"task_id"`
	Reason     string    `json:"reason"`
	Excerpt    string    `json:"excerpt,omitempty"`
}

// Deliveries returns a page of the deliveries to a trigger p may see, newest
// first.
func (s *Store) Deliveries(ctx context.Context, p auth.Principal, id string, limit int, cursor string) (Page[Delivery], error) {
	if _, err := s.Get(ctx, p, id); err != nil {
		return Page[Delivery]{}, err
	}
	limit = clampLimit(limit)
	q := s.db.WithContext(ctx).Where("trigger_id = ?", id).Order("id DESC").Limit(limit + 1)
	if cursor != "" {
		before, err := decodeCursor(cursor)
		if err != nil {
			return Page[Delivery]{}, err
		}
		q = q.Where("id < ?", before)
	}
	var rows []store.TriggerDelivery
	if err := q.Find(&rows).Error; err != nil {
		return Page[Delivery]{}, translate("list deliveries", err)
	}
	out := Page[Delivery]{Items: make([]Delivery, 0, min(len(rows), limit))}
	for i, r := range rows {
		if i == limit {
			c := encodeCursor(rows[i-1].ID)
			out.NextCursor = &c
			break
		}
		out.Items = append(out.Items, Delivery{ID: r.ID, ReceivedAt: r.ReceivedAt.UTC(), WebhookID: r.WebhookID,
			Accepted: r.Accepted, Status: r.Status, TaskID: r.TaskID, Reason: r.Reason, Excerpt: r.Excerpt})
	}
	return out, nil
}

// View renders a row as the API shows it (never its secrets).
func View(row store.Trigger, now time.Time) Trigger {
	spec, ok := tasks.Lookup(row.TaskType)
	if !ok {
		spec.Retry = tasks.DefaultRetry // a trigger that starts a workflow
	}
	v := Trigger{ID: row.ID, Name: row.Name, Kind: row.Kind, Enabled: row.Enabled, Owner: row.Owner,
		CreatedAt: row.CreatedAt.UTC(), UpdatedAt: row.UpdatedAt.UTC()}
	t := TaskView{Type: row.TaskType, Params: json.RawMessage(row.Params), ParamMap: map[string]string{},
		Priority: spec.Priority, RetryPolicy: spec.Retry, TimeoutSeconds: int(spec.Timeout / time.Second), CallbackURL: row.CallbackURL}
	if len(t.Params) == 0 {
		t.Params = json.RawMessage(`{}`)
	}
	_ = json.Unmarshal(row.ParamMap, &t.ParamMap)
	if row.Priority != nil {
		t.Priority = *row.Priority
	}
	if len(row.RetryPolicy) > 0 {
		_ = json.Unmarshal(row.RetryPolicy, &t.RetryPolicy)
	}
	if row.TimeoutSeconds != nil {
		t.TimeoutSeconds = *row.TimeoutSeconds
	}
	v.Task = t
	if row.Workflow != nil {
		v.Workflow = json.RawMessage(row.Workflow)
	}
	switch row.Kind {
	case KindWebhook:
		v.HookURL = HookPath(row.ID)
		if row.PreviousSecret != nil && row.PreviousUntil != nil && now.Before(*row.PreviousUntil) {
			u := row.PreviousUntil.UTC()
			v.PreviousSecretExpiresAt = &u
		}
	case KindDatabase:
		if row.Table != nil {
			v.Table = *row.Table
		}
		_ = json.Unmarshal(row.Operations, &v.Operations)
		d := row.DebounceSeconds
		v.DebounceSeconds = &d
	case KindUpload:
		f := Filter{}
		_ = json.Unmarshal(row.Filter, &f)
		v.Filter = &f
	}
	return v
}

// apply validates in and writes its fields into row. With full (a creation),
// name, kind and task are required.
func apply(row *store.Trigger, in Input, full bool) error {
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
	if full {
		switch {
		case in.Kind == nil:
			bad("kind", "is required")
		case *in.Kind != KindWebhook && *in.Kind != KindDatabase && *in.Kind != KindUpload:
			bad("kind", "must be webhook, database or upload")
		default:
			row.Kind = *in.Kind
		}
	}
	if in.Enabled != nil {
		row.Enabled = *in.Enabled
	}
	// Kind-specific fields: refused on another kind.
	other := func(field string, set bool, kind string) bool {
		if set && row.Kind != "" && row.Kind != kind {
			bad(field, "is only for "+kind+" triggers")
			return true
		}
		return false
	}
	if !other("table", in.Table != nil, KindDatabase) && in.Table != nil {
		if !slices.Contains(Tables, *in.Table) {
			bad("table", "must be one of "+strings.Join(Tables, ", "))
		} else {
			t := *in.Table
			row.Table = &t
		}
	}
	if !other("operations", in.Operations != nil, KindDatabase) && in.Operations != nil {
		ops, ok := []string{}, true
		for i, op := range in.Operations {
			if !slices.Contains(Operations, op) {
				bad(fmt.Sprintf("operations[%d]", i), "must be insert, update or delete")
				ok = false
			} else if !slices.Contains(ops, op) {
				ops = append(ops, op)
			}
		}
		if ok && len(ops) == 0 {
			bad("operations", "must name at least one operation")
		}
		b, _ := json.Marshal(ops)
		row.Operations = store.JSON(b)
	}
	if !other("debounce_seconds", in.DebounceSeconds != nil, KindDatabase) && in.DebounceSeconds != nil {
		if d := *in.DebounceSeconds; d < 0 || d > MaxDebounce {
			bad("debounce_seconds", fmt.Sprintf("must be between 0 and %d", MaxDebounce))
		} else {
			row.DebounceSeconds = d
		}
	}
	if !other("filter", in.Filter != nil, KindUpload) && in.Filter != nil {
		f := *in.Filter
		if f.ContentType != "" {
			if len(f.ContentType) > maxContentType {
				bad("filter.content_type", "is too long")
			} else if mt, _, err := mime.ParseMediaType(f.ContentType); err != nil {
				bad("filter.content_type", "must be a media type, e.g. text/csv")
			} else {
				f.ContentType = mt
			}
		}
		if f.NameGlob != "" {
			if _, err := path.Match(f.NameGlob, ""); err != nil || len(f.NameGlob) > maxGlob {
				bad("filter.name_glob", "must be a valid glob pattern, e.g. prices-*.csv")
			}
		}
		b, _ := json.Marshal(f)
		row.Filter = store.JSON(b)
	}
	if row.Kind == KindDatabase && full {
		if row.Table == nil && in.Table == nil {
			bad("table", "is required for database triggers")
		}
		if len(row.Operations) == 0 && in.Operations == nil {
			b, _ := json.Marshal(Operations)
			row.Operations = store.JSON(b)
		}
	}
	if row.Kind == KindUpload && len(row.Filter) == 0 {
		row.Filter = store.JSON("{}")
	}
	switch {
	case in.Workflow != nil && in.Task != nil:
		bad("workflow", "a trigger creates a task or starts a workflow, not both")
	case in.Workflow != nil:
		errs = append(errs, applyWorkflow(row, in.Workflow)...)
	case in.Task != nil:
		errs = append(errs, applyTask(row, *in.Task)...)
		row.Workflow = nil
	case full:
		bad("task", "is required (or workflow)")
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b tasks.FieldError) int { return strings.Compare(a.Field, b.Field) })
		return &tasks.ValidationError{Errors: errs}
	}
	return nil
}

// applyTask validates a task template for row's kind and writes it into row.
// Params are decoded against the type's params schema with the mapped params
// taken as given, so that a template that could never produce valid params
// is refused here, naming the field.
func applyTask(row *store.Trigger, t Template) []tasks.FieldError {
	var errs []tasks.FieldError
	bad := func(field, msg string) { errs = append(errs, tasks.FieldError{Field: "task." + field, Message: msg}) }
	spec, ok := tasks.Lookup(t.Type)
	switch {
	case t.Type == "":
		bad("type", "is required")
		return errs
	case !ok:
		bad("type", fmt.Sprintf("unknown task type %q", t.Type))
		return errs
	}
	row.TaskType = spec.Name
	fields := spec.NewParams().ProtoReflect().Descriptor().Fields()
	if len(t.ParamMap) > MaxParamMap {
		bad("param_map", fmt.Sprintf("must map at most %d params", MaxParamMap))
	}
	for name, ptr := range t.ParamMap {
		fd := fields.ByName(protoName(name))
		if fd == nil {
			fd = fields.ByJSONName(name)
		}
		switch {
		case fd == nil:
			bad("param_map."+name, "is not a param of "+spec.Name)
		case tasks.IsSecret(fd):
			// Allowed: the value comes from each event and is sealed with the task.
		}
		if msg := checkPointer(row.Kind, ptr); msg != "" {
			bad("param_map."+name, msg)
		}
	}
	raw := bytes.TrimSpace(t.Params)
	if len(raw) == 0 || string(raw) == "null" {
		raw = []byte("{}")
	}
	var static map[string]json.RawMessage
	if json.Unmarshal(raw, &static) != nil || static == nil {
		bad("params", "must be a JSON object")
		return errs
	}
	for name := range static {
		if fd := fields.ByName(protoName(name)); fd != nil && tasks.IsSecret(fd) {
			bad("params."+name, "a secret cannot be kept in a trigger; map it from the event with param_map")
		}
	}
	// The mapped params are validated at each event (their values are not
	// known before): here they are removed from the static ones and the
	// objections naming them excused.
	for name := range t.ParamMap {
		delete(static, name)
	}
	b, _ := json.Marshal(static)
	_, err := tasks.DecodeParams(spec, b, "params")
	if v, isV := tasks.AsValidation(err); isV {
		for _, e := range v.Errors {
			name, _, _ := strings.Cut(strings.TrimPrefix(e.Field, "params."), ".")
			name, _, _ = strings.Cut(name, "[")
			if _, mapped := t.ParamMap[name]; mapped {
				continue
			}
			errs = append(errs, tasks.FieldError{Field: "task." + e.Field, Message: e.Message})
		}
	} else if err != nil {
		bad("params", err.Error())
	}
	row.Params = store.JSON(raw)
	pm, _ := json.Marshal(orEmpty(t.ParamMap))
	row.ParamMap = store.JSON(pm)
	row.Priority = nil
	if t.Priority != "" {
		if !queue.ValidPriority(t.Priority) {
			bad("priority", "must be critical, high, normal or low")
		}
		p := t.Priority
		row.Priority = &p
	}
	row.RetryPolicy = nil
	if len(t.RetryPolicy) > 0 && string(t.RetryPolicy) != "null" {
		p, perrs := tasks.OverlayRetryPolicy(t.RetryPolicy, spec.Retry)
		if len(perrs) == 0 {
			perrs = p.Validate("retry_policy")
		}
		for _, e := range perrs {
			errs = append(errs, tasks.FieldError{Field: "task." + e.Field, Message: e.Message})
		}
		b, _ := json.Marshal(p)
		row.RetryPolicy = store.JSON(b)
	}
	row.TimeoutSeconds = nil
	if t.TimeoutSeconds != nil {
		if n := *t.TimeoutSeconds; n < 1 || n > taskservice.MaxTimeoutSeconds {
			bad("timeout_seconds", fmt.Sprintf("must be between 1 and %d", taskservice.MaxTimeoutSeconds))
		}
		n := *t.TimeoutSeconds
		row.TimeoutSeconds = &n
	}
	row.CallbackURL = nil
	if t.CallbackURL != "" {
		if !strings.HasPrefix(t.CallbackURL, "https://") && !strings.HasPrefix(t.CallbackURL, "http://") {
			bad("callback_url", "must be an http or https URL")
		}
		u := t.CallbackURL
		row.CallbackURL = &u
	}
	return errs
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// checkPointer returns what is wrong with a JSON Pointer into kind's event,
// or "".
func checkPointer(kind, ptr string) string {
	if len(ptr) > MaxPointer {
		return fmt.Sprintf("must be at most %d characters", MaxPointer)
	}
	tokens, err := parsePointer(ptr)
	if err != nil || len(tokens) == 0 {
		return "must be a JSON Pointer into the event, e.g. /" + eventRoots[kindOr(kind)][0]
	}
	roots := eventRoots[kindOr(kind)]
	if !slices.Contains(roots, tokens[0]) {
		return "must start with one of /" + strings.Join(roots, ", /") + " (the " + kindOr(kind) + " event's fields)"
	}
	return ""
}

func kindOr(kind string) string {
	if _, ok := eventRoots[kind]; ok {
		return kind
	}
	return KindWebhook
}

// MatchUpload reports whether an upload matches the filter: its media type
// (parameters ignored) equals ContentType and its name matches NameGlob, when
// they are set.
func (f Filter) MatchUpload(name, contentType string) bool {
	if f.ContentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil || !strings.EqualFold(mt, f.ContentType) {
			return false
		}
	}
	if f.NameGlob != "" {
		ok, err := path.Match(f.NameGlob, name)
		if err != nil || !ok {
			return false
		}
	}
	return true
}

func clampLimit(limit int) int { return store.ClampLimit(limit, DefaultLimit, MaxLimit) }

func encodeCursor(s string) string { return store.EncodeCursor(s) }

func decodeCursor(c string) (string, error) {
	key, ok := store.DecodeCursor(c, 64)
	if !ok {
		return "", ErrBadCursor
	}
	return key, nil
}

// translate maps a PostgreSQL error to the package's errors.
func translate(op string, err error) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ErrNotFound
	}
	err = store.Translate(err)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: postgres: %s: %v", ErrUnavailable, op, err)
	}
	return fmt.Errorf("trigger: %s: %w", op, err)
}

// applyWorkflow validates a trigger's workflow ({"steps": [...]}: the graph,
// each step's type and params, params_from into a dependency's result or the
// event) and writes it into row. Static params may not hold secrets: a
// trigger's steps are kept in clear, so a secret comes from the event.
func applyWorkflow(row *store.Trigger, raw json.RawMessage) []tasks.FieldError {
	b, errs := workflow.ParseBody(raw, true)
	if len(errs) > 0 {
		return errs
	}
	var body struct {
		Steps json.RawMessage `json:"steps"`
	}
	_ = json.Unmarshal(b, &body)
	steps, _ := workflow.ParseSteps(body.Steps, "workflow.steps")
	for i, st := range steps {
		if hasSecret(st.Task.Type, st.Task.Params) {
			errs = append(errs, tasks.FieldError{Field: fmt.Sprintf("workflow.steps[%d].params", i),
				Message: "a secret param cannot be kept in a trigger: take it from the event with params_from"})
		}
	}
	if len(errs) > 0 {
		return errs
	}
	row.Workflow, row.TaskType, row.Params, row.ParamMap = store.JSON(b), "", store.JSON("{}"), store.JSON("{}")
	row.Priority, row.RetryPolicy, row.TimeoutSeconds, row.CallbackURL = nil, nil, nil, nil
	return nil
}

// hasSecret reports whether params set a secret field of typ's params.
func hasSecret(typ string, params json.RawMessage) bool {
	spec, ok := tasks.Lookup(typ)
	if !ok || len(params) == 0 {
		return false
	}
	msg := spec.NewParams()
	if protojson.Unmarshal(params, msg) != nil {
		return false // CheckSteps names the bad params
	}
	plain, err := tasks.ParamsJSON(msg)
	if err != nil {
		return false
	}
	secret.Redact(msg)
	redacted, err := tasks.ParamsJSON(msg)
	return err == nil && !bytes.Equal(plain, redacted)
}

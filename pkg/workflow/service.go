package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

// Channel is the PostgreSQL notification channel a step task's state change
// is announced on (payload: the workflow's id).
const Channel = "taskforge_workflows"

// Errors of the service; the API maps them to status codes.
var (
	ErrNotFound  = errors.New("workflow not found")
	ErrForbidden = errors.New("forbidden")
	ErrConflict  = errors.New("workflow state conflict")
)

// Creator is the one creation path (and cancel) of tasks
// (*taskservice.Service).
type Creator interface {
	Create(ctx context.Context, req taskservice.CreateRequest) (taskservice.Created, error)
	Check(ctx context.Context, req taskservice.CreateRequest) error
	Cancel(ctx context.Context, p auth.Principal, id string) (taskservice.CancelResult, error)
}

// Keyring seals and opens the secret fields of params (secret.Keyring): a
// step's params wait in workflow_steps until its task is created, sealed.
type Keyring interface {
	Seal(msg proto.Message) (keyID string, err error)
	Open(msg proto.Message) error
}

// Options configure a Service.
type Options struct {
	// MaxSteps caps a workflow's steps. If zero, DefaultMaxSteps.
	MaxSteps int
	// Keyring seals secret params while they wait. If nil, they are stored
	// as given (tests).
	Keyring Keyring
	// Metrics, if set, counts workflows and times step waits.
	Metrics *Metrics
}

// Service creates, reads, cancels and advances workflows.
type Service struct {
	db      *gorm.DB
	creator Creator
	log     *zap.Logger
	opts    Options
}

// New returns a Service creating step tasks through creator.
func New(db *gorm.DB, creator Creator, log *zap.Logger, opts Options) (*Service, error) {
	if db == nil || creator == nil || log == nil {
		return nil, errors.New("workflow: nil dependency")
	}
	if opts.MaxSteps <= 0 {
		opts.MaxSteps = DefaultMaxSteps
	}
	return &Service{db: db, creator: creator, log: log, opts: opts}, nil
}

// StepView is a step as the API shows it.
type StepView struct {
	ID        string
	DependsOn []string
	Type      string
	TaskID    string
	Status    string
	Error     string
}

// View is a workflow with its steps' states.
type View struct {
	store.Workflow
	Steps []StepView
}

// NewID returns a new workflow id ("wf_" and a lower-case ULID).
func NewID() string { return "wf_" + strings.ToLower(ulid.Make().String()) }

// Create validates def for p (every step as a task p could create, admin-only
// types needing an admin), writes the workflow and its steps, and creates
// the tasks of the steps without dependencies. When that creation cannot run
// now (Redis down), the workflow stays due and the scheduler's sweep creates
// them: the answer is the workflow either way.
func (s *Service) Create(ctx context.Context, p auth.Principal, def Definition, requestID string) (View, error) {
	v, _, err := s.create(ctx, p, def, requestID, nil, nil)
	return v, err
}

// Fire names one fire of a schedule: a schedule starts its workflow at
// most once per fire time.
type Fire struct {
	ScheduleID string
	Time       time.Time
}

// principal is who a schedule's workflows belong to: schedules are an
// admin's, and run with nobody present.
func (f Fire) principal() auth.Principal {
	return auth.Principal{ID: "schedule:" + f.ScheduleID, Name: "schedule", Role: auth.Admin}
}

// CreateForFire creates the workflow def for one fire of a schedule, or
// returns the one that fire created already (existing true).
func (s *Service) CreateForFire(ctx context.Context, def Definition, fire Fire) (View, bool, error) {
	return s.create(ctx, fire.principal(), def, "", &fire, nil)
}

// Event names one event of a trigger: a trigger starts its workflow at most
// once per event key, owned by the trigger's owner; the steps' ParamsFrom
// may point into the event (/event/…).
type Event struct {
	TriggerID string
	Key       string
	Owner     auth.Principal
	Event     any
}

// CreateForEvent creates the workflow def for one event of a trigger, or
// returns the one that event started already (existing true).
func (s *Service) CreateForEvent(ctx context.Context, def Definition, ev Event) (View, bool, error) {
	def.FromEvent = true
	return s.create(ctx, ev.Owner, def, "", nil, &ev)
}

func (s *Service) create(ctx context.Context, p auth.Principal, def Definition, requestID string, fire *Fire, ev *Event) (View, bool, error) {
	if !p.CanCreate() {
		return View{}, false, ErrForbidden
	}
	order, errs := def.Validate(s.opts.MaxSteps)
	if len(errs) > 0 {
		return View{}, false, &tasks.ValidationError{Errors: errs}
	}
	index := map[string]int{}
	for i, st := range def.Steps {
		index[st.ID] = i
	}
	rows := make([]store.WorkflowStep, 0, len(order))
	id := NewID()
	for pos, st := range order {
		i := index[st.ID]
		spec, ok := tasks.Lookup(st.Task.Type)
		if ok && !auth.CanCreateType(p, spec) {
			return View{}, false, &tasks.ValidationError{Errors: []tasks.FieldError{{Field: fmt.Sprintf("steps[%d].type", i),
				Message: "only admins may create " + string(spec.Category) + " tasks"}}}
		}
		req := st.Task
		req.CreatedBy, req.Role = p.ID, string(p.Role)
		if err := s.creator.Check(ctx, req); err != nil {
			v, ok := tasks.AsValidation(err)
			if !ok {
				return View{}, false, err
			}
			refused := false
			for _, fe := range v.Errors {
				// A param taken from a dependency's result is not there yet.
				if _, from := st.ParamsFrom[strings.TrimPrefix(fe.Field, "params.")]; from {
					continue
				}
				errs = append(errs, tasks.FieldError{Field: fmt.Sprintf("steps[%d].%s", i, fe.Field), Message: fe.Message})
				refused = true
			}
			if refused {
				continue
			}
		}
		row, err := s.stepRow(id, pos, spec, st)
		if err != nil {
			return View{}, false, err
		}
		rows = append(rows, row)
	}
	if len(errs) > 0 {
		return View{}, false, &tasks.ValidationError{Errors: errs}
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	wf := store.Workflow{ID: id, Name: strings.TrimSpace(def.Name), Status: StatusPending, CreatedBy: p.ID, Role: string(p.Role),
		CreatedAt: now, UpdatedAt: now}
	if fire != nil {
		sid, ft := fire.ScheduleID, fire.Time.UTC().Truncate(time.Microsecond)
		wf.ScheduleID, wf.FireTime = &sid, &ft
	}
	if ev != nil {
		b, err := json.Marshal(ev.Event)
		if err != nil {
			return View{}, false, fmt.Errorf("workflow: event: %w", err)
		}
		tid, key := ev.TriggerID, ev.Key
		wf.TriggerID, wf.EventKey, wf.Event = &tid, &key, store.JSON(b)
	}
	existing := ""
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&wf)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			// This fire's (or this event's) workflow exists.
			q := tx.Model(&store.Workflow{}).Where("schedule_id = ? AND fire_time = ?", wf.ScheduleID, wf.FireTime)
			if ev != nil {
				q = tx.Model(&store.Workflow{}).Where("trigger_id = ? AND event_key = ?", wf.TriggerID, wf.EventKey)
			}
			return q.Pluck("id", &existing).Error
		}
		if err := tx.Create(&rows).Error; err != nil {
			return err
		}
		return tx.Exec(`INSERT INTO workflow_wakeups (workflow_id) VALUES (?)`, id).Error
	})
	if err != nil {
		return View{}, false, translate("create workflow", err)
	}
	if existing != "" {
		v, err := s.view(ctx, existing)
		return v, true, err
	}
	s.opts.Metrics.created()
	if err := s.Advance(ctx, id, requestID); err != nil {
		s.log.Warn("workflow created; its first steps wait for the sweep", zap.String("workflow_id", id), zap.Error(err))
	}
	v, err := s.view(ctx, id)
	return v, false, err
}

// stepRow is the workflow_steps row of st at pos, its params sealed.
func (s *Service) stepRow(id string, pos int, spec tasks.Spec, st Step) (store.WorkflowStep, error) {
	msg := spec.NewParams()
	if len(st.Task.Params) > 0 && string(st.Task.Params) != "null" {
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(st.Task.Params, msg); err != nil {
			return store.WorkflowStep{}, tasks.Invalid("params", "cannot be read: %v", err)
		}
	}
	keyID := ""
	if s.opts.Keyring != nil {
		var err error
		if keyID, err = s.opts.Keyring.Seal(msg); err != nil {
			return store.WorkflowStep{}, fmt.Errorf("workflow: seal params: %w", err)
		}
	}
	params, err := tasks.ParamsJSON(msg)
	if err != nil {
		return store.WorkflowStep{}, fmt.Errorf("workflow: params: %w", err)
	}
	from, _ := json.Marshal(orEmpty(st.ParamsFrom))
	deps, _ := json.Marshal(orEmptySlice(st.DependsOn))
	row := store.WorkflowStep{WorkflowID: id, StepID: st.ID, Position: pos, Type: spec.Name, Params: store.JSON(params),
		KeyID: keyID, ParamsFrom: store.JSON(from), Priority: st.Task.Priority, TimeoutSeconds: st.Task.TimeoutSeconds,
		DependsOn: store.JSON(deps)}
	if st.Task.RetryPolicy != nil {
		b, _ := json.Marshal(st.Task.RetryPolicy)
		row.RetryPolicy = store.JSON(b)
	}
	return row, nil
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func orEmptySlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Get returns workflow id if p may see it.
func (s *Service) Get(ctx context.Context, p auth.Principal, id string) (View, error) {
	v, err := s.view(ctx, id)
	if err != nil {
		return View{}, err
	}
	if !p.CanSee(v.CreatedBy) {
		return View{}, ErrNotFound
	}
	return v, nil
}

// ListQuery filters and pages a list of workflows.
type ListQuery struct {
	Status string
	Limit  int
	// Cursor is the id of the last workflow of the previous page.
	Cursor string
}

// List returns the workflows p may see, newest first, and the next page's
// cursor ("" on the last page).
func (s *Service) List(ctx context.Context, p auth.Principal, q ListQuery) ([]store.Workflow, string, error) {
	limit := q.Limit
	if limit <= 0 || limit > 100 {
		limit = 50
	}
	db := s.db.WithContext(ctx).Order("id DESC").Limit(limit + 1)
	if !p.IsAdmin() {
		db = db.Where("created_by = ?", p.ID)
	}
	if q.Status != "" {
		db = db.Where("status = ?", q.Status)
	}
	if q.Cursor != "" {
		db = db.Where("id < ?", q.Cursor)
	}
	var out []store.Workflow
	if err := db.Find(&out).Error; err != nil {
		return nil, "", translate("list workflows", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// Cancel cancels workflow id for p: no further step is created, and every
// step task not yet ended is cancelled (a running one is stopped, as a task
// cancel does). A workflow already ended is ErrConflict.
func (s *Service) Cancel(ctx context.Context, p auth.Principal, id, requestID string) (View, error) {
	v, err := s.Get(ctx, p, id)
	if err != nil {
		return View{}, err
	}
	if !p.CanCreate() {
		return View{}, ErrForbidden
	}
	if isTerminal(v.Status) {
		return View{}, ErrConflict
	}
	res := s.db.WithContext(ctx).Model(&store.Workflow{}).Where("id = ?", id).
		Updates(map[string]any{"cancel_requested": true, "updated_at": time.Now().UTC()})
	if res.Error != nil {
		return View{}, translate("cancel workflow", res.Error)
	}
	for _, st := range v.Steps {
		if st.TaskID == "" || tasks.IsTerminal(tasks.Status(st.Status)) {
			continue
		}
		if _, err := s.creator.Cancel(ctx, p, st.TaskID); err != nil && !errors.Is(err, taskservice.ErrConflict) {
			return View{}, err
		}
	}
	if err := s.Advance(ctx, id, requestID); err != nil {
		return View{}, err
	}
	return s.view(ctx, id)
}

func isTerminal(status string) bool {
	return status == StatusCompleted || status == StatusFailed || status == StatusCancelled
}

// view reads workflow id with its steps' states.
func (s *Service) view(ctx context.Context, id string) (View, error) {
	wf, steps, byStep, err := load(s.db.WithContext(ctx), id, false)
	if err != nil {
		return View{}, err
	}
	states := derive(steps, byStep, wf.CancelRequested)
	v := View{Workflow: wf}
	for _, st := range steps {
		state := states[st.StepID]
		v.Steps = append(v.Steps, StepView{ID: st.StepID, DependsOn: dependsOn(st), Type: st.Type,
			TaskID: state.taskID, Status: state.status, Error: st.Error})
	}
	return v, nil
}

// stepTask is what an advance reads of a step's task.
type stepTask struct {
	ID, StepID, Status string
	Result             store.JSON
	ResultURL          *string
	CompletedAt        *time.Time
}

// load reads workflow id, its steps (dependencies first) and their tasks by
// step id; with lock, the workflow's row is locked for the transaction (FOR
// NO KEY UPDATE: a step's wakeup, which references the row, does not wait).
func load(db *gorm.DB, id string, lock bool) (store.Workflow, []store.WorkflowStep, map[string]stepTask, error) {
	var wf store.Workflow
	q := db
	if lock {
		q = q.Clauses(clause.Locking{Strength: "NO KEY UPDATE"})
	}
	if err := q.Take(&wf, "id = ?", id).Error; err != nil {
		return wf, nil, nil, translate("load workflow", err)
	}
	var steps []store.WorkflowStep
	if err := db.Where("workflow_id = ?", id).Order("position").Find(&steps).Error; err != nil {
		return wf, nil, nil, translate("load workflow steps", err)
	}
	var ts []stepTask
	if err := db.Table("tasks").Select("id, step_id, status, result, result_url, completed_at").
		Where("workflow_id = ?", id).Scan(&ts).Error; err != nil {
		return wf, nil, nil, translate("load workflow tasks", err)
	}
	byStep := make(map[string]stepTask, len(ts))
	for _, t := range ts {
		byStep[t.StepID] = t
	}
	return wf, steps, byStep, nil
}

func dependsOn(st store.WorkflowStep) []string {
	var deps []string
	_ = json.Unmarshal(st.DependsOn, &deps)
	return deps
}

func translate(op string, err error) error {
	err = store.Translate(err)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: postgres: %s: %v", taskservice.ErrUnavailable, op, err)
	}
	return fmt.Errorf("workflow: %s: %w", op, err)
}

// stepState is a step's derived state.
type stepState struct {
	status string
	taskID string
	// ready: every dependency completed and no task yet.
	ready bool
}

// derive computes every step's state from its task, or, without one, from
// its dependencies (steps are in dependency order): a dependency that failed
// or was cancelled cancels the step, as does a cancelled workflow; a step
// whose dependencies all completed is ready.
func derive(steps []store.WorkflowStep, byStep map[string]stepTask, cancelled bool) map[string]stepState {
	out := make(map[string]stepState, len(steps))
	for _, st := range steps {
		if t, ok := byStep[st.StepID]; ok {
			out[st.StepID] = stepState{status: t.Status, taskID: t.ID}
			continue
		}
		if st.Error != "" {
			out[st.StepID] = stepState{status: StatusFailed}
			continue
		}
		state := stepState{status: StatusPending, ready: true}
		for _, dep := range dependsOn(st) {
			switch out[dep].status {
			case StatusCompleted:
			case StatusFailed, StatusCancelled:
				state = stepState{status: StatusCancelled}
			default:
				state.ready = false
			}
			if state.status == StatusCancelled {
				break
			}
		}
		if cancelled && state.status == StatusPending {
			state = stepState{status: StatusCancelled}
		}
		out[st.StepID] = state
	}
	return out
}

// status is a workflow's status given its steps' states: completed when
// every step completed; once every step has ended with one that did not,
// cancelled if a person cancelled it, else failed; running while any step
// has a task; else pending.
func status(steps []store.WorkflowStep, states map[string]stepState, cancelRequested bool) string {
	ended, completed, started := 0, 0, false
	for _, st := range steps {
		s := states[st.StepID]
		if s.taskID != "" {
			started = true
		}
		if isTerminal(s.status) {
			ended++
			if s.status == StatusCompleted {
				completed++
			}
		}
	}
	switch {
	case completed == len(steps):
		return StatusCompleted
	case ended == len(steps) && cancelRequested:
		return StatusCancelled
	case ended == len(steps):
		return StatusFailed
	case started:
		return StatusRunning
	}
	return StatusPending
}

// Advance brings workflow id up to date: it creates the tasks of the steps
// that became ready (unique per workflow and step, so an advance racing this
// one, or repeating one that died, gets the same task) and fails those whose
// params cannot be resolved, holding no lock meanwhile; then, in one short
// transaction with the workflow's row locked, it sets the status the rows
// now give and removes the wakeups it served. An error (PostgreSQL or Redis
// unavailable) leaves the wakeups for a later advance.
func (s *Service) Advance(ctx context.Context, id, requestID string) error {
	db := s.db.WithContext(ctx)
	var served int64
	if err := db.Raw(`SELECT coalesce(max(id), 0) FROM workflow_wakeups WHERE workflow_id = ?`, id).Scan(&served).Error; err != nil {
		return translate("read workflow wakeups", err)
	}
	wf, steps, byStep, err := load(db, id, false)
	if errors.Is(err, ErrNotFound) {
		return nil // deleted with its wakeups
	}
	if err != nil {
		return err
	}
	for more := true; more; {
		more = false
		states := derive(steps, byStep, wf.CancelRequested)
		for i, st := range steps {
			if !states[st.StepID].ready {
				continue
			}
			req, rerr := s.request(wf, st, steps, byStep, requestID)
			var created taskservice.Created
			if rerr == nil {
				created, rerr = s.creator.Create(ctx, req)
			}
			if v, ok := tasks.AsValidation(rerr); ok {
				// The step fails without a task; its dependents are
				// cancelled by the next derive.
				msg := validationMessage(v)
				if err := db.Model(&store.WorkflowStep{}).Where("workflow_id = ? AND step_id = ? AND error = ''", id, st.StepID).
					Update("error", msg).Error; err != nil {
					return translate("fail workflow step", err)
				}
				steps[i].Error = msg
				more = true
				s.log.Info("workflow step failed before its task", zap.String("workflow_id", id), zap.String("step_id", st.StepID), zap.String("error", msg))
				continue
			}
			if rerr != nil {
				return rerr
			}
			byStep[st.StepID] = stepTask{ID: created.Task.ID, StepID: st.StepID, Status: created.Task.Status}
			if !created.Existing {
				s.opts.Metrics.stepCreated(time.Since(readySince(wf, st, byStep)))
			}
		}
	}
	return db.Transaction(func(tx *gorm.DB) error {
		wf, steps, byStep, err := load(tx, id, true)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.setStatus(tx, wf, status(steps, derive(steps, byStep, wf.CancelRequested), wf.CancelRequested)); err != nil {
			return err
		}
		return tx.Exec(`DELETE FROM workflow_wakeups WHERE workflow_id = ? AND id <= ?`, id, served).Error
	})
}

// setStatus records the workflow's status when it changed.
func (s *Service) setStatus(tx *gorm.DB, wf store.Workflow, next string) error {
	if next == wf.Status {
		return nil
	}
	now := time.Now().UTC()
	set := map[string]any{"status": next, "updated_at": now}
	if isTerminal(next) {
		set["completed_at"] = now
	} else {
		set["completed_at"] = nil // re-opened by a retry
	}
	if err := tx.Model(&store.Workflow{}).Where("id = ?", wf.ID).Updates(set).Error; err != nil {
		return err
	}
	s.opts.Metrics.ended(wf.Status, next)
	if isTerminal(next) {
		s.log.Info("workflow ended", zap.String("workflow_id", wf.ID), zap.String("status", next))
	}
	return nil
}

// readySince is when step st became ready: when the last of its
// dependencies completed, or, for a step without any, when the workflow was
// created.
func readySince(wf store.Workflow, st store.WorkflowStep, byStep map[string]stepTask) time.Time {
	at := wf.CreatedAt
	for _, dep := range dependsOn(st) {
		if t := byStep[dep].CompletedAt; t != nil && t.After(at) {
			at = *t
		}
	}
	return at
}

func validationMessage(v *tasks.ValidationError) string {
	parts := make([]string, 0, len(v.Errors))
	for _, e := range v.Errors {
		parts = append(parts, e.Field+": "+e.Message)
	}
	return strings.Join(parts, "; ")
}

// request is the creation request of step st's task: its stored params
// opened, with the values its ParamsFrom takes from its dependencies'
// results.
func (s *Service) request(wf store.Workflow, st store.WorkflowStep, steps []store.WorkflowStep, byStep map[string]stepTask, requestID string) (taskservice.CreateRequest, error) {
	req := taskservice.CreateRequest{Type: st.Type, Priority: st.Priority, TimeoutSeconds: st.TimeoutSeconds,
		CreatedBy: wf.CreatedBy, Role: wf.Role, RequestID: requestID, WorkflowID: wf.ID, StepID: st.StepID}
	if wf.TriggerID != nil {
		// The trigger's tasks (GET /tasks?trigger_id=) include its
		// workflows' steps.
		req.TriggerID = *wf.TriggerID
	}
	if len(st.RetryPolicy) > 0 && string(st.RetryPolicy) != "null" {
		var p tasks.RetryPolicy
		if err := json.Unmarshal(st.RetryPolicy, &p); err == nil {
			req.RetryPolicy = &p
		}
	}
	spec, ok := tasks.Lookup(st.Type)
	if !ok {
		return req, tasks.Invalid("type", "unknown task type %q", st.Type)
	}
	msg := spec.NewParams()
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(st.Params, msg); err != nil {
		return req, tasks.Invalid("params", "the stored params cannot be read")
	}
	if s.opts.Keyring != nil && st.KeyID != "" {
		if err := s.opts.Keyring.Open(msg); err != nil {
			return req, tasks.Invalid("params", "a stored secret cannot be decrypted: %v", err)
		}
	}
	var from map[string]string
	_ = json.Unmarshal(st.ParamsFrom, &from)
	if len(from) == 0 {
		req.Message = msg
		return req, nil
	}
	params, err := tasks.ParamsJSON(msg)
	if err != nil {
		return req, err
	}
	doc, err := resultsDoc(steps, byStep)
	if err != nil {
		return req, err
	}
	if len(wf.Event) > 0 {
		var event any
		if err := json.Unmarshal(wf.Event, &event); err == nil {
			doc["event"] = event
		}
	}
	values := map[string]any{}
	names := make([]string, 0, len(from))
	for name := range from {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		v, err := resolve(doc, from[name])
		if err != nil {
			return req, tasks.Invalid("params_from."+name, "%s: %v", from[name], err)
		}
		values[name] = v
	}
	merged, err := mergeParams(params, values)
	if err != nil {
		return req, tasks.Invalid("params", "%v", err)
	}
	req.Params = merged
	return req, nil
}

// resultsDoc is {"steps": {"<id>": {"result": …}}} over the completed steps'
// results (a result spilled to storage is not passed: it reads as null).
func resultsDoc(steps []store.WorkflowStep, byStep map[string]stepTask) (map[string]any, error) {
	results := map[string]any{}
	for _, st := range steps {
		t, ok := byStep[st.StepID]
		if !ok || t.Status != StatusCompleted {
			continue
		}
		var r any
		if len(t.Result) > 0 {
			if err := json.Unmarshal(t.Result, &r); err != nil {
				return nil, fmt.Errorf("workflow: result of step %s: %w", st.StepID, err)
			}
		}
		results[st.StepID] = map[string]any{"result": r}
	}
	return map[string]any{"steps": results}, nil
}

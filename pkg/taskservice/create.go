// Package taskservice is the one creation path of user tasks, used by the API,
// the scheduler and triggers: validate typed params, write the tasks row, enqueue
// to Asynq with TaskID = the row's id. It also holds the other operations that
// must keep PostgreSQL and Redis in step: cancel and manual retry.
package taskservice

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/oklog/ulid/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/tracing"
)

// Errors of the service, translated to status codes at the API's edge.
var (
	// ErrIdempotencyConflict: the caller reused an idempotency key with another body.
	ErrIdempotencyConflict = errors.New("idempotency key reused with a different request")
	// ErrUnavailable: PostgreSQL or Redis is down; the request may be retried.
	ErrUnavailable = errors.New("dependency unavailable")
	// ErrNotFound: no task with that id that the caller may see.
	ErrNotFound = errors.New("task not found")
	// ErrConflict: the task's state does not allow the operation.
	ErrConflict = errors.New("task state conflict")
	// ErrForbidden: the caller may not do this.
	ErrForbidden = errors.New("forbidden")
)

// Limits on what a caller may ask for.
const (
	MaxTimeoutSeconds  = 24 * 3600
	MaxScheduleAhead   = 366 * 24 * time.Hour
	MaxIdempotencyKey  = 255
	DefaultRetention   = time.Hour
	compensateDeadline = 5 * time.Second
)

// Sealer encrypts a params message's secret fields in place and returns the id
// of the key used ("" when there were none). The security layer provides it.
type Sealer interface {
	Seal(msg proto.Message) (keyID string, err error)
}

// URLCheck vets a caller-supplied URL at creation (the egress guard's check).
type URLCheck func(raw string) error

// RecipientPolicy vets a notification task's recipients at creation for the
// creator's role (*recipient.Policy, notify.policy); its objections are field
// errors of the 422.
type RecipientPolicy interface {
	Check(ctx context.Context, role, principal string, msg proto.Message) ([]tasks.FieldError, error)
}

// Options configure a Service.
type Options struct {
	// Retention keeps completed tasks in Asynq for Asynqmon. If zero, one hour.
	Retention time.Duration
	// Sealer encrypts secret params. If nil, params are stored as given.
	Sealer Sealer
	// CheckURL vets webhook_callback URLs (and callback URLs when
	// CheckCallbackURL is nil). If nil, only the scheme is checked.
	CheckURL URLCheck
	// CheckCallbackURL vets callback_url, which has an allow-list of its own
	// (egress.callbacks). If nil, CheckURL is used.
	CheckCallbackURL URLCheck
	// Recipients vets notification recipients for requests with a Role. If
	// nil, any recipient is accepted.
	Recipients RecipientPolicy
	// Inserters is the number of concurrent batch inserters. If zero, 1:
	// rows that arrive while a batch is being written wait for the next, so
	// batches grow with the load (measured over HTTP with 16 clients, when
	// a create's audit row still had a batched statement of its own: 0.52
	// commits per created task with one inserter and one audit writer, 0.82
	// with two of each).
	Inserters int
	// MaxBatch caps the rows of one insert. If zero, 256.
	MaxBatch int
	// BatchLinger is how long an inserter that found rows already waiting
	// waits for more before writing its batch (a lone row never waits). If
	// zero, 1 ms; if negative, no wait.
	BatchLinger time.Duration
	// CountTimeout bounds the exact count behind a list's total; past it (or
	// past CountCap rows) the total is PostgreSQL's estimate. If zero, 5 ms.
	CountTimeout time.Duration
	// Events receives an event for every change the service commits
	// (creation, cancel, retry). If nil, none is published.
	Events Publisher
	// Results forgets cached results (result.Store): a retry drops the
	// task's cached result in its transaction, before it commits. May be
	// nil.
	Results ResultForgetter
	// EnqueueTimeout bounds a creation's enqueue to Redis, retries included
	// (the Redis client must honour context deadlines, as queue.RedisOpt's
	// do). If zero, DefaultEnqueueTimeout.
	EnqueueTimeout time.Duration
}

// DefaultEnqueueTimeout is Options.EnqueueTimeout's default: with the API's
// other steps it keeps a create's answer within 2 seconds when Redis stalls.
const DefaultEnqueueTimeout = time.Second

// Service creates, cancels and retries tasks.
type Service struct {
	db        *gorm.DB
	client    *asynq.Client
	inspector *asynq.Inspector
	log       *zap.Logger
	opts      Options
	inserter  *inserter
	estimates *estimator
	totals    *totals
	lc        *lifecycle.Lifecycle
}

// New returns a Service. Close stops its inserters.
func New(db *gorm.DB, client *asynq.Client, inspector *asynq.Inspector, log *zap.Logger, opts Options) (*Service, error) {
	if db == nil || client == nil || inspector == nil || log == nil {
		return nil, errors.New("taskservice: nil dependency")
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Inserters == 0 {
		opts.Inserters = 1
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = 256
	}
	if opts.BatchLinger == 0 {
		opts.BatchLinger = time.Millisecond
	}
	if opts.CountTimeout == 0 {
		opts.CountTimeout = DefaultCountTimeout
	}
	if opts.EnqueueTimeout <= 0 {
		opts.EnqueueTimeout = DefaultEnqueueTimeout
	}
	lc, err := lifecycle.New(db, opts.Events)
	if err != nil {
		return nil, fmt.Errorf("taskservice: %w", err)
	}
	s := &Service{db: db, client: client, inspector: inspector, log: log, opts: opts, lc: lc}
	s.inserter = newInserter(db, opts.Inserters, opts.MaxBatch, max(opts.BatchLinger, 0))
	s.estimates = newEstimator(db, 50, 30*time.Second)
	s.totals = newTotals()
	return s, nil
}

// Close stops the batch inserters after the rows already handed to them.
func (s *Service) Close() { s.inserter.close() }

// CreateRequest is what a caller asks for. Either Params (JSON) or Message (an
// already decoded params message, e.g. from a schedule) is set.
type CreateRequest struct {
	Type           string
	Params         json.RawMessage
	Message        proto.Message
	Priority       string
	ScheduledFor   *time.Time
	RetryPolicy    *tasks.RetryPolicy
	TimeoutSeconds *int
	CallbackURL    string
	IdempotencyKey string
	// CreatedBy is the caller's principal id; idempotency keys are scoped to it.
	CreatedBy string
	// Role is the caller's role, for the recipient policy; empty (a
	// schedule's fire of an admin's schedule) skips it.
	Role string
	// RequestID is the id of the API request that creates the task; it
	// travels with the task (its Asynq headers) to the worker's log lines.
	RequestID string
	// ScheduleID and FireTime tie a task to one fire of a schedule; the pair is
	// unique, so a fire creates its task at most once.
	ScheduleID string
	FireTime   *time.Time
	// TriggerID ties a task to the event trigger that created it
	// (pkg/trigger); its deduplication is the IdempotencyKey's.
	TriggerID string
	// WorkflowID and StepID tie a task to a workflow's step (pkg/workflow);
	// the pair is unique, so a step creates its task at most once.
	WorkflowID, StepID string
	// Audit, if not nil, is the audit row of the creation's success
	// (audit.NewRow), written by the task row's own statement when the row is
	// inserted (its ResourceID is the new task's id): the creation and its
	// record commit together, with no round trip of their own. If the
	// creation is then undone (its enqueue failed), the row goes with the
	// task. Created.Audited says whether it was written.
	Audit *store.AuditEntry
}

// Created is the outcome of Create.
type Created struct {
	Task store.Task
	// Existing is true when the task already existed for the idempotency key (or
	// the schedule fire): the API answers 200 instead of 201.
	Existing bool
	// Audited is true when CreateRequest.Audit was written with the task.
	Audited bool
}

// Create validates the request, writes the row and enqueues the task within
// Options.EnqueueTimeout.
//
// What the caller is told is what happens to the task. If the enqueue fails
// or times out, Create answers ErrUnavailable (the API's 503) and removes the
// row, so the task never runs: the reconciler enqueues only rows that exist,
// and a delivery that still reaches Redis after a timeout (a stalled Redis
// runs what it was sent once it resumes) finds no row, and the worker drops
// it unrun (asynq.RevokeTask). A caller who retries with the same idempotency
// key gets a new task. Only when the process dies between insert and enqueue,
// or PostgreSQL fails the removal too, does the pending row stay; the
// reconciler then enqueues it (logged at error level when the removal failed).
func (s *Service) Create(ctx context.Context, req CreateRequest) (Created, error) {
	row, msg, spec, err := s.prepare(ctx, req)
	if err != nil {
		return Created{}, err
	}
	inserted, err := s.inserter.insert(ctx, &row, req.Audit)
	if err != nil {
		return Created{}, err
	}
	if !inserted {
		return s.existing(ctx, row)
	}
	ectx, cancel := context.WithTimeout(ctx, s.opts.EnqueueTimeout)
	err = s.enqueue(ectx, &row, spec, msg, req.RequestID)
	cancel()
	if err != nil {
		s.compensate(row.ID, req.Audit != nil, err)
		return Created{}, err
	}
	row.Version = 1 // a new row's
	s.lc.Publish(lifecycle.Changed(row))
	return Created{Task: row, Audited: req.Audit != nil}, nil
}

// prepare validates req and builds the row to insert.
func (s *Service) prepare(ctx context.Context, req CreateRequest) (store.Task, proto.Message, tasks.Spec, error) {
	spec, ok := tasks.Lookup(req.Type)
	if !ok {
		if req.Type == "" {
			return store.Task{}, nil, spec, tasks.Invalid("type", "is required")
		}
		return store.Task{}, nil, spec, tasks.Invalid("type", "unknown task type %q", req.Type)
	}
	var errs []tasks.FieldError
	msg := req.Message
	if msg == nil {
		m, err := tasks.DecodeParams(spec, req.Params, "params")
		if v, ok := tasks.AsValidation(err); ok {
			errs = append(errs, v.Errors...)
		} else if err != nil {
			return store.Task{}, nil, spec, err
		}
		msg = m
	}
	if wp, ok := msg.(*taskpb.WebhookCallbackParams); ok && s.opts.CheckURL != nil {
		if err := s.opts.CheckURL(wp.GetUrl()); err != nil {
			errs = append(errs, tasks.FieldError{Field: "params.url", Message: err.Error()})
		}
	}
	if s.opts.Recipients != nil && msg != nil && req.Role != "" {
		objections, err := s.opts.Recipients.Check(ctx, req.Role, req.CreatedBy, msg)
		if err != nil {
			return store.Task{}, nil, spec, fmt.Errorf("taskservice: recipients: %w", err)
		}
		errs = append(errs, objections...)
	}
	// The worker refuses a push alert that names other principals unless its
	// creator is an admin (notifyjob.ErrPrincipalsNotAllowed): such a task
	// could never succeed, so it is refused here.
	if ap, ok := msg.(*taskpb.SendAlertParams); ok && req.Role != "" && req.Role != string(auth.Admin) {
		for i, pr := range ap.GetPrincipals() {
			if pr != req.CreatedBy {
				errs = append(errs, tasks.FieldError{Field: fmt.Sprintf("params.principals[%d]", i),
					Message: "only an admin's alert may reach other principals' push subscriptions"})
			}
		}
	}
	priority := req.Priority
	if priority == "" {
		priority = spec.Priority
	}
	if !queue.ValidPriority(priority) {
		errs = append(errs, tasks.FieldError{Field: "priority", Message: "must be critical, high, normal or low"})
	}
	// PostgreSQL keeps microseconds: truncating here makes the creation response
	// and later reads (and list cursors) agree.
	now := time.Now().UTC().Truncate(time.Microsecond)
	scheduled := now
	if req.ScheduledFor != nil {
		switch {
		case req.ScheduledFor.After(now.Add(MaxScheduleAhead)):
			errs = append(errs, tasks.FieldError{Field: "scheduled_for", Message: "must be within a year"})
		case req.ScheduledFor.After(now):
			scheduled = req.ScheduledFor.UTC().Truncate(time.Microsecond)
		}
	}
	policy := spec.Retry
	if req.RetryPolicy != nil {
		policy = *req.RetryPolicy
		errs = append(errs, policy.Validate("retry_policy")...)
	}
	timeout := int(spec.Timeout / time.Second)
	if req.TimeoutSeconds != nil {
		timeout = *req.TimeoutSeconds
		if timeout < 1 || timeout > MaxTimeoutSeconds {
			errs = append(errs, tasks.FieldError{Field: "timeout_seconds", Message: "must be between 1 and 86400"})
		}
	}
	if req.CallbackURL != "" {
		check := s.opts.CheckCallbackURL
		if check == nil {
			check = s.opts.CheckURL
		}
		if check == nil {
			check = schemeOnly
		}
		if err := check(req.CallbackURL); err != nil {
			errs = append(errs, tasks.FieldError{Field: "callback_url", Message: err.Error()})
		}
	}
	if len(req.IdempotencyKey) > MaxIdempotencyKey {
		errs = append(errs, tasks.FieldError{Field: "idempotency_key", Message: "must be at most 255 characters"})
	}
	if len(errs) > 0 {
		return store.Task{}, nil, spec, &tasks.ValidationError{Errors: errs}
	}

	// The request hash is taken over the plaintext params (deterministic binary
	// form) so that a replay with the same secret matches; it is a keyed digest
	// (HMAC) when the Sealer offers one, never the secret itself.
	canonical, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return store.Task{}, nil, spec, fmt.Errorf("taskservice: params: %w", err)
	}
	hash := requestHash(s.mac(), spec.Name, canonical, priority, req.ScheduledFor, policy, timeout, req.CallbackURL)

	keyID := ""
	if s.opts.Sealer != nil {
		if keyID, err = s.opts.Sealer.Seal(msg); err != nil {
			return store.Task{}, nil, spec, fmt.Errorf("taskservice: seal params: %w", err)
		}
	}
	paramsJSON, err := tasks.ParamsJSON(msg)
	if err != nil {
		return store.Task{}, nil, spec, fmt.Errorf("taskservice: params: %w", err)
	}
	policyJSON, _ := json.Marshal(policy)
	row := store.Task{
		ID: NewID(), Type: spec.Name, Status: tasks.StatusPending, Priority: priority,
		Params: store.JSON(paramsJSON), KeyID: keyID, CreatedBy: req.CreatedBy, RequestHash: hash,
		CreatedAt: now, UpdatedAt: now, ScheduledFor: scheduled,
		Messages: store.JSON("[]"), MaxRetries: policy.MaxRetries, RetryPolicy: store.JSON(policyJSON),
		TimeoutSeconds:    timeout,
		EstimatedDuration: s.estimates.estimate(ctx, spec),
		TraceID:           tracing.TraceID(ctx),
		RequestID:         req.RequestID,
	}
	if req.IdempotencyKey != "" {
		k := req.IdempotencyKey
		row.IdempotencyKey = &k
	}
	if req.CallbackURL != "" {
		u := req.CallbackURL
		row.CallbackURL = &u
	}
	if req.ScheduleID != "" && req.FireTime != nil {
		id, ft := req.ScheduleID, req.FireTime.UTC()
		row.ScheduleID, row.FireTime = &id, &ft
	}
	if req.TriggerID != "" {
		id := req.TriggerID
		row.TriggerID = &id
	}
	if req.WorkflowID != "" && req.StepID != "" {
		wf, step := req.WorkflowID, req.StepID
		row.WorkflowID, row.StepID = &wf, &step
	}
	return row, msg, spec, nil
}

// Check validates req as Create would, without writing or enqueueing
// anything: a workflow's steps are checked when the workflow is created and
// their tasks created later.
func (s *Service) Check(ctx context.Context, req CreateRequest) error {
	_, _, _, err := s.prepare(ctx, req)
	return err
}

func schemeOnly(raw string) error {
	if !strings.HasPrefix(raw, "https://") && !strings.HasPrefix(raw, "http://") {
		return errors.New("must be an http or https URL")
	}
	return nil
}

// existing answers a request whose row was not inserted because its idempotency
// key (or schedule fire) already had a task.
func (s *Service) existing(ctx context.Context, row store.Task) (Created, error) {
	var found store.Task
	q := s.db.WithContext(ctx)
	var err error
	switch {
	case row.IdempotencyKey != nil:
		err = q.Where("created_by = ? AND idempotency_key = ?", row.CreatedBy, *row.IdempotencyKey).Take(&found).Error
	case row.ScheduleID != nil:
		err = q.Where("schedule_id = ? AND fire_time = ?", *row.ScheduleID, *row.FireTime).Take(&found).Error
	case row.WorkflowID != nil:
		err = q.Where("workflow_id = ? AND step_id = ?", *row.WorkflowID, *row.StepID).Take(&found).Error
	default:
		return Created{}, fmt.Errorf("taskservice: insert of %s skipped without a unique key", row.ID)
	}
	if err != nil {
		return Created{}, translate("find existing task", err)
	}
	if row.IdempotencyKey != nil && found.RequestHash != row.RequestHash {
		return Created{}, ErrIdempotencyConflict
	}
	return Created{Task: found, Existing: true}, nil
}

// enqueue hands the task to Asynq, with the enqueue span's trace context
// and the creating request's id (requestID, may be empty) in the task's
// headers: the worker's span of the task is the enqueue span's child.
func (s *Service) enqueue(ctx context.Context, row *store.Task, spec tasks.Spec, msg proto.Message, requestID string) error {
	policy := spec.Retry
	_ = json.Unmarshal(row.RetryPolicy, &policy)
	payload, err := tasks.EncodeEnvelope(row.ID, row.Type, msg, policy, row.TimeoutSeconds, row.KeyID, row.Attempt)
	if err != nil {
		return err
	}
	ctx, span := tracing.Start(ctx, "enqueue", trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("task.id", row.ID), attribute.String("task.type", row.Type),
			attribute.String("messaging.system", "asynq"), attribute.String("messaging.destination.name", row.Priority))
	}
	task := asynq.NewTaskWithHeaders(row.Type, payload, tracing.Headers(ctx, requestID))
	_, err = s.client.EnqueueContext(ctx, task, s.enqueueOptions(row, policy)...)
	switch {
	case err == nil, errors.Is(err, asynq.ErrTaskIDConflict):
		// A conflict means the task is already queued under its id.
		return nil
	default:
		span.SetStatus(codes.Error, err.Error())
		s.log.Warn("enqueue failed", zap.String("task_id", row.ID), zap.Error(err))
		return fmt.Errorf("%w: redis: %v", ErrUnavailable, err)
	}
}

// enqueueOptions maps a row to Asynq's options: queue per priority, the retry
// budget, a timeout of at least a second (Asynq truncates to whole seconds and
// reads zero as its 30-minute default) and the scheduled time.
func (s *Service) enqueueOptions(row *store.Task, policy tasks.RetryPolicy) []asynq.Option {
	opts := []asynq.Option{
		asynq.TaskID(row.ID),
		asynq.Queue(row.Priority),
		asynq.MaxRetry(policy.MaxRetries),
		asynq.Timeout(time.Duration(max(row.TimeoutSeconds, 1)) * time.Second),
		asynq.Retention(s.opts.Retention),
	}
	if row.ScheduledFor.After(time.Now()) {
		opts = append(opts, asynq.ProcessAt(row.ScheduledFor))
	}
	return opts
}

// compensate removes a row whose enqueue failed, so that no orphan survives. If
// PostgreSQL is down too, the reconciler re-enqueues the row later.
func (s *Service) compensate(id string, audited bool, cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), compensateDeadline)
	defer cancel()
	q, args := `DELETE FROM tasks WHERE id = ? AND status = 'pending' AND attempt = 0`, []any{id}
	if audited {
		// The creation's audit row (CreateRequest.Audit) goes with it, in
		// the same statement; the caller records the failure.
		q = `WITH d AS (` + q + ` RETURNING id)
DELETE FROM audit_log WHERE resource_id IN (SELECT id FROM d) AND resource_type = ? AND action = ?`
		args = append(args, audit.ResourceTask, audit.ActionTaskCreate)
	}
	if err := s.db.WithContext(ctx).Exec(q, args...).Error; err != nil {
		s.log.Error("orphan task row left for the reconciler", zap.String("task_id", id), zap.NamedError("cause", cause), zap.Error(err))
	}
}

// translate maps a PostgreSQL error to the service's errors.
func translate(op string, err error) error {
	err = store.Translate(err)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: postgres: %s: %v", ErrUnavailable, op, err)
	}
	return fmt.Errorf("taskservice: %s: %w", op, err)
}

// NewID returns a new task id: "task_" and a lower-case ULID, so ids sort by
// creation time.
func NewID() string {
	return "task_" + strings.ToLower(ulid.MustNew(ulid.Now(), rand.Reader).String())
}

// MACer is implemented by a Sealer that can key the idempotency request hash
// (secret.Keyring): the hash covers plaintext params, secrets included, so a
// plain digest of a low-entropy secret could be guessed offline from the row.
type MACer interface {
	MAC(data []byte) []byte
}

// mac returns the Sealer's MAC, or nil when it has none (plain SHA-256).
func (s *Service) mac() func([]byte) []byte {
	if m, ok := s.opts.Sealer.(MACer); ok {
		return m.MAC
	}
	return nil
}

// requestHash digests what makes two creations "the same request": with mac,
// keyed (HMAC), else SHA-256. Same-body replays give the same hash either way.
func requestHash(mac func([]byte) []byte, typ string, params []byte, priority string, scheduled *time.Time, p tasks.RetryPolicy, timeout int, callback string) string {
	sched := ""
	if scheduled != nil {
		sched = scheduled.UTC().Format(time.RFC3339Nano)
	}
	material := fmt.Appendf(nil, "%s\x00%s\x00%s\x00%s\x00%d/%d/%t/%d\x00%d\x00%s", typ, params, priority, sched,
		p.MaxRetries, p.RetryDelay, p.ExponentialBackoff, p.MaxRetryDelay, timeout, callback)
	if mac != nil {
		return "hmac:" + hex.EncodeToString(mac(material))
	}
	sum := sha256.Sum256(material)
	return hex.EncodeToString(sum[:])
}

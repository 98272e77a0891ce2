package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/workflow"
)

// Limits of a webhook delivery.
const (
	// MaxWebhookID bounds the webhook-id header (it becomes part of the
	// task's idempotency key, at most 255 characters).
	MaxWebhookID = 200
	// ExcerptLimit bounds the excerpt of a refused delivery's body kept in
	// its record.
	ExcerptLimit = 256
	// Tolerance is how far a webhook-timestamp may be from the server's
	// clock, in either direction.
	Tolerance = 5 * time.Minute
)

// Refusal is a delivery refused with an HTTP status and a reason (recorded
// with the delivery; never the body or a secret).
type Refusal struct {
	Status int
	Reason string
}

func (r *Refusal) Error() string { return fmt.Sprintf("delivery refused (%d): %s", r.Status, r.Reason) }

// Metrics are the triggers' Prometheus metrics.
type Metrics struct {
	deliveries *prometheus.CounterVec
	dispatched *prometheus.CounterVec
	pending    prometheus.Gauge
	lag        prometheus.Gauge
}

// NewMetrics registers the triggers' metrics on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_trigger_deliveries_total",
			Help: "Events delivered to triggers, by trigger kind and outcome (accepted or refused).",
		}, []string{"kind", "outcome"}),
		dispatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_trigger_dispatched_total",
			Help: "Database change events turned into tasks (or dropped), by outcome.",
		}, []string{"outcome"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "taskforge_trigger_events_pending",
			Help: "Database change events not yet turned into tasks, at the dispatcher's last pass.",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "taskforge_trigger_dispatcher_lag_seconds",
			Help: "Age of the oldest pending database change event past its debounce window, at the dispatcher's last pass.",
		}),
	}
	for _, k := range []string{KindWebhook, KindDatabase, KindUpload} {
		for _, o := range []string{"accepted", "refused"} {
			m.deliveries.WithLabelValues(k, o)
		}
	}
	for _, o := range []string{"created", "failed", "dropped"} {
		m.dispatched.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.deliveries, m.dispatched, m.pending, m.lag)
	}
	return m
}

// Service fires triggers: webhook deliveries, uploads and (through the
// Dispatcher) database changes, each through the task service.
type Service struct {
	store   *Store
	db      *gorm.DB
	tasks   *taskservice.Service
	log     *zap.Logger
	metrics *Metrics
	now     func() time.Time
	// workflows starts the workflows of triggers that have one.
	workflows WorkflowStarter
}

// WorkflowStarter starts a trigger event's workflow, at most once per event
// key (*workflow.Service).
type WorkflowStarter interface {
	CreateForEvent(ctx context.Context, def workflow.Definition, ev workflow.Event) (workflow.View, bool, error)
}

// StartWorkflowsWith lets s start the workflows of triggers that have one;
// until it is called, their events are refused as unavailable.
func (s *Service) StartWorkflowsWith(w WorkflowStarter) { s.workflows = w }

// New returns a Service. metrics may be nil (unregistered ones are used).
func New(st *Store, svc *taskservice.Service, log *zap.Logger, metrics *Metrics) (*Service, error) {
	if st == nil || svc == nil || log == nil {
		return nil, errors.New("trigger: nil dependency")
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Service{store: st, db: st.db, tasks: svc, log: log, metrics: metrics, now: time.Now}, nil
}

// Store returns the trigger store.
func (s *Service) Store() *Store { return s.store }

// Hook returns the enabled webhook trigger id names, or ErrNotFound (also for
// a disabled trigger or one of another kind, so that none can be told from an
// unknown id).
func (s *Service) Hook(ctx context.Context, id string) (store.Trigger, error) {
	row, err := s.store.Row(ctx, id)
	if err != nil {
		return row, err
	}
	if row.Kind != KindWebhook || !row.Enabled {
		return store.Trigger{}, ErrNotFound
	}
	return row, nil
}

// Refuse records a delivery refused before it was verified (its body too
// large, not JSON). One over the trigger's rate limit is only counted: a
// flood must not grow the deliveries without bound.
func (s *Service) Refuse(ctx context.Context, row store.Trigger, header http.Header, body []byte, r *Refusal) {
	if r.Status == http.StatusTooManyRequests {
		s.metrics.deliveries.WithLabelValues(row.Kind, "refused").Inc()
		return
	}
	s.record(ctx, row, header.Get(notify.HeaderWebhookID), nil, r, body)
}

// Deliver verifies a webhook delivery to row (Standard Webhooks: the
// signature over "id.timestamp.body" by the current secret, or the previous
// one during a rotation's overlap; the timestamp within Tolerance) and
// creates the trigger's task from the event {"body", "webhook_id"}: the same
// webhook-id always gives the same task (an idempotency key per trigger and
// webhook-id, so durably and across replicas). It returns the task's id, or a
// *Refusal, or ErrUnavailable. Every delivery is recorded.
func (s *Service) Deliver(ctx context.Context, row store.Trigger, header http.Header, body []byte) (string, error) {
	wid := header.Get(notify.HeaderWebhookID)
	refuse := func(status int, reason string) (string, error) {
		r := &Refusal{Status: status, Reason: reason}
		s.record(ctx, row, wid, nil, r, body)
		return "", r
	}
	secrets, err := s.store.secrets(row, s.now())
	if err != nil {
		s.log.Error("webhook trigger secret unreadable", zap.String("trigger_id", row.ID), zap.Error(err))
		return "", fmt.Errorf("trigger: %w", err)
	}
	// Every secret is tried (no early exit that would tell which one
	// matched); each comparison is constant-time (hmac.Equal).
	var verr error = notify.ErrBadSignature
	matched := false
	for _, sec := range secrets {
		if e := notify.VerifyWebhook(sec, header, body, s.now(), Tolerance); e == nil {
			matched = true
		} else {
			verr = e
		}
	}
	if matched {
		verr = nil
	}
	switch {
	case errors.Is(verr, notify.ErrSignatureExpired):
		return refuse(http.StatusUnauthorized, "webhook-timestamp is more than 5 minutes away")
	case verr != nil:
		return refuse(http.StatusUnauthorized, "missing or bad signature")
	case len(wid) > MaxWebhookID:
		return refuse(http.StatusBadRequest, fmt.Sprintf("webhook-id is longer than %d characters", MaxWebhookID))
	case !json.Valid(body):
		return refuse(http.StatusBadRequest, "the body is not valid JSON")
	}
	event := map[string]any{"body": json.RawMessage(body), "webhook_id": wid}
	id, err := s.fire(ctx, row, event, "webhook:"+wid)
	if err != nil {
		var r *Refusal
		if errors.As(err, &r) {
			s.record(ctx, row, wid, nil, r, body)
		}
		return "", err
	}
	s.record(ctx, row, wid, &id, nil, nil)
	return id, nil
}

// UploadEvent is an upload as upload triggers see it: the event their params
// are mapped from.
type UploadEvent struct {
	UploadID    string `json:"upload_id"`
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	ContentType string `json:"content_type"`
}

// Fired is one trigger's task made for an event.
type Fired struct {
	TriggerID string
	TaskID    string
}

// FireUpload is for the uploads code to call once an upload is stored: every
// enabled upload trigger whose filter matches u and that may see it (its
// owner uploaded it, or its owner is an admin) creates its task, at most once
// per upload (an idempotency key per trigger and upload). A trigger whose
// task cannot be created is recorded as a refused delivery and does not stop
// the others; the errors are joined.
func (s *Service) FireUpload(ctx context.Context, uploadedBy string, u UploadEvent) ([]Fired, error) {
	var rows []store.Trigger
	if err := s.db.WithContext(ctx).Where("kind = ? AND enabled AND (owner = ? OR owner_role = 'admin')", KindUpload, uploadedBy).
		Order("id").Find(&rows).Error; err != nil {
		return nil, translate("find upload triggers", err)
	}
	var out []Fired
	var errs []error
	for _, row := range rows {
		var f Filter
		_ = json.Unmarshal(row.Filter, &f)
		if !f.MatchUpload(u.Name, u.ContentType) {
			continue
		}
		id, err := s.fire(ctx, row, u, "upload:"+u.UploadID)
		if err != nil {
			var r *Refusal
			if errors.As(err, &r) {
				s.record(ctx, row, "", nil, r, nil)
			}
			errs = append(errs, fmt.Errorf("trigger %s: %w", row.ID, err))
			continue
		}
		s.record(ctx, row, "", &id, nil, nil)
		out = append(out, Fired{TriggerID: row.ID, TaskID: id})
	}
	return out, errors.Join(errs...)
}

// fire creates row's task for event through the task service, owned by the
// trigger's owner, with the idempotency key "trigger:<id>:<key>". A reuse of
// the key with other params (a webhook-id sent again with another body) gives
// the task already made. Bad params are a *Refusal (422).
func (s *Service) fire(ctx context.Context, row store.Trigger, event any, key string) (string, error) {
	if row.Workflow != nil {
		return s.startWorkflow(ctx, row, event, key)
	}
	params, err := buildParams(row.Params, row.ParamMap, event)
	if err != nil {
		return "", &Refusal{Status: http.StatusUnprocessableEntity, Reason: "the event cannot be mapped: " + err.Error()}
	}
	req := taskservice.CreateRequest{
		Type: row.TaskType, Params: params, TimeoutSeconds: row.TimeoutSeconds,
		IdempotencyKey: "trigger:" + row.ID + ":" + key, CreatedBy: row.Owner, Role: row.OwnerRole, TriggerID: row.ID,
	}
	if row.Priority != nil {
		req.Priority = *row.Priority
	}
	if row.CallbackURL != nil {
		req.CallbackURL = *row.CallbackURL
	}
	if len(row.RetryPolicy) > 0 {
		spec, _ := tasks.Lookup(row.TaskType)
		p := spec.Retry
		if json.Unmarshal(row.RetryPolicy, &p) == nil {
			req.RetryPolicy = &p
		}
	}
	created, err := s.tasks.Create(ctx, req)
	switch {
	case err == nil:
		return created.Task.ID, nil
	case errors.Is(err, taskservice.ErrIdempotencyConflict):
		var id string
		if err := s.db.WithContext(ctx).Raw(`SELECT id FROM tasks WHERE created_by = ? AND idempotency_key = ?`,
			req.CreatedBy, req.IdempotencyKey).Scan(&id).Error; err != nil || id == "" {
			return "", fmt.Errorf("%w: the task of a repeated event", ErrUnavailable)
		}
		return id, nil
	}
	if v, ok := tasks.AsValidation(err); ok {
		return "", &Refusal{Status: http.StatusUnprocessableEntity, Reason: "the event gives invalid params: " + v.Error()}
	}
	if errors.Is(err, taskservice.ErrUnavailable) {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return "", err
}

// record writes a delivery's record and counts it. A refused delivery keeps
// the first ExcerptLimit bytes of its body, never more.
func (s *Service) record(ctx context.Context, row store.Trigger, wid string, taskID *string, r *Refusal, body []byte) {
	d := store.TriggerDelivery{ID: "dlv_" + newULID(), TriggerID: row.ID, ReceivedAt: s.now().UTC(), Accepted: r == nil,
		Status: http.StatusAccepted, TaskID: taskID}
	if wid != "" {
		w := clip(wid, MaxWebhookID)
		d.WebhookID = &w
	}
	outcome := "accepted"
	if r != nil {
		outcome = "refused"
		d.Status, d.Reason, d.Excerpt = r.Status, clip(r.Reason, 500), clip(string(body), ExcerptLimit)
	}
	s.metrics.deliveries.WithLabelValues(row.Kind, outcome).Inc()
	// The record must not be lost to a caller who hung up.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.db.WithContext(rctx).Create(&d).Error; err != nil {
		s.log.Warn("trigger delivery not recorded", zap.String("trigger_id", row.ID), zap.Error(err))
	}
}

// clip cuts s to at most n bytes on a rune boundary, as valid UTF-8.
func clip(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Uploaded implements upload.Observer (the uploads code calls it once an
// upload is stored): FireUpload for the uploader's upload. Its failures are
// logged and recorded as refused deliveries; the upload stays stored.
func (s *Service) Uploaded(ctx context.Context, u store.Upload) {
	fired, err := s.FireUpload(ctx, u.CreatedBy, UploadEvent{UploadID: u.ID, Name: u.Name, Size: u.Size,
		SHA256: u.SHA256, ContentType: u.ContentType})
	if err != nil {
		s.log.Warn("upload triggers partly failed", zap.String("upload_id", u.ID), zap.Int("fired", len(fired)), zap.Error(err))
	}
}

// startWorkflow starts row's workflow for event, once per key, owned by the
// trigger's owner, and returns the task of its first step (the delivery's
// task). Steps refused for the event's values fail in the workflow with
// their reason; a workflow that cannot be read is a *Refusal (422).
func (s *Service) startWorkflow(ctx context.Context, row store.Trigger, event any, key string) (string, error) {
	if s.workflows == nil {
		return "", fmt.Errorf("%w: this process cannot start workflows", ErrUnavailable)
	}
	var body struct {
		Steps json.RawMessage `json:"steps"`
	}
	if err := json.Unmarshal(row.Workflow, &body); err != nil {
		return "", &Refusal{Status: http.StatusUnprocessableEntity, Reason: "the trigger's workflow cannot be read"}
	}
	steps, err := workflow.ParseSteps(body.Steps, "workflow.steps")
	if err != nil {
		return "", &Refusal{Status: http.StatusUnprocessableEntity, Reason: "the trigger's workflow cannot be read: " + err.Error()}
	}
	owner := auth.Principal{ID: row.Owner, Role: auth.Role(row.OwnerRole)}
	v, _, err := s.workflows.CreateForEvent(ctx, workflow.Definition{Name: row.Name, Steps: steps},
		workflow.Event{TriggerID: row.ID, Key: key, Owner: owner, Event: event})
	if ve, ok := tasks.AsValidation(err); ok {
		return "", &Refusal{Status: http.StatusUnprocessableEntity, Reason: "the workflow is refused: " + ve.Error()}
	}
	if errors.Is(err, taskservice.ErrUnavailable) {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err != nil {
		return "", err
	}
	for _, st := range v.Steps {
		if st.TaskID != "" {
			return st.TaskID, nil
		}
	}
	return "", nil
}

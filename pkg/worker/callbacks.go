package worker

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/logging"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/store"
)

// CallbackOptions configure a Callbacks deliverer. Zero values get the
// defaults named.
type CallbackOptions struct {
	// Interval is how often due callbacks are looked for. Default 1s.
	Interval time.Duration
	// Batch is how many callbacks one round claims. Default 20.
	Batch int
	// MaxAttempts is how many deliveries are tried before a callback is
	// abandoned. Default 10.
	MaxAttempts int
	// BaseDelay is the wait after the first failed delivery; it doubles per
	// attempt up to MaxDelay, with jitter. Defaults 5s and 1h.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// Lease is how long a claimed callback is hidden from other workers while
	// it is delivered. Default 2m.
	Lease time.Duration
	// Redact returns a task's params with secret fields redacted. If nil, the
	// payload carries no params.
	Redact func(typ string, params store.JSON) store.JSON
	// Registerer receives the deliverer's metrics. If nil, they are not
	// registered.
	Registerer prometheus.Registerer
}

// CallbackSecrets gives the secrets that sign an owner's callbacks now: the
// current one first, and during a rotation's overlap the previous one too
// (*callbackkey.Store).
type CallbackSecrets interface {
	Signing(ctx context.Context, principal string) ([][]byte, error)
}

// Callbacks delivers the task_callbacks outbox: a terminal task's final JSON,
// POSTed to its callback_url through the egress-guarded client, signed as a
// Standard Webhooks message (notify.PostWebhook: headers webhook-id,
// webhook-timestamp and webhook-signature) with the secret of the task's
// owner, so that no receiver holds a key that signs another owner's
// callbacks; retried with exponential backoff under the same webhook-id.
// Several workers may run it at once: rows are claimed with FOR UPDATE SKIP
// LOCKED and a lease.
type Callbacks struct {
	db      *sql.DB
	gdb     *gorm.DB
	client  *http.Client
	secrets CallbackSecrets
	log     *zap.Logger
	opts    CallbackOptions
	poke    chan struct{}
	count   *prometheus.CounterVec
}

// NewCallbacks returns a deliverer. client must be the egress guard's client;
// secrets gives each owner's signing secrets.
func NewCallbacks(db *gorm.DB, client *http.Client, secrets CallbackSecrets, log *zap.Logger, opts CallbackOptions) (*Callbacks, error) {
	if db == nil || client == nil || secrets == nil || log == nil {
		return nil, errors.New("worker: callbacks: nil dependency")
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("worker: callbacks: %w", err)
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Batch <= 0 {
		opts.Batch = 20
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 10
	}
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = 5 * time.Second
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = time.Hour
	}
	if opts.Lease <= 0 {
		opts.Lease = 2 * time.Minute
	}
	c := &Callbacks{
		db: sqlDB, gdb: db, client: client, secrets: secrets, log: log, opts: opts, poke: make(chan struct{}, 1),
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_task_callbacks_total",
			Help: "Callback deliveries, by result (delivered, retry, abandoned).",
		}, []string{"result"}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(c.count)
	}
	return c, nil
}

// Poke asks for a delivery round now (a terminal state was just recorded).
func (c *Callbacks) Poke() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// Run delivers due callbacks until ctx ends.
func (c *Callbacks) Run(ctx context.Context) {
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.poke:
		}
		for {
			n, err := c.DeliverDue(ctx)
			if err != nil {
				if ctx.Err() == nil {
					c.log.Warn("callback round failed", zap.Error(err))
				}
				break
			}
			if n < c.opts.Batch {
				break
			}
		}
	}
}

// claimed is a callback claimed for delivery.
type claimed struct {
	id       int64
	taskID   string
	url      string
	attempts int
	// traceID, requestID and attempt are the task's creation trace, the
	// request that created it and its attempt count, for the log lines,
	// once the task was read.
	traceID, requestID string
	attempt            int
}

// fields are the fields of the log lines about cb's task: task_id, the
// task's attempt, trace_id and the creating request_id.
func (cb claimed) fields(extra ...zap.Field) []zap.Field {
	return append([]zap.Field{logging.TaskID(cb.taskID), logging.Attempt(cb.attempt),
		zap.String(logging.FieldTraceID, cb.traceID), logging.RequestID(cb.requestID)}, extra...)
}

// DeliverDue claims up to Batch due callbacks, delivers them concurrently and
// records each result. It returns how many it claimed.
func (c *Callbacks) DeliverDue(ctx context.Context) (int, error) {
	rows, err := c.db.QueryContext(ctx, `
UPDATE task_callbacks c SET attempts = c.attempts + 1, next_attempt_at = now() + $2 * interval '1 millisecond'
WHERE c.id IN (
    SELECT id FROM task_callbacks
    WHERE delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING c.id, c.task_id, c.url, c.attempts`, c.opts.Batch, c.opts.Lease.Milliseconds())
	if err != nil {
		return 0, fmt.Errorf("worker: claim callbacks: %w", err)
	}
	var batch []claimed
	for rows.Next() {
		var cb claimed
		if err := rows.Scan(&cb.id, &cb.taskID, &cb.url, &cb.attempts); err != nil {
			rows.Close()
			return 0, fmt.Errorf("worker: claim callbacks: %w", err)
		}
		batch = append(batch, cb)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("worker: claim callbacks: %w", err)
	}
	done := make(chan struct{}, len(batch))
	for _, cb := range batch {
		go func() {
			defer func() { done <- struct{}{} }()
			c.deliver(ctx, cb)
		}()
	}
	for range batch {
		<-done
	}
	return len(batch), nil
}

func (c *Callbacks) deliver(ctx context.Context, cb claimed) {
	var task store.Task
	err := c.gdb.WithContext(ctx).Where("id = ?", cb.taskID).Take(&task).Error
	if err != nil {
		c.retryLater(ctx, cb, fmt.Errorf("read task: %w", store.Translate(err)), false)
		return
	}
	cb.traceID, cb.requestID, cb.attempt = task.TraceID, task.RequestID, task.Attempt
	body, err := json.Marshal(c.payload(task))
	if err != nil {
		c.retryLater(ctx, cb, fmt.Errorf("encode task: %w", err), true)
		return
	}
	secrets, err := c.secrets.Signing(ctx, task.CreatedBy)
	if err != nil {
		c.retryLater(ctx, cb, fmt.Errorf("signing secret: %w", err), task.CreatedBy == "")
		return
	}
	_, err = notify.PostWebhook(ctx, c.client, cb.url, callbackMessageID(cb), body, secrets)
	if err == nil {
		c.count.WithLabelValues("delivered").Inc()
		_, err := c.db.ExecContext(context.WithoutCancel(ctx),
			`UPDATE task_callbacks SET delivered_at = now(), last_error = '' WHERE id = $1`, cb.id)
		if err != nil {
			c.log.Warn("callback delivered but not marked; it may be sent again", cb.fields(zap.Error(err))...)
		}
		return
	}
	c.retryLater(ctx, cb, err, notify.IsPermanent(err))
}

// callbackMessageID is a callback's webhook-id: the same on every retry of
// one outbox row, so that a receiver can drop a duplicate delivery.
func callbackMessageID(cb claimed) string {
	return fmt.Sprintf("msg_%s_%d", cb.taskID, cb.id)
}

// retryLater records a failed delivery: another try after the backoff, or the
// callback abandoned when the failure is permanent or the attempts ran out.
func (c *Callbacks) retryLater(ctx context.Context, cb claimed, cause error, permanent bool) {
	ctx = context.WithoutCancel(ctx)
	msg := clean(cause.Error(), 1000)
	if permanent || cb.attempts >= c.opts.MaxAttempts {
		c.count.WithLabelValues("abandoned").Inc()
		c.log.Warn("callback abandoned", cb.fields(zap.Int("attempts", cb.attempts), zap.String("error", msg))...)
		if _, err := c.db.ExecContext(ctx, `UPDATE task_callbacks SET abandoned_at = now(), last_error = $2 WHERE id = $1`, cb.id, msg); err != nil {
			c.log.Warn("callback failure not recorded", cb.fields(zap.Error(err))...)
		}
		return
	}
	c.count.WithLabelValues("retry").Inc()
	delay := c.backoff(cb.attempts)
	if _, err := c.db.ExecContext(ctx, `UPDATE task_callbacks SET next_attempt_at = now() + $2 * interval '1 millisecond', last_error = $3 WHERE id = $1`,
		cb.id, delay.Milliseconds(), msg); err != nil {
		c.log.Warn("callback failure not recorded", cb.fields(zap.Error(err))...)
	}
}

// backoff is the wait after the n-th failed delivery: BaseDelay doubled per
// attempt, capped at MaxDelay, minus up to 10 % jitter.
func (c *Callbacks) backoff(n int) time.Duration {
	d := c.opts.BaseDelay
	for i := 1; i < n && d < c.opts.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, c.opts.MaxDelay)
	return d - time.Duration(float64(d)*0.1*randFloat())
}

// CallbackPayload is the body of a callback: the task's final state in the
// API's field names.
type CallbackPayload struct {
	TaskID       string          `json:"task_id"`
	Type         string          `json:"type"`
	Status       string          `json:"status"`
	Priority     string          `json:"priority"`
	Params       json.RawMessage `json:"params,omitempty"`
	Progress     float64         `json:"progress"`
	CurrentStep  string          `json:"current_step"`
	Messages     json.RawMessage `json:"messages"`
	CreatedAt    time.Time       `json:"created_at"`
	ScheduledFor time.Time       `json:"scheduled_for"`
	StartedAt    *time.Time      `json:"started_at"`
	CompletedAt  *time.Time      `json:"completed_at"`
	Attempts     int             `json:"attempts"`
	MaxRetries   int             `json:"max_retries"`
	DurationMs   *int64          `json:"duration_ms"`
	Result       json.RawMessage `json:"result"`
	ResultURL    *string         `json:"result_url"`
	Error        json.RawMessage `json:"error"`
}

func (c *Callbacks) payload(t store.Task) CallbackPayload {
	p := CallbackPayload{
		TaskID: t.ID, Type: t.Type, Status: t.Status, Priority: t.Priority,
		Progress: t.Progress, CurrentStep: t.CurrentStep, Messages: rawOr(t.Messages, "[]"),
		CreatedAt: t.CreatedAt.UTC(), ScheduledFor: t.ScheduledFor.UTC(), StartedAt: utc(t.StartedAt), CompletedAt: utc(t.CompletedAt),
		Attempts: t.Attempt, MaxRetries: t.MaxRetries, DurationMs: t.DurationMs,
		Result: rawOr(t.Result, "null"), ResultURL: t.ResultURL, Error: rawOr(t.Error, "null"),
	}
	if c.opts.Redact != nil {
		p.Params = json.RawMessage(c.opts.Redact(t.Type, t.Params))
	}
	return p
}

func rawOr(j store.JSON, def string) json.RawMessage {
	if len(j) == 0 {
		return json.RawMessage(def)
	}
	return json.RawMessage(j)
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func randFloat() float64 { return rand.Float64() }

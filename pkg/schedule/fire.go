package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/tracing"
	"github.com/taskforge/taskforge/pkg/workflow"
)

// Creator is the one creation path of tasks (taskservice.Service).
type Creator interface {
	Create(ctx context.Context, req taskservice.CreateRequest) (taskservice.Created, error)
}

// FireOptions configure a Firer.
type FireOptions struct {
	// CatchUp is how many missed fires of a schedule are made up (the latest
	// ones); older missed fires are skipped. Pass scheduler.catch_up. Zero
	// makes up none.
	CatchUp int
	// MaxGrace bounds how late a fire may be created and still count as on
	// time rather than missed; a tick is on time until the next one or
	// MaxGrace, whichever is sooner. If zero, one minute.
	MaxGrace time.Duration
	// Skew lets a fire handler whose clock runs a little behind the
	// scheduler's still see the tick it was sent for; it is capped at a
	// quarter of the schedule's period. If zero, 250ms; negative disables it.
	Skew time.Duration
	// Metrics, if not nil, counts fires and observes their delay.
	Metrics *Metrics
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// Keyring opens the secret params a sealed store (NewSealedStore) keeps,
	// before the task service seals them again for the task. Required when
	// schedules are stored sealed, else their secrets would be sealed twice.
	Keyring Keyring
	// Workflows starts the workflows of schedules that have one
	// (*workflow.Service). If nil, such a schedule's fires fail (logged) and
	// are retried.
	Workflows WorkflowStarter
}

// WorkflowStarter starts a schedule fire's workflow, at most once per fire
// (*workflow.Service).
type WorkflowStarter interface {
	CreateForFire(ctx context.Context, def workflow.Definition, fire workflow.Fire) (workflow.View, bool, error)
}

// Firer turns due ticks of schedules into tasks. It is the whole fire
// protocol, used both by the fire job's handler and by the scheduler's
// catch-up on every sync:
//
//   - The ticks considered are those after the schedule's fire watermark
//     (fired_through) and not after now (plus Skew for a fire job).
//   - A tick is on time while it is less than min(period, MaxGrace) old; it is
//     created. Older ticks are missed: the latest CatchUp of them are created,
//     the rest skipped.
//   - Each task is created through the task service with (schedule id, fire
//     time); the unique index on that pair makes a second creation (another
//     replica, a duplicate fire job, the catch-up racing the fire job) return
//     the existing task instead.
//   - The watermark then moves to the latest tick considered.
//
// Nothing in a fire job says which tick it is for: Asynq's periodic payload
// is fixed per registration. The tick is derived from the cron, which also
// makes any number of duplicate, late or missing fire jobs converge on one
// task per tick.
type Firer struct {
	db      *gorm.DB
	creator Creator
	log     *zap.Logger
	opts    FireOptions
}

// NewFirer returns a Firer.
func NewFirer(db *gorm.DB, creator Creator, log *zap.Logger, opts FireOptions) (*Firer, error) {
	if db == nil || creator == nil || log == nil {
		return nil, errors.New("schedule: nil dependency")
	}
	if opts.MaxGrace == 0 {
		opts.MaxGrace = time.Minute
	}
	if opts.Skew == 0 {
		opts.Skew = 250 * time.Millisecond
	}
	if opts.Skew < 0 {
		opts.Skew = 0
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Firer{db: db, creator: creator, log: log, opts: opts}, nil
}

// Outcome says what a fire did.
type Outcome struct {
	// Created are the tasks created (or found existing) per fire time.
	Created []store.Task
	// Skipped counts missed ticks beyond the catch-up limit.
	Skipped int
}

// FireJob handles a fire job for schedule id: it creates the schedule's due
// ticks, with Skew. A deleted or disabled schedule does nothing.
func (f *Firer) FireJob(ctx context.Context, id string) (Outcome, error) {
	row, ok, err := f.load(ctx, id)
	if err != nil || !ok {
		return Outcome{}, err
	}
	now := f.opts.Now()
	return f.fire(ctx, row, now, f.opts.Skew)
}

// CatchUp creates the due ticks of every enabled schedule: the scheduler runs
// it on start and on every sync, so that a fire missed while no scheduler ran,
// or whose fire job was lost, is made up (within CatchUp). It returns the
// first error after trying every schedule.
func (f *Firer) CatchUp(ctx context.Context) error {
	var rows []store.Schedule
	if err := f.db.WithContext(ctx).Where("enabled").Order("id").Find(&rows).Error; err != nil {
		return translate("list enabled schedules", err)
	}
	var first error
	now := f.opts.Now()
	for _, row := range rows {
		if _, err := f.fire(ctx, row, now, 0); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (f *Firer) load(ctx context.Context, id string) (store.Schedule, bool, error) {
	var row store.Schedule
	err := f.db.WithContext(ctx).Take(&row, "id = ?", id).Error
	if err != nil {
		err = translate("get schedule "+id, err)
		if errors.Is(err, ErrNotFound) {
			return row, false, nil
		}
		return row, false, err
	}
	return row, row.Enabled, nil
}

// fire creates row's due ticks up to now+skew and advances its watermark.
func (f *Firer) fire(ctx context.Context, row store.Schedule, now time.Time, skew time.Duration) (Outcome, error) {
	c, ferr := ParseCron(row.Cron, row.Timezone)
	if ferr != nil {
		f.log.Error("schedule has an invalid cron", zap.String("schedule_id", row.ID), zap.String("error", ferr.Message))
		return Outcome{}, nil
	}
	if p := c.Period(now) / 4; skew > p {
		skew = p
	}
	ticks := c.Ticks(row.FiredThrough, now.Add(skew), f.opts.CatchUp+2)
	if len(ticks) == 0 {
		return Outcome{}, nil
	}
	// A span per fire that has ticks to create; the tasks' enqueue spans
	// are its children.
	ctx, span := tracing.Start(ctx, "schedule fire")
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("schedule.id", row.ID), attribute.String("task.type", row.Type),
			attribute.Int("schedule.ticks", len(ticks)))
	}
	var out Outcome
	var missed, due []time.Time
	for _, t := range ticks {
		grace := min(f.opts.MaxGrace, c.Next(t).Sub(t))
		if now.Sub(t) < grace {
			due = append(due, t)
		} else {
			missed = append(missed, t)
		}
	}
	if keep := min(len(missed), f.opts.CatchUp); keep < len(missed) {
		out.Skipped = len(missed) - keep
		f.log.Warn("missed schedule fires skipped beyond the catch-up limit", zap.String("schedule_id", row.ID),
			zap.Int("skipped", out.Skipped), zap.Time("through", missed[len(missed)-keep-1]))
		f.opts.Metrics.fired("skipped", out.Skipped)
		missed = missed[len(missed)-keep:]
	}
	watermark := ticks[len(ticks)-1]
	for _, t := range append(missed, due...) {
		task, err := f.create(ctx, row, t)
		if err != nil {
			if _, ok := tasks.AsValidation(err); ok {
				// The schedule's definition no longer makes a valid task (a
				// type's rules changed): retrying cannot help.
				f.log.Error("schedule fire refused by the task service", zap.String("schedule_id", row.ID),
					zap.Time("fire_time", t), zap.Error(err))
				f.opts.Metrics.fired("invalid", 1)
				continue
			}
			// Leave the watermark before this tick so that it is tried again.
			watermark = t.Add(-time.Microsecond)
			if uerr := f.advance(ctx, row.ID, watermark, out.Created); uerr != nil {
				f.log.Warn("schedule watermark not advanced", zap.String("schedule_id", row.ID), zap.Error(uerr))
			}
			span.SetStatus(codes.Error, err.Error())
			return out, fmt.Errorf("schedule: fire %s at %s: %w", row.ID, t.UTC().Format(time.RFC3339), err)
		}
		out.Created = append(out.Created, task)
	}
	if err := f.advance(ctx, row.ID, watermark, out.Created); err != nil {
		return out, err
	}
	return out, nil
}

func (f *Firer) create(ctx context.Context, row store.Schedule, t time.Time) (store.Task, error) {
	if row.Workflow != nil {
		return f.startWorkflow(ctx, row, t)
	}
	req := taskservice.CreateRequest{
		Type: row.Type, Params: json.RawMessage(row.Params), TimeoutSeconds: row.TimeoutSeconds,
		CreatedBy: "schedule:" + row.ID, ScheduleID: row.ID, FireTime: &t,
	}
	if f.opts.Keyring != nil {
		msg, err := openParams(f.opts.Keyring, row)
		if err != nil {
			f.opts.Metrics.fired("failed", 1)
			return store.Task{}, err
		}
		req.Params, req.Message = nil, msg
	}
	if row.Priority != nil {
		req.Priority = *row.Priority
	}
	if len(row.RetryPolicy) > 0 {
		var p tasks.RetryPolicy
		if err := json.Unmarshal(row.RetryPolicy, &p); err == nil {
			req.RetryPolicy = &p
		}
	}
	c, err := f.creator.Create(ctx, req)
	if err != nil {
		f.opts.Metrics.fired("failed", 1)
		return store.Task{}, err
	}
	if c.Existing {
		f.opts.Metrics.fired("existing", 1)
	} else {
		f.opts.Metrics.fired("created", 1)
		f.opts.Metrics.delay(c.Task.CreatedAt.Sub(t))
		f.log.Info("schedule fired", zap.String("schedule_id", row.ID), zap.String("task_id", c.Task.ID),
			zap.Time("fire_time", t), zap.Duration("delay", c.Task.CreatedAt.Sub(t)))
	}
	return c.Task, nil
}

// advance moves the watermark forward (never back) and records the latest
// task created.
func (f *Firer) advance(ctx context.Context, id string, watermark time.Time, created []store.Task) error {
	var lastRun *time.Time
	var lastTask *string
	if n := len(created); n > 0 {
		lastRun, lastTask = created[n-1].FireTime, &created[n-1].ID
	}
	err := f.db.WithContext(ctx).Exec(`
UPDATE schedules SET
    fired_through = GREATEST(fired_through, ?),
    last_task_id  = CASE WHEN ?::timestamptz IS NOT NULL AND (last_run_at IS NULL OR last_run_at <= ?) THEN ? ELSE last_task_id END,
    last_run_at   = CASE WHEN ?::timestamptz IS NOT NULL AND (last_run_at IS NULL OR last_run_at <= ?) THEN ? ELSE last_run_at END
WHERE id = ?`, watermark, lastRun, lastRun, lastTask, lastRun, lastRun, lastRun, id).Error
	if err != nil {
		return translate("advance schedule "+id, err)
	}
	return nil
}

// NewFireJob returns the worker's handler of the internal fire job
// (tasks.TypeScheduleFire): the runtime decodes the envelope and passes its
// taskpb.ScheduleFireParams; being internal, the job has no tasks row and
// bypasses the lifecycle. A failure to reach PostgreSQL or Redis is retried
// by Asynq (and made up by the scheduler's catch-up if retries run out).
func NewFireJob(f *Firer) job.Handler {
	return job.Typed(func(ctx context.Context, _ job.Reporter, p *taskpb.ScheduleFireParams) error {
		if p.GetScheduleId() == "" {
			return job.Permanent(errors.New("schedule: fire job without a schedule id"))
		}
		_, err := f.FireJob(ctx, p.GetScheduleId())
		return err
	})
}

// NewFireHandler returns the fire job's handler as a plain asynq.Handler, for
// processes without the worker's runtime (tests, tools): it decodes the
// envelope itself.
func NewFireHandler(f *Firer) asynq.Handler {
	h := NewFireJob(f)
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		env, err := tasks.DecodeEnvelope(t.Payload())
		if err != nil {
			return fmt.Errorf("schedule: fire payload: %w: %w", err, asynq.SkipRetry)
		}
		_, params, err := tasks.DecodeEnvelopeParams(env)
		if err != nil {
			return fmt.Errorf("schedule: fire payload: %w: %w", err, asynq.SkipRetry)
		}
		if err := h(ctx, nil, params); err != nil {
			if job.IsPermanent(err) {
				return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
			}
			return err
		}
		return nil
	})
}

// Metrics count fires.
type Metrics struct {
	fires  *prometheus.CounterVec
	delays prometheus.Histogram
}

// NewMetrics registers taskforge_schedule_fires_total{outcome} and
// taskforge_schedule_fire_delay_seconds in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		fires: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_schedule_fires_total",
			Help: "Schedule fires by outcome: created, existing (another path created it), skipped (beyond catch-up), invalid, failed.",
		}, []string{"outcome"}),
		delays: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "taskforge_schedule_fire_delay_seconds",
			Help:    "Time from a fire's intended time to the creation of its task.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
	}
	// Every outcome from the start, so that rates exist before the first.
	for _, o := range []string{"created", "existing", "skipped", "invalid", "failed"} {
		m.fires.WithLabelValues(o)
	}
	reg.MustRegister(m.fires, m.delays)
	return m
}

func (m *Metrics) fired(outcome string, n int) {
	if m != nil {
		m.fires.WithLabelValues(outcome).Add(float64(n))
	}
}

func (m *Metrics) delay(d time.Duration) {
	if m != nil {
		m.delays.Observe(d.Seconds())
	}
}

// startWorkflow starts row's workflow for its fire at t and returns the task
// of its first step (the schedule's last run, as a task schedule's).
func (f *Firer) startWorkflow(ctx context.Context, row store.Schedule, t time.Time) (store.Task, error) {
	if f.opts.Workflows == nil {
		f.opts.Metrics.fired("failed", 1)
		return store.Task{}, errors.New("schedule: this process cannot start workflows (FireOptions.Workflows)")
	}
	def, err := definition(f.opts.Keyring, row)
	if err != nil {
		f.opts.Metrics.fired("failed", 1)
		return store.Task{}, err
	}
	v, existing, err := f.opts.Workflows.CreateForFire(ctx, def, workflow.Fire{ScheduleID: row.ID, Time: t})
	if err != nil {
		f.opts.Metrics.fired("failed", 1)
		return store.Task{}, err
	}
	ft := t.UTC()
	task := store.Task{CreatedAt: v.CreatedAt, FireTime: &ft}
	for _, st := range v.Steps {
		if st.TaskID != "" {
			task.ID = st.TaskID
			break
		}
	}
	if existing {
		f.opts.Metrics.fired("existing", 1)
	} else {
		f.opts.Metrics.fired("created", 1)
		f.opts.Metrics.delay(v.CreatedAt.Sub(t))
		f.log.Info("schedule fired a workflow", zap.String("schedule_id", row.ID), zap.String("workflow_id", v.ID),
			zap.Time("fire_time", t), zap.Duration("delay", v.CreatedAt.Sub(t)))
	}
	return task, nil
}

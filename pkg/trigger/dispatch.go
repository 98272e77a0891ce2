package trigger

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"time"

	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/store"
)

// Channel is the PostgreSQL NOTIFY channel on which the migration's table
// triggers announce new change events.
const Channel = "taskforge_trigger_events"

// DispatcherOptions configure a Dispatcher.
type DispatcherOptions struct {
	// Poll is the longest wait between passes when no notification comes (a
	// missed NOTIFY, a lost connection). If zero, 5 s.
	Poll time.Duration
	// Batch caps the events of one trigger handled per pass without a
	// debounce window. If zero, 500.
	Batch int
}

// Dispatcher turns database change events (rows of trigger_events, written
// by PostgreSQL triggers in the changes' own transactions) into tasks. It
// listens on Channel and also passes every Poll, so that events written while
// no dispatcher ran are dispatched when one starts. It is safe to run in
// every scheduler replica: a trigger's events are handled under a
// transaction-scoped advisory lock, and each task is created with an
// idempotency key per event (no debounce) or per debounce window (the
// window's first event), so a pass cut short and repeated makes no second
// task.
type Dispatcher struct {
	svc  *Service
	db   *gorm.DB
	log  *zap.Logger
	opts DispatcherOptions
}

// NewDispatcher returns a Dispatcher that creates tasks through svc.
func NewDispatcher(svc *Service, opts DispatcherOptions) (*Dispatcher, error) {
	if svc == nil {
		return nil, errors.New("trigger: nil service")
	}
	if opts.Poll <= 0 {
		opts.Poll = 5 * time.Second
	}
	if opts.Batch <= 0 {
		opts.Batch = 500
	}
	return &Dispatcher{svc: svc, db: svc.db, log: svc.log.Named("trigger-dispatcher"), opts: opts}, nil
}

// Run dispatches until ctx ends. PostgreSQL being down is logged and retried,
// never returned.
func (d *Dispatcher) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		err := d.listen(ctx)
		if ctx.Err() != nil {
			return nil
		}
		d.log.Warn("trigger event listener stopped; passing by polling until it is back", zap.Error(err))
		d.pass(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(d.opts.Poll):
		}
	}
	return nil
}

// listen holds one connection that LISTENs on Channel and passes after each
// notification (several pending ones wake one pass) and at least every Poll
// or when a debounce window is due.
func (d *Dispatcher) listen(ctx context.Context) error {
	return store.Listen(ctx, d.db, Channel, func(ctx context.Context, _ []string) time.Duration { return d.pass(ctx) })
}

// pass dispatches what is due and returns how long to wait for the next
// pass at most.
func (d *Dispatcher) pass(ctx context.Context) time.Duration {
	next, err := d.Pass(ctx)
	if err != nil && ctx.Err() == nil {
		d.log.Warn("trigger dispatch pass failed", zap.Error(err))
	}
	return min(max(next, 10*time.Millisecond), d.opts.Poll)
}

// Pass dispatches every trigger's due events once and returns when the next
// debounce window is due (at most Poll). Tests call it directly.
func (d *Dispatcher) Pass(ctx context.Context) (time.Duration, error) {
	next := d.opts.Poll
	var stats struct {
		Pending int64
		Lag     float64
	}
	if err := d.db.WithContext(ctx).Raw(`
SELECT count(*) AS pending,
       COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(e.created_at + make_interval(secs => t.debounce_seconds))), 0) AS lag
FROM trigger_events e JOIN triggers t ON t.id = e.trigger_id
WHERE e.processed_at IS NULL`).Scan(&stats).Error; err != nil {
		return next, translate("count pending events", err)
	}
	d.svc.metrics.pending.Set(float64(stats.Pending))
	d.svc.metrics.lag.Set(max(stats.Lag, 0))
	if stats.Pending == 0 {
		return next, nil
	}
	var ids []string
	if err := d.db.WithContext(ctx).Raw(`SELECT DISTINCT trigger_id FROM trigger_events WHERE processed_at IS NULL`).
		Scan(&ids).Error; err != nil {
		return next, translate("find pending events", err)
	}
	var errs []error
	for _, id := range ids {
		wait, err := d.dispatch(ctx, id)
		if err != nil {
			errs = append(errs, err)
		}
		next = min(next, wait)
	}
	return next, errors.Join(errs...)
}

// dispatch handles one trigger's pending events under its advisory lock.
func (d *Dispatcher) dispatch(ctx context.Context, id string) (time.Duration, error) {
	wait := d.opts.Poll
	err := d.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var locked bool
		if err := tx.Raw(`SELECT pg_try_advisory_xact_lock(hashtextextended('trigger_events:' || ?, 0))`, id).
			Scan(&locked).Error; err != nil {
			return err
		}
		if !locked {
			return nil // another dispatcher has it
		}
		var row store.Trigger
		err := tx.Take(&row, "id = ?", id).Error
		if errors.Is(err, gorm.ErrRecordNotFound) || (err == nil && (!row.Enabled || row.Kind != KindDatabase)) {
			// Disabled since: its pending changes are dropped.
			res := tx.Exec(`UPDATE trigger_events SET processed_at = clock_timestamp() WHERE trigger_id = ? AND processed_at IS NULL`, id)
			d.svc.metrics.dispatched.WithLabelValues("dropped").Add(float64(res.RowsAffected))
			return res.Error
		}
		if err != nil {
			return err
		}
		if row.DebounceSeconds == 0 {
			return d.each(ctx, tx, row)
		}
		wait, err = d.windows(ctx, tx, row)
		return err
	})
	if err != nil {
		return wait, translate("dispatch trigger "+id, err)
	}
	return wait, nil
}

// each creates one task per pending event (no debounce).
func (d *Dispatcher) each(ctx context.Context, tx *gorm.DB, row store.Trigger) error {
	var events []store.TriggerEvent
	if err := tx.Where("trigger_id = ? AND processed_at IS NULL", row.ID).Order("id").Limit(d.opts.Batch).
		Find(&events).Error; err != nil {
		return err
	}
	for _, e := range events {
		event := map[string]any{"table": e.Table, "operation": e.Operation, "row": e.RowData, "changes": e.Changes}
		if err := d.fire(ctx, tx, row, event, "db:event:"+strconv.FormatInt(e.ID, 10),
			`id = ?`, e.ID); err != nil {
			return err
		}
	}
	return nil
}

// windows creates one task per due debounce window: the pending events from
// the oldest one until debounce_seconds after it. It returns how long until
// the next window is due.
func (d *Dispatcher) windows(ctx context.Context, tx *gorm.DB, row store.Trigger) (time.Duration, error) {
	window := time.Duration(row.DebounceSeconds) * time.Second
	for {
		var first store.TriggerEvent
		err := tx.Where("trigger_id = ? AND processed_at IS NULL", row.ID).Order("created_at, id").Take(&first).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return d.opts.Poll, nil
		}
		if err != nil {
			return d.opts.Poll, err
		}
		var now time.Time
		if err := tx.Raw(`SELECT clock_timestamp()`).Scan(&now).Error; err != nil {
			return d.opts.Poll, err
		}
		due := first.CreatedAt.Add(window)
		if now.Before(due) {
			return due.Sub(now), nil
		}
		var sum sql.NullInt64
		if err := tx.Raw(`SELECT sum(changes) FROM trigger_events WHERE trigger_id = ? AND processed_at IS NULL AND created_at < ?`,
			row.ID, due).Scan(&sum).Error; err != nil {
			return d.opts.Poll, err
		}
		event := map[string]any{"table": first.Table, "operation": first.Operation, "row": first.RowData, "changes": sum.Int64}
		if err := d.fire(ctx, tx, row, event, "db:window:"+strconv.FormatInt(first.ID, 10),
			`(created_at < ? OR id = ?)`, due, first.ID); err != nil {
			return d.opts.Poll, err
		}
	}
}

// fire creates row's task for event and marks the pending events matching
// cond processed with it. Params the event cannot give valid values drop the
// events (recorded as a refused delivery); PostgreSQL or Redis being down
// leaves them pending for the next pass.
func (d *Dispatcher) fire(ctx context.Context, tx *gorm.DB, row store.Trigger, event map[string]any, key, cond string, args ...any) error {
	taskID, err := d.svc.fire(ctx, row, event, key)
	var r *Refusal
	switch {
	case errors.As(err, &r):
		d.svc.record(ctx, row, "", nil, r, nil)
		d.svc.metrics.dispatched.WithLabelValues("failed").Inc()
		d.log.Warn("database trigger event dropped", zap.String("trigger_id", row.ID), zap.String("reason", r.Reason))
	case err != nil:
		return err
	default:
		d.svc.record(ctx, row, "", &taskID, nil, nil)
		d.svc.metrics.dispatched.WithLabelValues("created").Inc()
	}
	var task *string
	if taskID != "" {
		task = &taskID
	}
	return tx.Exec(`UPDATE trigger_events SET processed_at = clock_timestamp(), task_id = ? WHERE trigger_id = ? AND processed_at IS NULL AND `+cond,
		append([]any{task, row.ID}, args...)...).Error
}

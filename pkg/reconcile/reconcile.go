// Package reconcile repairs the drift between PostgreSQL (the record of every
// task) and Asynq in Redis (its delivery): pending or retrying rows whose Asynq
// task is gone are enqueued again under the same id, running rows whose
// worker vanished are retried or failed as lost, and cancelled rows that
// Asynq still holds are removed from it. One replica reconciles at a time,
// under a PostgreSQL advisory lock.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/tracing"
)

// The kinds of repair, the label of taskforge_reconciler_repairs_total.
const (
	// KindRequeued: a pending or retrying row had no Asynq task; enqueued again.
	KindRequeued = "requeued"
	// KindLostRetried: a running row's worker vanished; retried with budget left.
	KindLostRetried = "lost_retried"
	// KindLostFailed: a running row's worker vanished with no budget left (or
	// Asynq already finished the task); failed with error kind "lost".
	KindLostFailed = "lost_failed"
	// KindCancelRemoved: a cancelled row's task was still in Asynq; removed.
	KindCancelRemoved = "cancel_removed"
	// KindCancelSignalled: a cancelled row's task was running in Asynq; its
	// worker was told to stop.
	KindCancelSignalled = "cancel_signalled"
)

// ErrorKindLost is the error kind of a task whose worker vanished.
const ErrorKindLost = "lost"

// lockKey is the advisory lock that lets one replica reconcile at a time.
const lockKey = 0x7ec0c11e

// Requeuer enqueues a pending or retrying row again under its id
// (taskservice.Service.Requeue).
type Requeuer interface {
	Requeue(ctx context.Context, row store.Task) error
}

// Options configure a Reconciler.
type Options struct {
	// Interval is the time between passes. If zero, 30 seconds.
	Interval time.Duration
	// LostGrace is added to a running task's timeout before it is declared
	// lost while Asynq still shows it active. If zero, 2 minutes.
	LostGrace time.Duration
	// MinAge leaves rows changed more recently alone: a creation between its
	// insert and its enqueue, or a worker between Asynq and its batched row
	// update. If zero, 10 seconds.
	MinAge time.Duration
	// CancelledWindow is how far back cancelled rows are checked. If zero,
	// 24 hours.
	CancelledWindow time.Duration
	// BatchSize is the rows read per query. If zero, 500.
	BatchSize int
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// Events receives an event for every row the reconciler changes. If nil,
	// none is published.
	Events lifecycle.Publisher
}

// Reconciler compares PostgreSQL and Asynq and repairs the differences.
type Reconciler struct {
	db        *gorm.DB
	redis     redis.UniversalClient
	inspector *asynq.Inspector
	requeuer  Requeuer
	log       *zap.Logger
	repairs   *prometheus.CounterVec
	lastPass  prometheus.Gauge
	opts      Options
	lc        *lifecycle.Lifecycle
}

// New returns a Reconciler; its repairs are counted in
// taskforge_reconciler_repairs_total{kind}, registered in reg when not nil.
// rc is the Redis that Asynq uses.
func New(db *gorm.DB, rc redis.UniversalClient, inspector *asynq.Inspector, requeuer Requeuer, log *zap.Logger, reg prometheus.Registerer, opts Options) (*Reconciler, error) {
	if db == nil || rc == nil || inspector == nil || requeuer == nil || log == nil {
		return nil, errors.New("reconcile: nil dependency")
	}
	if opts.Interval == 0 {
		opts.Interval = 30 * time.Second
	}
	if opts.LostGrace == 0 {
		opts.LostGrace = 2 * time.Minute
	}
	if opts.MinAge == 0 {
		opts.MinAge = 10 * time.Second
	}
	if opts.CancelledWindow == 0 {
		opts.CancelledWindow = 24 * time.Hour
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = 500
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	repairs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "taskforge_reconciler_repairs_total",
		Help: "Repairs of drift between PostgreSQL and Asynq, by kind.",
	}, []string{"kind"})
	// Every kind from the start, so that rates exist before the first repair.
	for _, k := range []string{KindRequeued, KindLostRetried, KindLostFailed, KindCancelRemoved, KindCancelSignalled} {
		repairs.WithLabelValues(k)
	}
	lastPass := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "taskforge_reconciler_last_pass_timestamp_seconds",
		Help: "Unix time at which this replica last finished a reconciliation pass holding the one-replica lock (0 before its first); the newest over the replicas is the last pass of the cluster.",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{repairs, lastPass} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("reconcile: metrics: %w", err)
			}
		}
	}
	lc, err := lifecycle.New(db, opts.Events)
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	return &Reconciler{db: db, redis: rc, inspector: inspector, requeuer: requeuer, log: log, repairs: repairs, lastPass: lastPass, opts: opts, lc: lc}, nil
}

// Run reconciles every Interval until ctx ends.
func (r *Reconciler) Run(ctx context.Context) error {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("reconcile pass incomplete", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Report counts one pass's repairs by kind. Ran is false when another replica
// held the lock.
type Report struct {
	Ran     bool
	Repairs map[string]int
}

// Pass runs one reconciliation if no other replica is running one. A pass
// that ran to its end sets taskforge_reconciler_last_pass_timestamp_seconds.
func (r *Reconciler) Pass(ctx context.Context) (Report, error) {
	// A span per pass; its requeues' enqueue spans are its children.
	ctx, span := tracing.Start(ctx, "reconcile")
	defer span.End()
	rep, err := r.pass(ctx)
	if err == nil && rep.Ran {
		r.lastPass.Set(float64(r.opts.Now().UnixNano()) / 1e9)
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.Bool("reconcile.ran", rep.Ran))
		for kind, n := range rep.Repairs {
			span.SetAttributes(attribute.Int("reconcile.repairs."+kind, n))
		}
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
	}
	return rep, err
}

func (r *Reconciler) pass(ctx context.Context) (Report, error) {
	rep := Report{Repairs: map[string]int{}}
	sqlDB, err := r.db.DB()
	if err != nil {
		return rep, err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return rep, fmt.Errorf("reconcile: lock: %w", store.Translate(err))
	}
	defer conn.Close()
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, lockKey).Scan(&got); err != nil {
		return rep, fmt.Errorf("reconcile: lock: %w", store.Translate(err))
	}
	if !got {
		return rep, nil
	}
	defer func() {
		// A fresh context: the lock must go even when ctx has ended.
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = conn.ExecContext(uctx, `SELECT pg_advisory_unlock($1)`, lockKey)
	}()
	rep.Ran = true
	// After Redis lost its data, Asynq's set of known queues is gone too, and
	// a client that already enqueued to a queue does not add it again: the
	// inspector would call every queue unknown.
	if err := queue.Register(ctx, r.redis); err != nil {
		return rep, fmt.Errorf("reconcile: %w", err)
	}
	if err := r.open(ctx, &rep); err != nil {
		return rep, err
	}
	if err := r.cancelled(ctx, &rep); err != nil {
		return rep, err
	}
	return rep, nil
}

// openRow is an open task with its current attempt's start.
type openRow struct {
	store.Task
	AttemptStartedAt *time.Time
}

// open checks every pending, retrying and running row against Asynq.
func (r *Reconciler) open(ctx context.Context, rep *Report) error {
	cutoff := r.opts.Now().Add(-r.opts.MinAge)
	after := ""
	for {
		var rows []openRow
		err := r.db.WithContext(ctx).Raw(`
SELECT t.*, a.started_at AS attempt_started_at
FROM tasks t LEFT JOIN task_attempts a ON a.task_id = t.id AND a.attempt = t.attempt
WHERE t.status IN ('pending', 'retrying', 'running') AND t.updated_at < ? AND t.id > ?
ORDER BY t.id LIMIT ?`, cutoff, after, r.opts.BatchSize).Scan(&rows).Error
		if err != nil {
			return fmt.Errorf("reconcile: open tasks: %w", store.Translate(err))
		}
		held, err := r.held(ctx, rows)
		if err != nil {
			return fmt.Errorf("reconcile: open tasks: %w", err)
		}
		for i := range rows {
			if held[i] {
				continue
			}
			if err := r.check(ctx, rows[i], rep); err != nil {
				return err
			}
		}
		if len(rows) < r.opts.BatchSize {
			return nil
		}
		after = rows[len(rows)-1].ID
	}
}

// held reports which pending or retrying rows of a batch Asynq holds, with
// one pipelined round trip for the batch: those need nothing (check would
// find them and return). The rest, and every running row, go through check,
// whose inspection (two round trips each) decides. A pass over many rows
// waiting for their time (tasks scheduled ahead) thus costs a round trip per
// BatchSize rows instead of two per row.
func (r *Reconciler) held(ctx context.Context, rows []openRow) ([]bool, error) {
	refs := make([]queue.TaskRef, 0, len(rows))
	at := make([]int, 0, len(rows))
	for i, row := range rows {
		if row.Status == tasks.StatusPending || row.Status == tasks.StatusRetrying {
			refs = append(refs, queue.TaskRef{Queue: row.Priority, ID: row.ID})
			at = append(at, i)
		}
	}
	out := make([]bool, len(rows))
	found, err := queue.Held(ctx, r.redis, refs)
	if err != nil {
		return nil, err
	}
	for j, ok := range found {
		out[at[j]] = ok
	}
	return out, nil
}

// check repairs one open row.
func (r *Reconciler) check(ctx context.Context, row openRow, rep *Report) error {
	info, err := r.inspector.GetTaskInfo(row.Priority, row.ID)
	missing := errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound)
	if err != nil && !missing {
		return fmt.Errorf("reconcile: inspect %s: %w", row.ID, err)
	}
	switch row.Status {
	case tasks.StatusPending, tasks.StatusRetrying:
		if !missing {
			return nil
		}
		err := r.requeuer.Requeue(ctx, row.Task)
		if errors.Is(err, taskservice.ErrNoBudget) {
			return r.lost(ctx, row.Task, "its queue entry vanished with no retry left", false, rep)
		}
		if err != nil {
			return fmt.Errorf("reconcile: requeue %s: %w", row.ID, err)
		}
		r.repaired(rep, KindRequeued, row.Task, "task re-enqueued: its queue entry was missing")
		return nil
	case tasks.StatusRunning:
		switch {
		case missing:
			return r.lost(ctx, row.Task, "its worker vanished and the queue no longer holds it", true, rep)
		case info.State == asynq.TaskStateCompleted || info.State == asynq.TaskStateArchived:
			// The queue finished with the task but the worker's record of the
			// outcome never arrived: running it again could repeat a completed
			// task, so it fails.
			return r.lost(ctx, row.Task, "the queue finished it but its worker's outcome was lost", false, rep)
		case info.State == asynq.TaskStateActive && r.overdue(row):
			_ = r.inspector.CancelProcessing(row.ID)
			return r.lost(ctx, row.Task, "its attempt outlived its timeout and grace", false, rep)
		}
	}
	return nil
}

// overdue reports whether a running row's attempt is past its timeout plus
// the grace.
func (r *Reconciler) overdue(row openRow) bool {
	start := row.UpdatedAt
	if row.AttemptStartedAt != nil {
		start = *row.AttemptStartedAt
	}
	limit := time.Duration(row.TimeoutSeconds)*time.Second + r.opts.LostGrace
	return r.opts.Now().Sub(start) > limit
}

// lost resolves a running row whose attempt is lost: with budget left (and
// requeue allowed) it goes to retrying and is enqueued again under its id;
// otherwise it fails with error kind "lost". The row and its attempt (closed
// as lost) move in one transaction, conditional on the row still being in
// that attempt, so a worker that reports meanwhile wins.
func (r *Reconciler) lost(ctx context.Context, row store.Task, why string, requeue bool, rep *Report) error {
	now := r.opts.Now().UTC()
	errJSON, _ := json.Marshal(map[string]any{"message": "task lost: " + why, "kind": ErrorKindLost, "attempt": row.Attempt})
	retry := requeue && taskservice.AttemptsLeft(row) >= 1
	// Failed is terminal: the lifecycle queues the completion callback with it.
	_, moved, err := r.lc.Lose(ctx, lifecycle.Loss{Row: row, Error: string(errJSON), Kind: ErrorKindLost,
		Message: "task lost: " + why, Retry: retry, At: now})
	if err != nil {
		return fmt.Errorf("reconcile: mark %s lost: %w", row.ID, err)
	}
	if !moved {
		return nil // the worker or an operator moved it meanwhile
	}
	if !retry {
		// Asynq may still hold a finished or archived copy; a failed task is
		// retried by hand, which enqueues it afresh.
		if _, err := queue.Remove(r.inspector, row.Priority, row.ID); err != nil {
			r.log.Debug("lost task left in the queue", zap.String("task_id", row.ID), zap.Error(err))
		}
		r.repaired(rep, KindLostFailed, row, "task failed as lost: "+why)
		return nil
	}
	row.Status, row.NextRetryAt = tasks.StatusRetrying, &now
	if err := r.requeuer.Requeue(ctx, row); err != nil {
		// The row is retrying with no queue entry: the next pass requeues it.
		return fmt.Errorf("reconcile: requeue lost %s: %w", row.ID, err)
	}
	r.repaired(rep, KindLostRetried, row, "task retried as lost: "+why)
	return nil
}

// cancelled removes recently cancelled tasks that Asynq still holds.
func (r *Reconciler) cancelled(ctx context.Context, rep *Report) error {
	now := r.opts.Now()
	after := ""
	for {
		var rows []store.Task
		err := r.db.WithContext(ctx).Model(&store.Task{}).Select("id", "priority", "status", "type").
			Where("status = ? AND updated_at > ? AND updated_at < ? AND id > ?", tasks.StatusCancelled,
				now.Add(-r.opts.CancelledWindow), now.Add(-r.opts.MinAge), after).
			Order("id").Limit(r.opts.BatchSize).Find(&rows).Error
		if err != nil {
			return fmt.Errorf("reconcile: cancelled tasks: %w", store.Translate(err))
		}
		for _, row := range rows {
			info, err := r.inspector.GetTaskInfo(row.Priority, row.ID)
			switch {
			case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
				continue
			case err != nil:
				return fmt.Errorf("reconcile: inspect %s: %w", row.ID, err)
			case info.State == asynq.TaskStateCompleted:
				continue // kept for its retention only
			case info.State == asynq.TaskStateActive:
				if err := r.inspector.CancelProcessing(row.ID); err != nil {
					return fmt.Errorf("reconcile: cancel %s: %w", row.ID, err)
				}
				r.repaired(rep, KindCancelSignalled, row, "running cancelled task told to stop")
			default:
				if _, err := queue.Remove(r.inspector, row.Priority, row.ID); err != nil {
					return fmt.Errorf("reconcile: %w", err)
				}
				r.repaired(rep, KindCancelRemoved, row, "cancelled task removed from the queue")
			}
		}
		if len(rows) < r.opts.BatchSize {
			return nil
		}
		after = rows[len(rows)-1].ID
	}
}

func (r *Reconciler) repaired(rep *Report, kind string, row store.Task, msg string) {
	rep.Repairs[kind]++
	r.repairs.WithLabelValues(kind).Inc()
	r.log.Info("reconciler repaired a task", zap.String("repair", kind), zap.String("detail", msg), zap.String("task_id", row.ID), zap.String("type", row.Type),
		zap.String("status", row.Status), zap.Int("attempt", row.Attempt))
}

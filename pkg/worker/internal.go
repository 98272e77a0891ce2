package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// runInternal runs an internal type (no tasks row, no lifecycle).
func (r *Runtime) runInternal(ctx context.Context, env *taskpb.Envelope) error {
	id, _ := asynq.GetTaskID(ctx)
	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	deadline, _ := ctx.Deadline()
	r.track(id, &activeTask{typ: env.GetType(), cancel: cancel, deadline: deadline})
	defer r.untrack(id)
	started := time.Now()
	rep := &logReporter{id: env.GetTaskId(), log: r.log.With(zap.String("task_id", env.GetTaskId()), zap.String("type", env.GetType()))}
	res := r.call(hctx, env, rep)
	r.metrics.duration.WithLabelValues(env.GetType()).Observe(time.Since(started).Seconds())
	if res.err == nil {
		r.metrics.processed.WithLabelValues(env.GetType(), outcomeCompleted).Inc()
		return nil
	}
	rep.log.Warn("internal task failed", zap.String("kind", res.kind), zap.Error(res.err), zap.String("stack", res.stack))
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	if job.IsPermanent(res.err) || retried >= maxRetry {
		r.metrics.processed.WithLabelValues(env.GetType(), outcomeFailed).Inc()
	} else {
		r.metrics.processed.WithLabelValues(env.GetType(), outcomeRetried).Inc()
		r.metrics.retries.WithLabelValues(env.GetType()).Inc()
	}
	if job.IsPermanent(res.err) {
		return fmt.Errorf("%w: %w", asynq.SkipRetry, res.err)
	}
	return res.err
}

// logReporter is the Reporter of internal tasks: no tasks row, so progress
// and logs go to the process log.
type logReporter struct {
	id  string
	log *zap.Logger
}

// TaskID implements job.Reporter.
func (l *logReporter) TaskID() string { return l.id }

// Attempt implements job.Reporter.
func (l *logReporter) Attempt() int { return 1 }

// Progress implements job.Reporter.
func (l *logReporter) Progress(fraction float64, step, message string) {
	l.log.Debug("internal task progress", zap.Float64("fraction", fraction), zap.String("step", step), zap.String("message", message))
}

// Log implements job.Reporter.
func (l *logReporter) Log(level, message string, fields map[string]any) {
	l.log.Info("internal task log", zap.String("level", level), zap.String("message", message), zap.Any("fields", fields))
}

// SetResult implements job.Reporter; internal tasks keep no result.
func (l *logReporter) SetResult(any) error { return nil }

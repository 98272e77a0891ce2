package schedule

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"
)

// RunnerOptions configure a Runner.
type RunnerOptions struct {
	// SyncInterval is how often schedules are re-read (registrations) and due
	// ticks made up. If zero, 5 seconds (not Asynq's 3-minute default: a
	// schedule change should show within seconds).
	SyncInterval time.Duration
}

// Runner is the scheduler's cron: Asynq's PeriodicTaskManager enqueues each
// enabled schedule's fire job at its ticks, and every sync the Runner makes up
// the ticks that no fire job created (a restart, a lost job, a
// daylight-saving gap that Asynq's cron skips). Several replicas may run at
// once: the fire protocol (see Firer) creates one task per tick whatever
// fires.
type Runner struct {
	mgr      *asynq.PeriodicTaskManager
	firer    *Firer
	log      *zap.Logger
	interval time.Duration
}

// NewRunner returns a Runner enqueueing through redis.
func NewRunner(redis asynq.RedisConnOpt, provider *Provider, firer *Firer, log *zap.Logger, opts RunnerOptions) (*Runner, error) {
	if redis == nil || provider == nil || firer == nil || log == nil {
		return nil, errors.New("schedule: nil dependency")
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = 5 * time.Second
	}
	mgr, err := asynq.NewPeriodicTaskManager(asynq.PeriodicTaskManagerOpts{
		PeriodicTaskConfigProvider: provider,
		RedisConnOpt:               redis,
		SyncInterval:               opts.SyncInterval,
		SchedulerOpts: &asynq.SchedulerOpts{
			Logger:   AsynqLogger(log),
			LogLevel: asynq.WarnLevel,
			PostEnqueueFunc: func(info *asynq.TaskInfo, err error) {
				if err != nil && !errors.Is(err, asynq.ErrDuplicateTask) {
					log.Warn("fire job not enqueued", zap.Error(err))
				}
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("schedule: periodic task manager: %w", err)
	}
	return &Runner{mgr: mgr, firer: firer, log: log, interval: opts.SyncInterval}, nil
}

// Run fires schedules until ctx ends, then stops Asynq's scheduler (waiting
// for an enqueue in flight) and returns.
func (r *Runner) Run(ctx context.Context) error {
	if err := r.mgr.Start(); err != nil {
		return fmt.Errorf("schedule: start: %w", err)
	}
	defer r.mgr.Shutdown()
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		if err := r.firer.CatchUp(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("schedule catch-up incomplete", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// AsynqLogger adapts a zap logger to Asynq's Logger; Asynq's Fatal is logged
// as an error, never exiting the process.
func AsynqLogger(log *zap.Logger) asynq.Logger { return asynqLog{log.Named("asynq")} }

type asynqLog struct{ l *zap.Logger }

func (a asynqLog) Debug(args ...any) { a.l.Debug("asynq", zap.String("detail", fmt.Sprint(args...))) }
func (a asynqLog) Info(args ...any)  { a.l.Info("asynq", zap.String("detail", fmt.Sprint(args...))) }
func (a asynqLog) Warn(args ...any)  { a.l.Warn("asynq", zap.String("detail", fmt.Sprint(args...))) }
func (a asynqLog) Error(args ...any) { a.l.Error("asynq", zap.String("detail", fmt.Sprint(args...))) }
func (a asynqLog) Fatal(args ...any) { a.l.Error("asynq", zap.String("detail", fmt.Sprint(args...))) }

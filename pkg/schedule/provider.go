package schedule

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// fireTimeoutSeconds bounds one fire job.
const fireTimeoutSeconds = 30

// Fire jobs go to the highest queue with a short timeout and a few quick
// retries (the registry's entry for tasks.TypeScheduleFire).
const (
	fireQueue      = queue.Critical
	fireTimeout    = fireTimeoutSeconds * time.Second
	fireMaxRetry   = 5
	maxUniqueTTL   = time.Hour
	providerBudget = 5 * time.Second
)

// Provider feeds Asynq's PeriodicTaskManager from the schedules table: one
// periodic fire job per enabled schedule, keyed by its cron and timezone, so
// that a change of either (or enabling or disabling it) re-registers the
// entry at the manager's next sync. Params, priority and the other task
// fields are read when the fire happens, so their edits need no
// re-registration at all.
type Provider struct {
	db  *gorm.DB
	log *zap.Logger
	// started is set after the first successful read.
	started bool
}

// NewProvider returns a Provider.
func NewProvider(db *gorm.DB, log *zap.Logger) (*Provider, error) {
	if db == nil || log == nil {
		return nil, errors.New("schedule: nil dependency")
	}
	return &Provider{db: db, log: log}, nil
}

// GetConfigs implements asynq.PeriodicTaskConfigProvider. Asynq fails its
// manager's Start when the first call errs, so while PostgreSQL has not
// answered yet the provider reports no schedules instead (the scheduler then
// starts, and the next sync registers them); later errors keep the current
// entries.
func (p *Provider) GetConfigs() ([]*asynq.PeriodicTaskConfig, error) {
	ctx, cancel := context.WithTimeout(context.Background(), providerBudget)
	defer cancel()
	var rows []store.Schedule
	if err := p.db.WithContext(ctx).Where("enabled").Order("id").Find(&rows).Error; err != nil {
		err = translate("list enabled schedules", err)
		if !p.started {
			p.log.Warn("schedules not read yet; none registered", zap.Error(err))
			return nil, nil
		}
		return nil, err
	}
	p.started = true
	out := make([]*asynq.PeriodicTaskConfig, 0, len(rows))
	for _, row := range rows {
		c, ferr := ParseCron(row.Cron, row.Timezone)
		if ferr != nil {
			p.log.Error("schedule has an invalid cron; not registered", zap.String("schedule_id", row.ID),
				zap.String("error", ferr.Message))
			continue
		}
		out = append(out, FireConfig(row.ID, c))
	}
	return out, nil
}

// FireConfig is the periodic fire job of one schedule. Its payload is a
// Taskforge envelope (the worker's runtime reads every job as one) of type
// tasks.TypeScheduleFire whose params name the schedule only (fire_time 0:
// the handler derives the tick); its task id "fire_<schedule id>" names the
// job in logs and is no tasks row. Unique with a
// TTL under the period keeps a second replica's enqueue of the same fire out
// of the queue while the first is waiting; the unique index on (schedule_id,
// fire_time) stays the final guard, since Asynq drops the lock as soon as the
// job completes and a one-second period allows no TTL below it.
func FireConfig(id string, c *Cron) *asynq.PeriodicTaskConfig {
	spec, _ := tasks.LookupAny(tasks.TypeScheduleFire)
	payload, _ := tasks.EncodeEnvelope("fire_"+id, tasks.TypeScheduleFire, &taskpb.ScheduleFireParams{ScheduleId: id},
		spec.Retry, fireTimeoutSeconds, "", 0)
	opts := []asynq.Option{
		asynq.Queue(fireQueue), asynq.MaxRetry(fireMaxRetry), asynq.Timeout(fireTimeout),
	}
	if ttl := min(c.MinGap()/2, maxUniqueTTL).Truncate(time.Second); ttl >= time.Second {
		opts = append(opts, asynq.Unique(ttl))
	}
	return &asynq.PeriodicTaskConfig{
		Cronspec: c.AsynqSpec(),
		Task:     asynq.NewTask(tasks.TypeScheduleFire, payload),
		Opts:     opts,
	}
}

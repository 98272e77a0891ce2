package schedule

import (
	"errors"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/workflow"
)

// WorkerHandlers builds what the worker registers for schedules: the fire
// job's handler, with a task service of its own on db and rc (the one
// creation path; its batch inserters live as long as the process). sc gives
// the catch-up limit, eg the egress rules that vet webhook URLs of the tasks
// created. keys opens the schedules' sealed params and seals the tasks'.
// metrics (NewMetrics on the worker's registry; nil: none) counts the fires,
// which the worker, not the scheduler, carries out.
func WorkerHandlers(db *gorm.DB, rc redis.UniversalClient, sc config.SchedulerConfig, eg config.EgressConfig, keys Keyring, metrics *Metrics, log *zap.Logger) (map[string]job.Handler, error) {
	if db == nil || rc == nil || keys == nil || log == nil {
		return nil, errors.New("schedule: nil dependency")
	}
	webhooks, err := egress.FromConfig(eg, egress.PurposeWebhooks)
	if err != nil {
		return nil, err
	}
	callbacks, err := egress.FromConfig(eg, egress.PurposeCallbacks)
	if err != nil {
		return nil, err
	}
	svc, err := taskservice.New(db, asynq.NewClientFromRedisClient(rc), asynq.NewInspectorFromRedisClient(rc), log,
		taskservice.Options{CheckURL: webhooks.CheckURL, CheckCallbackURL: callbacks.CheckURL, Sealer: keys})
	if err != nil {
		return nil, err
	}
	wopts := workflow.Options{}
	if keys != nil {
		wopts.Keyring = keys
	}
	workflows, err := workflow.New(db, svc, log.Named("workflows"), wopts)
	if err != nil {
		return nil, err
	}
	f, err := NewFirer(db, svc, log, FireOptions{CatchUp: sc.CatchUp, Keyring: keys, Metrics: metrics, Workflows: workflows})
	if err != nil {
		return nil, err
	}
	return map[string]job.Handler{tasks.TypeScheduleFire: NewFireJob(f)}, nil
}

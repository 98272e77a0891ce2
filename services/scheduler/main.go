// Command scheduler is Taskforge's scheduler: it fires the cron schedules
// stored in PostgreSQL through Asynq's PeriodicTaskManager (each fire becomes
// a task through the task service, once per schedule and fire time, whatever
// the number of replicas), makes up fires missed while no scheduler ran, and
// reconciles PostgreSQL with Asynq. /healthz, /readyz and /metrics are served
// on scheduler.admin_addr.
//
// Usage:
//
//	scheduler [--config file] [--print-config]
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/boot"
	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/health"
	"github.com/taskforge/taskforge/pkg/reconcile"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/trigger"
	"github.com/taskforge/taskforge/pkg/workflow"
)

// usage describes the service for --help.
const usage = `Fires the cron schedules stored in PostgreSQL (once per schedule and fire
time, whatever the number of replicas), makes up missed fires, and reconciles
PostgreSQL with Asynq; serves /healthz, /readyz and /metrics on
scheduler.admin_addr. It takes no command.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "scheduler:", err)
		stop()
		os.Exit(1)
	}
}

// run loads the configuration and runs the scheduler until ctx ends, then
// stops within scheduler.shutdown_timeout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Configuration.
	st, err := boot.Start(boot.Service{Name: "scheduler", Usage: usage}, args, stdout, stderr)
	if err != nil || st.Done {
		return err
	}
	cfg, log := st.Config, st.Log
	defer func() { _ = log.Sync() }()
	// Last: the spans of the drain are exported too.
	defer st.StopTracing(cfg.Scheduler.ShutdownTimeout)
	sc := cfg.Scheduler

	// Dependencies: PostgreSQL, Redis, readiness and metrics.
	deps, err := boot.Open(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = deps.Close() }()

	// Business: the task service (the one creation path), the fire protocol,
	// Asynq's cron and the reconciler.
	// Webhook and callback URLs are vetted at creation with their purposes'
	// allow-lists; the worker's guards check them again when dialling.
	webhooks, err := egress.FromConfig(cfg.Egress, egress.PurposeWebhooks)
	if err != nil {
		return err
	}
	callbackGuard, err := egress.FromConfig(cfg.Egress, egress.PurposeCallbacks)
	if err != nil {
		return err
	}
	client := asynq.NewClientFromRedisClient(deps.RedisClient)
	inspector := asynq.NewInspectorFromRedisClient(deps.RedisClient)
	// Secret params: schedules keep them sealed; each fire opens them and the
	// task service seals them again for the task.
	keys, err := boot.Keyring(cfg, log)
	if err != nil {
		return err
	}
	// Live events: published after every change this process commits.
	events, err := event.NewPublisher(deps.RedisClient, log.Named("events"), deps.Registry, event.FromConfig(cfg.Events))
	if err != nil {
		return err
	}
	defer func() {
		ectx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		events.Close(ectx)
	}()
	svc, err := taskservice.New(deps.DB, client, inspector, log, taskservice.Options{CheckURL: webhooks.CheckURL, CheckCallbackURL: callbackGuard.CheckURL, Sealer: keys, Events: events})
	if err != nil {
		return err
	}
	defer svc.Close()
	schedules, err := schedule.NewSealedStore(deps.DB, keys)
	if err != nil {
		return err
	}
	// Workflows: the scheduler advances them as their steps end (a
	// notification from PostgreSQL) and sweeps those left due by a crash; a
	// schedule's fire may start one.
	workflowMetrics, err := workflow.NewMetrics(deps.Registry)
	if err != nil {
		return err
	}
	workflows, err := workflow.New(deps.DB, svc, log.Named("workflows"), workflow.Options{
		MaxSteps: cfg.Workflows.MaxSteps, Keyring: keys, Metrics: workflowMetrics})
	if err != nil {
		return err
	}

	firer, err := schedule.NewFirer(deps.DB, svc, log, schedule.FireOptions{
		CatchUp: sc.CatchUp, Metrics: schedule.NewMetrics(deps.Registry), Keyring: keys, Workflows: workflows,
	})
	if err != nil {
		return err
	}
	provider, err := schedule.NewProvider(deps.DB, log)
	if err != nil {
		return err
	}
	runner, err := schedule.NewRunner(deps.RedisOpt, provider, firer, log, schedule.RunnerOptions{SyncInterval: sc.SyncInterval})
	if err != nil {
		return err
	}
	reconciler, err := reconcile.New(deps.DB, deps.RedisClient, inspector, svc, log, deps.Registry, reconcile.Options{
		Interval: sc.ReconcileInterval, LostGrace: sc.LostGrace, Events: events,
	})
	if err != nil {
		return err
	}
	// Database triggers: the change events PostgreSQL records become tasks;
	// every replica may run the dispatcher (a trigger's events are handled
	// under an advisory lock, each task under an idempotency key).
	triggerStore, err := trigger.NewStore(deps.DB, keys, cfg.Notify.CallbackSecretOverlap)
	if err != nil {
		return err
	}
	triggers, err := trigger.New(triggerStore, svc, log.Named("triggers"), trigger.NewMetrics(deps.Registry))
	if err != nil {
		return err
	}
	// A trigger's event may start a workflow (the database triggers).
	triggers.StartWorkflowsWith(workflows)
	dispatcher, err := trigger.NewDispatcher(triggers, trigger.DispatcherOptions{})
	if err != nil {
		return err
	}

	// Admin endpoints.
	admin, err := health.Listen(sc.AdminAddr, deps.Checker.Mux(deps.Registry))
	if err != nil {
		return fmt.Errorf("scheduler: listen %s: %w", sc.AdminAddr, err)
	}
	serverErr := make(chan error, 1)
	go func() { serverErr <- admin.Serve() }()
	log.Info("scheduler started", zap.String("admin_addr", admin.Addr()),
		zap.Duration("sync_interval", sc.SyncInterval), zap.Int("catch_up", sc.CatchUp))

	// Work runs under its own context so that shutdown can be bounded.
	work, stopWork := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	workErr := make(chan error, 5)
	start := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(work); err != nil {
				workErr <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	if sc.SeedSchedules {
		start("seed", func(ctx context.Context) error { return seed(ctx, schedules, sc.SyncInterval, log) })
	}
	start("cron", runner.Run)
	start("reconciler", reconciler.Run)
	start("triggers", dispatcher.Run)
	start("workflows", func(ctx context.Context) error { return workflows.Run(ctx, cfg.Workflows.Sweep) })

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("scheduler stopping")
	case err := <-serverErr:
		runErr = fmt.Errorf("scheduler: admin server: %w", err)
	case err := <-workErr:
		runErr = err
	}
	return errors.Join(runErr, shutdown(stopWork, &wg, admin, sc.ShutdownTimeout))
}

// shutdown stops the work and the admin server within timeout.
func shutdown(stopWork context.CancelFunc, wg *sync.WaitGroup, admin *health.Server, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stopWork()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var errs []error
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, errors.New("scheduler: work did not stop within scheduler.shutdown_timeout"))
	}
	if err := admin.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("scheduler: admin shutdown: %w", err))
	}
	return errors.Join(errs...)
}

// seed creates the specification's schedules on first start, retrying while
// PostgreSQL is unreachable.
func seed(ctx context.Context, schedules *schedule.Store, every time.Duration, log *zap.Logger) error {
	for {
		n, err := schedules.SeedDefaults(ctx, schedule.Seeds)
		if err == nil {
			if n > 0 {
				log.Info("default schedules created", zap.Int("count", n))
			}
			return nil
		}
		if !errors.Is(err, schedule.ErrUnavailable) {
			log.Error("default schedules not created", zap.Error(err))
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

// Command worker is Taskforge's worker: Asynq servers on the four priority
// queues whose every task goes through the lifecycle runtime of pkg/worker
// (state mirrored into PostgreSQL, progress and logs, retries, cancellation,
// type limits), plus the callback outbox. /healthz, /readyz and /metrics are
// served on worker.admin_addr.
//
// Usage:
//
//	worker [--config file] [--print-config]
//
// On SIGTERM or SIGINT the worker stops fetching, gives running tasks
// worker.shutdown_timeout to finish, pushes the others back to their queue and
// exits. Kubernetes' terminationGracePeriodSeconds must exceed
// worker.shutdown_timeout (by 15 s or more).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/boot"
	"github.com/taskforge/taskforge/pkg/callbackkey"
	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/health"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/worker"
	"github.com/taskforge/taskforge/services/worker/internal/handlers"
)

// usage describes the service for --help.
const usage = `Runs the Asynq servers on the four priority queues (critical, high, normal,
low) and the completion-callback outbox; serves /healthz, /readyz and /metrics
on worker.admin_addr. It takes no command.

On SIGTERM or SIGINT it stops fetching, gives running tasks
worker.shutdown_timeout to finish, pushes the others back and exits.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		stop()
		os.Exit(1)
	}
}

// run loads the configuration and processes tasks until ctx ends, then drains.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Configuration.
	st, err := boot.Start(boot.Service{Name: "worker", Usage: usage}, args, stdout, stderr)
	if err != nil || st.Done {
		return err
	}
	cfg, log := st.Config, st.Log
	defer func() { _ = log.Sync() }()
	// Last: the spans of the drain are exported too.
	defer st.StopTracing(cfg.Worker.ShutdownTimeout)
	wc := cfg.Worker

	// Dependencies: PostgreSQL, Redis, readiness and metrics, the egress
	// guard and the keyring of secret params.
	deps, err := boot.Open(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = deps.Close() }()
	// One guard per purpose, each with its allow-list.
	webhooks, err := egress.FromConfig(cfg.Egress, egress.PurposeWebhooks)
	if err != nil {
		return err
	}
	notifyGuard, err := egress.FromConfig(cfg.Egress, egress.PurposeNotify)
	if err != nil {
		return err
	}
	callbackGuard, err := egress.FromConfig(cfg.Egress, egress.PurposeCallbacks)
	if err != nil {
		return err
	}
	keyring, err := boot.Keyring(cfg, log)
	if err != nil {
		return err
	}
	inspector := asynq.NewInspectorFromRedisClient(deps.RedisClient)

	// Result storage: files of backups and reports, and JSON results too
	// large for the task row.
	// The result cache is only forgotten here: a new result file or the
	// cleanup drops a task's entry.
	resultCache, err := result.CacheFromConfig(deps.RedisClient, cfg.Storage.Cache, nil)
	if err != nil {
		return err
	}
	results, err := result.FromConfig(ctx, deps.DB, cfg.Storage, cfg.API.PublicURL, resultCache)
	if err != nil {
		return err
	}
	if err := results.RegisterMetrics(deps.Registry); err != nil {
		return err
	}

	// Handlers, one registration place.
	hs, err := handlers.Build(handlers.Deps{
		Config: cfg, DB: deps.DB, Redis: deps.RedisClient, HTTP: webhooks.Client(), Notify: notifyGuard.Client(), Keyring: keyring, Results: results, ScheduleMetrics: schedule.NewMetrics(deps.Registry), Log: log,
	})
	if err != nil {
		return err
	}
	if os.Getenv(handlers.EnvTestHandlers) == "1" {
		log.Warn("scripted test handlers registered", zap.String("env", handlers.EnvTestHandlers))
		for typ, h := range handlers.Testing() {
			hs[typ] = h
		}
	}
	registered := make([]string, 0, len(hs))
	for typ := range hs {
		registered = append(registered, typ)
	}
	log.Info("handlers registered", zap.Strings("types", registered))

	// The callback outbox and the lifecycle runtime.
	// Each owner's callbacks are signed with the owner's own secret.
	callbackKeys, err := callbackkey.New(deps.DB, keyring, cfg.Notify.CallbackSecretOverlap)
	if err != nil {
		return err
	}
	callbacks, err := worker.NewCallbacks(deps.DB, callbackGuard.Client(), callbackKeys, log.Named("callbacks"), worker.CallbackOptions{
		Redact: taskservice.RedactParams, Registerer: deps.Registry,
	})
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
	rt, err := worker.New(deps.DB, deps.RedisClient, inspector, log, worker.Options{
		Handlers: hs, FlushInterval: wc.FlushInterval, FlushGap: wc.FlushGap, MaxMessages: wc.MaxMessages, TypeLimits: wc.TypeLimits,
		MaxResultBytes: cfg.Storage.InlineMaxBytes, Results: results, Opener: keyringOpener{keyring},
		Registerer: deps.Registry, OnTerminal: callbacks.Poke, Events: events,
	})
	if err != nil {
		return err
	}

	// Admin endpoints.
	admin, err := health.Listen(wc.AdminAddr, deps.Checker.Mux(deps.Registry))
	if err != nil {
		return fmt.Errorf("worker: listen %s: %w", wc.AdminAddr, err)
	}
	adminErr := make(chan error, 1)
	go func() { adminErr <- admin.Serve() }()

	// Asynq servers: each fetches one task at a time, so several raise the
	// throughput of short tasks; the concurrency is shared among them.
	servers := make([]*asynq.Server, wc.Servers)
	for i := range servers {
		n := wc.Concurrency / wc.Servers
		if i < wc.Concurrency%wc.Servers {
			n++
		}
		servers[i] = asynq.NewServer(deps.RedisOpt, rt.AsynqConfig(worker.ServerOptions{
			Concurrency: max(n, 1), QueueWeights: wc.QueueWeights, StrictPriority: wc.StrictPriority,
			ShutdownTimeout: wc.ShutdownTimeout, TaskCheckInterval: wc.TaskCheckInterval,
		}))
		if err := servers[i].Start(rt); err != nil {
			return fmt.Errorf("worker: start asynq server: %w", err)
		}
	}
	var burst *worker.Burst
	if wc.BurstPoll > 0 {
		burst = rt.StartBurst(deps.RedisOpt, worker.BurstOptions{
			Server: worker.ServerOptions{QueueWeights: wc.QueueWeights, StrictPriority: wc.StrictPriority,
				ShutdownTimeout: wc.ShutdownTimeout},
			Poll: wc.BurstPoll, Linger: wc.BurstLinger, Concurrency: max(wc.Concurrency/10, 1),
		})
	}
	cbCtx, cbStop := context.WithCancel(context.Background())
	cbDone := make(chan struct{})
	go func() { defer close(cbDone); callbacks.Run(cbCtx) }()
	log.Info("worker started", zap.String("worker_id", rt.WorkerID()), zap.Int("servers", wc.Servers),
		zap.Int("concurrency", wc.Concurrency), zap.String("admin_addr", admin.Addr()))

	select {
	case <-ctx.Done():
	case err := <-adminErr:
		log.Error("admin server stopped", zap.Error(err))
	}

	// Drain: stop fetching everywhere at once, then give running tasks
	// shutdown_timeout before Asynq pushes them back to their queue.
	log.Info("worker draining", zap.Duration("shutdown_timeout", wc.ShutdownTimeout))
	var wg sync.WaitGroup
	for _, s := range servers {
		s.Stop()
	}
	for _, s := range servers {
		wg.Add(1)
		go func() { defer wg.Done(); s.Shutdown() }()
	}
	if burst != nil {
		wg.Add(1)
		go func() { defer wg.Done(); burst.Close() }()
	}
	wg.Wait()
	closeCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	closeErr := rt.Close(closeCtx)
	cbStop()
	<-cbDone
	if err := admin.Shutdown(closeCtx); err != nil {
		log.Warn("admin server shutdown", zap.Error(err))
	}
	log.Info("worker stopped")
	return closeErr
}

// keyringOpener adapts the keyring to worker.Opener: sealed values carry their
// key id, so the envelope's is not needed.
type keyringOpener struct{ k *secret.Keyring }

// Open implements worker.Opener.
func (o keyringOpener) Open(_ string, msg proto.Message) error { return o.k.Open(msg) }

// Command api is Taskforge's REST API: tasks, the task type registry, queues and
// statistics under /api/v1, with /healthz, /readyz and /metrics.
//
// Usage:
//
//	api [--config file] [serve]     serve the API (the default)
//	api [--config file] migrate up  apply pending database migrations
//	api [--config file] migrate down [N]
//	                                roll back the N (default 1) latest migrations
//	api [--config file] migrate status
//	api [--config file] seed-demo   load the demo portfolios, assets and a year of prices
//	api [--config file] restore (--result <id> | --file <path>) [--clean]
//	                                load a backup_data archive (see docs/BACKUP.md)
//	api [--config file] apikey create --name N --role viewer|operator|admin [--expires-in 720h]
//	                                print a new API key (shown once)
//	api [--config file] apikey list
//	api [--config file] apikey revoke ID
package main

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/boot"
	"github.com/taskforge/taskforge/pkg/callbackkey"
	"github.com/taskforge/taskforge/pkg/clientip"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/maintenance"
	"github.com/taskforge/taskforge/pkg/portfolio"
	"github.com/taskforge/taskforge/pkg/pushsub"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/ratelimit"
	"github.com/taskforge/taskforge/pkg/recipient"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/result/httpresult"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/tracing"
	"github.com/taskforge/taskforge/pkg/trigger"
	"github.com/taskforge/taskforge/pkg/upload"
	"github.com/taskforge/taskforge/pkg/workflow"
	"github.com/taskforge/taskforge/services/api/internal/live"
	"github.com/taskforge/taskforge/services/api/internal/server"
)

// maxHeaderBytes caps a request's headers: room for a JWT of
// auth.MaxTokenBytes and ordinary headers, far below net/http's 1 MiB.
const maxHeaderBytes = 64 << 10

// usage lists the commands for --help.
const usage = `Commands:
  serve                      serve the API (the default)
  migrate up                 apply pending database migrations
  migrate down [N]           roll back the N (default 1) most recently applied
                             migrations, newest first; a down that drops a
                             column or table loses its data for good (migrate
                             status marks them; see docs/OPERATIONS.md)
  migrate status             list the migrations: applied (when) or pending,
                             and which downs drop data
  seed-demo                  load the demo portfolios, assets and a year of prices
  restore (--result ID | --file PATH) [--clean]
                             load a backup_data archive (see docs/BACKUP.md)
  apikey create --name N --role viewer|operator|admin [--expires-in 720h]
                             print a new API key (shown once)
  apikey list                list the API keys
  apikey revoke ID           revoke an API key at once
  help                       print this help

"taskforge-api COMMAND --help" describes a command's own flags.`

// openapiDoc is the API's contract, served at /api/v1/openapi.yaml.
//
//go:embed openapi.yaml
var openapiDoc []byte

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		stop()
		os.Exit(1)
	}
}

// run reads the configuration and runs the subcommand (serve by default).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	st, err := boot.Start(boot.Service{Name: "api", Usage: usage, Commands: true}, args, stdout, stderr)
	if err != nil || st.Done {
		return err
	}
	flags, cfg, log := st.Flags, st.Config, st.Log
	defer func() { _ = log.Sync() }()
	// Last: the spans of the drain are exported too.
	defer st.StopTracing(cfg.API.ShutdownTimeout)

	cmd, rest := "serve", []string(nil)
	if len(flags.Args) > 0 {
		cmd, rest = flags.Args[0], flags.Args[1:]
	}
	if helpRequested(rest) {
		return commandHelp(cmd, rest, stdout)
	}
	switch cmd {
	case "serve":
		return serve(ctx, cfg, log)
	case "migrate":
		return migrate(ctx, cfg, rest, stdout)
	case "seed-demo":
		return seedDemo(ctx, cfg, stdout)
	case "restore":
		return restore(ctx, cfg, rest, stdout)
	case "apikey":
		return apikey(ctx, cfg, rest, stdout)
	default:
		return fmt.Errorf("unknown command %q: want serve, migrate up, migrate down, migrate status, seed-demo, restore or apikey (see taskforge-api --help)", cmd)
	}
}

// helpRequested reports whether a command's arguments ask for its help.
func helpRequested(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help", "help":
			return true
		}
	}
	return false
}

// commandHelp prints one command's usage (its lines of the service's usage,
// and for apikey create its flags) without touching any database.
func commandHelp(cmd string, args []string, stdout io.Writer) error {
	if cmd == "apikey" && len(args) > 0 && args[0] == "create" {
		fs, _ := apikeyCreateFlags()
		fmt.Fprintln(stdout, "Usage: taskforge-api apikey create --name N --role viewer|operator|admin [--expires-in 720h]")
		fmt.Fprintln(stdout, "\nCreates an API key and prints it once; audited with the actor \"cli\".\n\nFlags:")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return nil
	}
	var lines []string
	for _, line := range strings.Split(usage, "\n") {
		if strings.HasPrefix(line, "  "+cmd+" ") || (len(lines) > 0 && strings.HasPrefix(line, "      ")) {
			lines = append(lines, line)
		} else if len(lines) > 0 && !strings.HasPrefix(line, "  "+cmd) {
			break
		}
	}
	if len(lines) == 0 {
		return fmt.Errorf("unknown command %q (see taskforge-api --help)", cmd)
	}
	_, err := fmt.Fprintf(stdout, "Usage of taskforge-api %s:\n%s\n", cmd, strings.Join(lines, "\n"))
	return err
}

// restore loads a backup archive from result storage or a file.
func restore(ctx context.Context, cfg config.Config, args []string, stdout io.Writer) error {
	deps, err := boot.Open(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = deps.Close() }()
	results, err := result.FromConfig(ctx, deps.DB, cfg.Storage, cfg.API.PublicURL, nil)
	if err != nil {
		return err
	}
	return maintenance.RestoreCommand(ctx, args, deps.DB, cfg.Database.URL, results, stdout)
}

// seedDemo loads the demo data set (idempotent) with the configured price provider.
func seedDemo(ctx context.Context, cfg config.Config, stdout io.Writer) error {
	provider, err := portfolio.ProviderFromConfig(cfg.Prices, cfg.Egress)
	if err != nil {
		return err
	}
	deps, err := boot.Open(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = deps.Close() }()
	sum, err := portfolio.SeedDemo(ctx, deps.DB, provider)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, sum)
	return err
}

// authenticator is how callers are recognised: the bootstrap admin key (if
// configured), API keys (checked against PostgreSQL on every request, so a
// revocation takes effect at once) and JWTs (when auth.jwt_secret or
// auth.jwks_url is set).
func authenticator(cfg config.Config, keys *auth.KeyStore) (*auth.Service, error) {
	return auth.ServiceFromConfig(cfg.Auth, cfg.Egress, keys)
}

// serve runs the API until ctx ends, then drains within api.shutdown_timeout.
func serve(ctx context.Context, cfg config.Config, log *zap.Logger) error {
	// Dependencies: PostgreSQL, Redis, readiness and metrics.
	deps, err := boot.Open(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = deps.Close() }()
	if cfg.API.MigrateOnStart {
		sqlDB, err := deps.DB.DB()
		if err != nil {
			return err
		}
		if err := store.Migrate(ctx, sqlDB); err != nil {
			return err
		}
		log.Info("migrations applied")
	}
	if err := queue.Register(ctx, deps.RedisClient); err != nil {
		log.Warn("queues not registered; Redis is unreachable for now", zap.Error(err))
	}

	// Business: the task service.
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
	// The request path's script calls (each created task's enqueue, each
	// caller's rate-limit check) share round trips to Redis under load.
	hot := queue.Pipelined(deps.RedisOpt, queue.PipelineOptions{})
	defer func() { _ = hot.Close() }()
	client := asynq.NewClientFromRedisClient(hot)
	defer func() { _ = client.Close() }()
	inspector := asynq.NewInspector(deps.RedisOpt)
	defer func() { _ = inspector.Close() }()
	sealer, err := boot.Keyring(cfg, log)
	if err != nil {
		return err
	}
	// Live events: published after every change this process commits, and
	// read by the hub that feeds this replica's event streams.
	events, err := event.NewPublisher(deps.RedisClient, log.Named("events"), deps.Registry, event.FromConfig(cfg.Events))
	if err != nil {
		return err
	}
	defer func() {
		ectx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		events.Close(ectx)
	}()
	// The result cache: ended tasks' results served from Redis; a retry
	// drops the task's entry in its transaction and again once committed.
	resultCache, err := result.CacheFromConfig(deps.RedisClient, cfg.Storage.Cache, deps.Registry)
	if err != nil {
		return err
	}
	// The notification policy: who each role may notify, and how many.
	recipients, err := recipient.New(cfg.Notify.Policy, deps.DB)
	if err != nil {
		return err
	}
	tasks, err := taskservice.New(deps.DB, client, inspector, log, taskservice.Options{CheckURL: webhooks.CheckURL, CheckCallbackURL: callbackGuard.CheckURL, Sealer: sealer,
		Events: lifecycle.Publishers{events, resultCache}, Results: resultCache, EnqueueTimeout: cfg.API.EnqueueTimeout, Recipients: recipients})
	if err != nil {
		return err
	}
	defer tasks.Close()
	eventReader, err := event.NewReader(deps.RedisClient, event.FromConfig(cfg.Events))
	if err != nil {
		return err
	}
	hub, err := live.New(eventReader, tasks.Load, server.RenderTask, log.Named("live"), live.Options{
		MaxStreams: cfg.Events.MaxStreams, MaxPerCaller: cfg.Events.MaxStreamsPerCaller, Buffer: cfg.Events.Buffer,
		Registerer: deps.Registry,
	})
	if err != nil {
		return err
	}
	hub.Start(context.Background())
	defer hub.Shutdown()

	// Security: callers, the audit log and the rate limiter shared by every
	// replica through Redis.
	keys, err := auth.NewKeyStore(deps.DB)
	if err != nil {
		return err
	}
	keys.CacheFor(cfg.Auth.KeyCacheTTL)
	if cfg.Auth.KeyCacheTTL > 0 {
		// Cached keys are forgotten as soon as a change of theirs is
		// announced, by any replica or by hand (auth.APIKeysChannel).
		wctx, stopWatch := context.WithCancel(context.Background())
		waitWatch := keys.Watch(wctx, func(err error) {
			log.Warn("listening for API key changes failed; keys are read on every request until it is back", zap.Error(err))
		})
		defer func() { stopWatch(); waitWatch() }()
	}
	authn, err := authenticator(cfg, keys)
	if err != nil {
		return err
	}
	auditLog, err := audit.New(deps.DB)
	if err != nil {
		return err
	}
	defer auditLog.Close()
	// The limiter has its own short deadline on Redis and falls back to this
	// replica's local limits while Redis is away (see package ratelimit).
	limiter, err := ratelimit.NewWithOptions(hot, ratelimit.Options{
		Timeout: cfg.RateLimit.RedisTimeout, LocalFor: cfg.RateLimit.LocalFor, Registerer: deps.Registry,
	})
	if err != nil {
		return err
	}

	// Results: stored files and their download links.
	results, err := result.FromConfig(ctx, deps.DB, cfg.Storage, cfg.API.PublicURL, resultCache)
	if err != nil {
		return err
	}
	if err := results.RegisterMetrics(deps.Registry); err != nil {
		return err
	}
	resultRoutes, err := httpresult.New(deps.DB, results, log.Named("results"))
	if err != nil {
		return err
	}

	// Schedules: stored in PostgreSQL, fired by the scheduler service.
	scheduleStore, err := schedule.NewSealedStore(deps.DB, sealer)
	if err != nil {
		return err
	}

	// API.
	clientIP, err := clientip.FromConfig(cfg)
	if err != nil {
		return err
	}
	priorities, err := auth.NewPriorityPolicy(cfg.Auth.MaxPriority)
	if err != nil {
		return err
	}
	// Callback signing secrets, one per principal, rotated by their owner.
	callbackKeys, err := callbackkey.New(deps.DB, sealer, cfg.Notify.CallbackSecretOverlap)
	if err != nil {
		return err
	}
	// Push subscriptions: endpoints are vetted with the notify purpose's
	// allow-list, the one the worker's push senders dial through.
	notifyGuard, err := egress.FromConfig(cfg.Egress, egress.PurposeNotify)
	if err != nil {
		return err
	}
	pushSubs, err := pushsub.NewStore(deps.DB, notifyGuard.CheckURL)
	if err != nil {
		return err
	}
	// Event triggers: webhook secrets sealed as the callback secrets are,
	// with the same overlap after a rotation.
	triggerStore, err := trigger.NewStore(deps.DB, sealer, cfg.Notify.CallbackSecretOverlap)
	if err != nil {
		return err
	}
	triggers, err := trigger.New(triggerStore, tasks, log.Named("triggers"), trigger.NewMetrics(deps.Registry))
	if err != nil {
		return err
	}
	// Workflows: a step's params wait sealed, as a schedule's do.
	workflowMetrics, err := workflow.NewMetrics(deps.Registry)
	if err != nil {
		return err
	}
	workflows, err := workflow.New(deps.DB, tasks, log.Named("workflows"), workflow.Options{
		MaxSteps: cfg.Workflows.MaxSteps, Keyring: sealer, Metrics: workflowMetrics})
	if err != nil {
		return err
	}
	// A trigger's event may start a workflow (the webhook hooks).
	triggers.StartWorkflowsWith(workflows)
	// Uploads: files for tasks to consume, in the results' storage.
	uploads, err := upload.New(deps.DB, results, upload.Options{
		MaxBytes: cfg.API.UploadLimit, TTL: cfg.Storage.ResultTTL, LinkTTL: cfg.Storage.LinkTTL})
	if err != nil {
		return err
	}
	handler, err := server.New(server.Options{
		Tasks: tasks, Auth: authn, Checker: deps.Checker, Registry: deps.Registry, Log: log,
		OpenAPI: openapiDoc, BodyLimit: cfg.API.BodyLimit, Results: resultRoutes,
		Schedules: scheduleStore, Keys: keys, Audit: auditLog,
		Limiter: limiter, RateLimit: cfg.RateLimit, PerAddress: cfg.RateLimit.PerAddress,
		CORSAllowOrigins: cfg.API.CORSAllowOrigins, HSTS: cfg.API.HSTS, ClientIP: clientIP,
		Priorities: priorities, AuditMinRetention: cfg.Retention.AuditMin, CallbackKeys: callbackKeys,
		Push: pushSubs, VAPIDPublicKey: cfg.Push.VAPIDPublicKey, Uploads: uploads, UploadTimeout: cfg.API.UploadTimeout, Triggers: triggers, UploadObserver: triggers,
		Workflows: workflows,
		Live:      hub, Streams: server.StreamOptions{KeepAlive: cfg.Events.KeepAlive, WriteTimeout: cfg.Events.WriteTimeout,
			History: cfg.Events.History, ResumeMax: cfg.Events.ResumeMax},
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.API.Addr)
	if err != nil {
		return fmt.Errorf("api: listen %s: %w", cfg.API.Addr, err)
	}
	srv := &http.Server{
		// With tracing on, a server span per request (named after its route).
		Handler: tracing.Handler(handler, "api"), ReadHeaderTimeout: min(cfg.API.ReadTimeout, 10*time.Second), ReadTimeout: cfg.API.ReadTimeout,
		WriteTimeout: cfg.API.WriteTimeout, IdleTimeout: cfg.API.IdleTimeout, MaxHeaderBytes: maxHeaderBytes,
		ErrorLog: zap.NewStdLog(log.Named("http")),
	}
	// Shutdown waits for idle connections: the event streams end first, so
	// that their clients reconnect elsewhere.
	srv.RegisterOnShutdown(hub.Shutdown)
	serveShutdownFast(srv)
	log.Info("api listening", zap.String("addr", ln.Addr().String()))
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}

	// Shutdown: stop accepting, finish open requests within the deadline.
	log.Info("api shutting down", zap.Duration("timeout", cfg.API.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), cfg.API.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	log.Info("api stopped")
	return nil
}

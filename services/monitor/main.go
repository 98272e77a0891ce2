// Command monitor serves Asynqmon under /monitoring and Prometheus metrics about
// the queues (taskforge_queue_*), with /healthz and /readyz, on monitor.addr.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/boot"
	"github.com/taskforge/taskforge/pkg/clientip"
	"github.com/taskforge/taskforge/pkg/health"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/ratelimit"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/services/monitor/internal/dashboard"
	"github.com/taskforge/taskforge/services/monitor/internal/queuemetrics"
	"github.com/taskforge/taskforge/services/monitor/internal/redismem"
)

// usage describes the service for --help.
const usage = `Serves Asynqmon under /monitoring (admins only) and the queue metrics
(taskforge_queue_*) at /metrics, with /healthz and /readyz, on monitor.addr.
It takes no command.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "monitor:", err)
		stop()
		os.Exit(1)
	}
}

// run serves until ctx ends, then shuts down within monitor.shutdown_timeout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Configuration and logger.
	st, err := boot.Start(boot.Service{Name: "monitor", Usage: usage}, args, stdout, stderr)
	if err != nil || st.Done {
		return err
	}
	cfg, log := st.Config, st.Log
	defer func() { _ = log.Sync() }()
	// Last: the spans of the drain are exported too.
	defer st.StopTracing(cfg.Monitor.ShutdownTimeout)

	// Redis, readiness and metrics. The monitor needs only Redis, so its
	// readiness checks only Redis.
	opt, err := queue.RedisOpt(cfg.Redis)
	if err != nil {
		return err
	}
	rc := queue.Client(opt)
	defer func() { _ = rc.Close() }()
	reg := prometheus.NewRegistry()
	if err := boot.RegisterProcessMetrics(reg); err != nil {
		return err
	}
	checker := health.NewChecker(map[string]health.Check{
		"redis": func(ctx context.Context) error { return queue.Ping(ctx, rc) },
	}, reg)
	inspector := asynq.NewInspector(opt)
	defer func() { _ = inspector.Close() }()
	metrics, err := queuemetrics.New(inspector, queue.Queues)
	if err != nil {
		return err
	}
	reg.MustRegister(metrics)
	memory, err := redismem.New(rc)
	if err != nil {
		return err
	}
	reg.MustRegister(memory)

	// Callers: the same credentials as the API. API keys are looked up in
	// PostgreSQL on every request (a revocation takes effect at once); the
	// connection is lazy, so the monitor starts while PostgreSQL is down.
	dbOpts := store.FromConfig(cfg.Database)
	dbOpts.MaxOpenConns, dbOpts.MaxIdleConns = min(dbOpts.MaxOpenConns, 4), min(dbOpts.MaxIdleConns, 2)
	db, err := store.Open(dbOpts)
	if err != nil {
		return err
	}
	if err := boot.RegisterPoolMetrics(reg, db); err != nil {
		return err
	}
	defer func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	}()
	authn, err := authenticator(cfg, db)
	if err != nil {
		return err
	}
	auditLog, err := audit.New(db)
	if err != nil {
		return err
	}
	defer auditLog.Close()

	// As in the API: a short deadline on Redis, then this replica's local
	// limits while Redis is away (see package ratelimit).
	limiter, err := ratelimit.NewWithOptions(rc, ratelimit.Options{
		Timeout: cfg.RateLimit.RedisTimeout, LocalFor: cfg.RateLimit.LocalFor, Registerer: reg,
	})
	if err != nil {
		return err
	}
	clientIP, err := clientip.FromConfig(cfg)
	if err != nil {
		return err
	}
	// Admins only, by API key, JWT or the bootstrap key, as a Bearer token or
	// as the password of HTTP Basic authentication (for browsers), behind the
	// API's per-address limit; state-changing requests must come from the
	// monitor's own pages and are audited.
	guard, err := protect(authn, guardOptions{Audit: auditLog, Log: log.Named("auth"),
		Limiter: limiter, Limit: cfg.RateLimit, ClientIP: clientIP})
	if err != nil {
		return err
	}

	// HTTP: Asynqmon, /healthz, /readyz, /metrics.
	dash, err := dashboard.New(dashboard.Options{
		RedisOpt:         opt,
		ReadOnly:         cfg.MonitorReadOnly(),
		Checker:          checker,
		Gatherer:         reg,
		Protect:          guard,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(secret.FormatPayload),
	})
	if err != nil {
		return err
	}
	defer func() { _ = dash.Close() }()
	srv, err := health.Listen(cfg.Monitor.Addr, dash)
	if err != nil {
		return fmt.Errorf("monitor: listen %s: %w", cfg.Monitor.Addr, err)
	}
	log.Info("monitor listening", zap.String("addr", srv.Addr()),
		zap.String("ui", "http://"+srv.Addr()+dashboard.RootPath), zap.Bool("read_only", cfg.MonitorReadOnly()))

	// Run: the metrics loop (which also keeps the four queues registered and
	// taskforge_dependency_up and the Redis memory figures current) and the
	// server, until SIGTERM.
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		metrics.Run(loopCtx, cfg.Monitor.CollectInterval, func(ctx context.Context) {
			checker.Run(ctx)
			if err := memory.Refresh(ctx); err != nil && ctx.Err() == nil {
				log.Debug("redis memory figures not read", zap.Error(err))
			}
			// Asynq lists a queue only once it has seen it; re-adding the four
			// every interval is one idempotent SADD and heals a Redis restart.
			if err := queue.Register(ctx, rc); err != nil && ctx.Err() == nil {
				log.Debug("register queues failed", zap.Error(err))
			}
		}, log)
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve() }()

	select {
	case err := <-serveErr:
		stopLoop()
		<-loopDone
		return fmt.Errorf("monitor: serve: %w", err)
	case <-ctx.Done():
	}

	// Shutdown.
	log.Info("monitor shutting down", zap.Duration("timeout", cfg.Monitor.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Monitor.ShutdownTimeout)
	defer cancel()
	stopLoop()
	err = srv.Shutdown(sctx)
	select {
	case <-loopDone:
	case <-sctx.Done():
	}
	if err != nil {
		return fmt.Errorf("monitor: shutdown: %w", err)
	}
	log.Info("monitor stopped")
	return nil
}

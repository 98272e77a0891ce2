package config

import "time"

// LogConfig configures zap.
type LogConfig struct {
	// Level is debug, info, warn or error. Default "info".
	Level string `mapstructure:"level"`
	// Format is "json" or "console". If empty, json in production and console in
	// development.
	Format string `mapstructure:"format"`
}

// APIConfig configures the REST API service.
type APIConfig struct {
	// Addr is the listen address of the API (and its /healthz, /readyz, /metrics).
	// Default "127.0.0.1:8080".
	Addr string `mapstructure:"addr"`
	// PublicURL is the base URL clients use to reach the API, used in download
	// links. Default "http://127.0.0.1:8080".
	PublicURL string `mapstructure:"public_url"`
	// MigrateOnStart applies pending database migrations when the API starts.
	// Default false.
	MigrateOnStart bool `mapstructure:"migrate_on_start"`
	// ShutdownTimeout bounds the graceful drain on SIGTERM. Default 15s.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// ReadTimeout, WriteTimeout and IdleTimeout are the HTTP server's timeouts.
	// Defaults 15s, 30s and 120s.
	ReadTimeout  time.Duration `mapstructure:"read_timeout"`
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	IdleTimeout  time.Duration `mapstructure:"idle_timeout"`
	// EnqueueTimeout bounds a create's hand-over to Redis, retries included.
	// Past it the create answers 503 and its row is removed, so the task never
	// runs (a delivery that still reaches Redis later finds no row and is
	// dropped). Default 1s.
	EnqueueTimeout time.Duration `mapstructure:"enqueue_timeout"`
	// BodyLimit is the largest request body accepted, in bytes. Default 1048576.
	BodyLimit int64 `mapstructure:"body_limit"`
	// UploadLimit is the largest file POST /api/v1/uploads accepts, in bytes,
	// separate from BodyLimit; past it the upload is refused with 413 and
	// nothing is stored. Default 104857600 (100 MiB).
	UploadLimit int64 `mapstructure:"upload_limit"`
	// UploadTimeout bounds the reading of one upload's body and the answer
	// to it, in place of read_timeout and write_timeout, which would cut a
	// large file on a slow link. Default 10m.
	UploadTimeout time.Duration `mapstructure:"upload_timeout"`
	// CORSAllowOrigins lists the origins allowed by CORS. Default empty (no CORS).
	CORSAllowOrigins []string `mapstructure:"cors_allow_origins"`
	// HSTS sends Strict-Transport-Security on every response; set it when
	// clients reach the API over HTTPS only (a TLS-terminating proxy). Default
	// false.
	HSTS bool `mapstructure:"hsts"`
}

// WorkerConfig configures the worker service.
type WorkerConfig struct {
	// AdminAddr serves /healthz, /readyz and /metrics. Default "127.0.0.1:9091".
	AdminAddr string `mapstructure:"admin_addr"`
	// Concurrency is the number of tasks processed at once by one worker process.
	// Default 50: each task waits on batched PostgreSQL writes (see
	// flush_interval), so short tasks need many in flight to keep Asynq busy.
	Concurrency int `mapstructure:"concurrency"`
	// Servers is the number of Asynq servers in the process; each fetches one task
	// at a time, so several raise throughput for short tasks. Default 1.
	Servers int `mapstructure:"servers"`
	// StrictPriority empties higher-priority queues first. Default true.
	StrictPriority bool `mapstructure:"strict_priority"`
	// QueueWeights are the weights of critical, high, normal and low. Defaults
	// 8, 4, 2 and 1.
	QueueWeights map[string]int `mapstructure:"queue_weights"`
	// ShutdownTimeout is how long running tasks get to finish on SIGTERM before
	// they are handed back to the queue. Kubernetes' terminationGracePeriodSeconds
	// must exceed it. Default 30s.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// FlushInterval is how often buffered progress, logs and state changes are
	// written to PostgreSQL; an attempt's start, progress and log lines wait one
	// interval, or ride with its outcome when it ends sooner. Default 50ms.
	FlushInterval time.Duration `mapstructure:"flush_interval"`
	// FlushGap is the least time between two batched writes: under load, the
	// reads and outcomes that tasks wait for gather for up to a gap and share
	// one write (fewer statements and commits per task, at up to a gap more
	// latency each); a worker that has not written for a gap writes at once.
	// 0 turns it off. Default 5ms; at most flush_interval.
	FlushGap time.Duration `mapstructure:"flush_gap"`
	// TaskCheckInterval is how long a worker pauses after finding every queue
	// empty; it bounds how late an idle worker picks up a new task (a schedule's
	// fire included). Default 100ms (Asynq's own default is 1s).
	TaskCheckInterval time.Duration `mapstructure:"task_check_interval"`
	// BurstPoll is the task_check_interval of the burst server: an extra
	// Asynq server (with a tenth of concurrency, at least 1) that runs while
	// workflow steps run in the process and for BurstLinger after the last
	// one, so that a workflow's next step starts within milliseconds instead
	// of waiting for the next poll; an idle worker pays nothing for it. 0
	// turns it off. Default 5ms.
	BurstPoll time.Duration `mapstructure:"burst_poll"`
	// BurstLinger is how long the burst server keeps running after the last
	// workflow step started or ended in the process. Default 2s.
	BurstLinger time.Duration `mapstructure:"burst_linger"`
	// TypeLimits caps how many tasks of a type run at once across all workers,
	// e.g. {backup_data: 2}. Default: backup_data 2, optimize_database 1.
	TypeLimits map[string]int `mapstructure:"type_limits"`
	// MaxMessages is how many recent progress messages a task keeps. Default 50.
	MaxMessages int `mapstructure:"max_messages"`
	// CallbackSecret is no longer used: completion callbacks are signed with
	// their owner's own secret (notify.callback_secret_overlap, POST
	// /api/v1/callback-secret/rotate). The key is still read, and ignored, so
	// that existing configurations load. Default empty.
	CallbackSecret string `mapstructure:"callback_secret" secret:"true"`
}

// SchedulerConfig configures the scheduler service.
type SchedulerConfig struct {
	// AdminAddr serves /healthz, /readyz and /metrics. Default "127.0.0.1:9092".
	AdminAddr string `mapstructure:"admin_addr"`
	// SyncInterval is how often schedules are re-read from PostgreSQL. Default 5s.
	SyncInterval time.Duration `mapstructure:"sync_interval"`
	// CatchUp is how many missed fires are made up after a restart. Default 1.
	CatchUp int `mapstructure:"catch_up"`
	// ReconcileInterval is how often the reconciler compares PostgreSQL and Redis.
	// Default 30s.
	ReconcileInterval time.Duration `mapstructure:"reconcile_interval"`
	// LostGrace is added to a task's timeout before a running row whose task is
	// gone from Redis is declared lost. Default 2m.
	LostGrace time.Duration `mapstructure:"lost_grace"`
	// ShutdownTimeout bounds the graceful stop. Default 10s.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// SeedSchedules creates the specification's four schedules on first start.
	// Default true.
	SeedSchedules bool `mapstructure:"seed_schedules"`
}

// MonitorConfig configures the monitor service (Asynqmon and queue metrics).
type MonitorConfig struct {
	// Addr serves Asynqmon, /healthz, /readyz and /metrics. Default "127.0.0.1:8081".
	Addr string `mapstructure:"addr"`
	// ReadOnly hides Asynqmon's buttons that change queues and refuses every
	// request that is not GET or HEAD. If unset, true in production and false
	// in development; read it with Config.MonitorReadOnly.
	ReadOnly *bool `mapstructure:"read_only"`
	// CollectInterval is how often queue gauges are refreshed. Default 5s.
	CollectInterval time.Duration `mapstructure:"collect_interval"`
	// ShutdownTimeout bounds the graceful stop. Default 10s.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
}

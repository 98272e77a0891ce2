// Package config loads Taskforge's configuration: defaults in code, then a YAML
// file, then environment variables prefixed TASKFORGE_ (nested keys joined with
// '_', e.g. TASKFORGE_REDIS_ADDR). Every service loads the same typed Config and
// calls Validate before it wires anything.
package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// EnvPrefix is the prefix of every environment variable the loader reads.
const EnvPrefix = "TASKFORGE"

// EnvConfigFile names the environment variable that points at a YAML file when no
// --config flag is given.
const EnvConfigFile = "TASKFORGE_CONFIG"

// Config is the whole configuration of every Taskforge service. Each service reads
// only the sections it needs; constructors take those sections, never Config.
type Config struct {
	// Env is "development" or "production". Development relaxes a few start-up
	// checks (an empty JWT secret is allowed) and logs to the console. Default
	// "development".
	Env       string          `mapstructure:"env"`
	Log       LogConfig       `mapstructure:"log"`
	API       APIConfig       `mapstructure:"api"`
	Worker    WorkerConfig    `mapstructure:"worker"`
	Scheduler SchedulerConfig `mapstructure:"scheduler"`
	Monitor   MonitorConfig   `mapstructure:"monitor"`
	Redis     RedisConfig     `mapstructure:"redis"`
	Database  DatabaseConfig  `mapstructure:"database"`
	Auth      AuthConfig      `mapstructure:"auth"`
	Crypto    CryptoConfig    `mapstructure:"crypto"`
	Egress    EgressConfig    `mapstructure:"egress"`
	Storage   StorageConfig   `mapstructure:"storage"`
	SMTP      SMTPConfig      `mapstructure:"smtp"`
	Alerts    AlertsConfig    `mapstructure:"alerts"`
	Prices    PricesConfig    `mapstructure:"prices"`
	RateLimit RateLimitConfig `mapstructure:"ratelimit"`
	Retention RetentionConfig `mapstructure:"retention"`
	Proxy     ProxyConfig     `mapstructure:"proxy"`
	Events    EventsConfig    `mapstructure:"events"`
}

// EventsConfig configures the live task events: what the writers (worker,
// API, scheduler) publish to Redis and the API's server-sent event streams.
type EventsConfig struct {
	// KeepAlive is the longest an open stream stays silent: a comment line is
	// sent after it, and a task's stream that had nothing to send re-reads
	// the task. Default 15s.
	KeepAlive time.Duration `mapstructure:"keepalive"`
	// WriteTimeout bounds each write to a stream's client; a client that does
	// not take an event within it is disconnected. Default 10s.
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// MaxStreams caps the open streams of one API replica; past it a new
	// stream gets 429. Default 10000.
	MaxStreams int `mapstructure:"max_streams"`
	// MaxStreamsPerCaller caps one caller's open streams on one API replica.
	// Default 20.
	MaxStreamsPerCaller int `mapstructure:"max_streams_per_caller"`
	// Buffer is how many events may wait for a slow client; a stream that
	// falls further behind is closed (the client resumes with Last-Event-ID).
	// Default 64.
	Buffer int `mapstructure:"buffer"`
	// StreamMax caps the Redis stream every API replica reads (approximate
	// trimming); a resumed /api/v1/events stream can go back at most this
	// far. Default 100000.
	StreamMax int64 `mapstructure:"stream_max"`
	// History caps each task's own event history in Redis, which serves a
	// resumed task stream. Default 1000.
	History int64 `mapstructure:"history"`
	// HistoryTTL keeps a task's history after its last event. Default 15m.
	HistoryTTL time.Duration `mapstructure:"history_ttl"`
	// ResumeMax is the most events a resumed /api/v1/events stream replays;
	// further behind it starts again from a snapshot. Default 10000.
	ResumeMax int64 `mapstructure:"resume_max"`
}

// ProxyConfig says which reverse proxies are trusted to report the client's
// address (the API and the monitor read it for rate limits and the audit log).
type ProxyConfig struct {
	// TrustedCIDRs lists the CIDRs (or single addresses) of the reverse proxies
	// in front of the services. Only a request whose peer is in one of them has
	// its client address taken from Header; everyone else's is the peer's.
	// Default empty: no proxy is trusted.
	TrustedCIDRs []string `mapstructure:"trusted_cidrs"`
	// Header is the header the trusted proxies set: "x-forwarded-for" or
	// "forwarded" (RFC 7239). The rightmost address in it that is not a
	// trusted proxy is the client. Default "x-forwarded-for".
	Header string `mapstructure:"header"`
}

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
	// written to PostgreSQL. Default 50ms.
	FlushInterval time.Duration `mapstructure:"flush_interval"`
	// TaskCheckInterval is how long a worker pauses after finding every queue
	// empty; it bounds how late an idle worker picks up a new task (a schedule's
	// fire included). Default 100ms (Asynq's own default is 1s).
	TaskCheckInterval time.Duration `mapstructure:"task_check_interval"`
	// TypeLimits caps how many tasks of a type run at once across all workers,
	// e.g. {backup_data: 2}. Default: backup_data 2, optimize_database 1.
	TypeLimits map[string]int `mapstructure:"type_limits"`
	// MaxMessages is how many recent progress messages a task keeps. Default 50.
	MaxMessages int `mapstructure:"max_messages"`
	// CallbackSecret signs the callbacks POSTed to a task's callback_url
	// (HMAC-SHA256 in X-Taskforge-Signature). Default empty: development uses
	// DevCallbackSecret; production must set a per-deployment secret of at least
	// 32 characters.
	CallbackSecret string `mapstructure:"callback_secret" secret:"true"`
}

// DevCallbackSecret signs callbacks in development when worker.callback_secret
// is empty. It is refused outside development.
const DevCallbackSecret = "taskforge-development-callback-secret"

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

// RedisConfig selects and reaches the Redis that carries the queues.
type RedisConfig struct {
	// Mode is "single", "sentinel" or "cluster". Default "single".
	Mode string `mapstructure:"mode"`
	// Addr is the single node's address. Default "127.0.0.1:6379".
	Addr string `mapstructure:"addr"`
	// Addrs lists Sentinel or Cluster node addresses. Default empty.
	Addrs []string `mapstructure:"addrs"`
	// MasterName is the Sentinel master's name. Default empty.
	MasterName string `mapstructure:"master_name"`
	// Username and Password authenticate to Redis. Default empty.
	Username string `mapstructure:"username"`
	Password string `mapstructure:"password" secret:"true"`
	// SentinelPassword authenticates to the Sentinels. Default empty.
	SentinelPassword string `mapstructure:"sentinel_password" secret:"true"`
	// DB is the database number (single and sentinel only). Default 0.
	DB int `mapstructure:"db"`
	// TLS enables TLS to Redis. Default false.
	TLS bool `mapstructure:"tls"`
	// TLSServerName overrides the name checked in the server's certificate.
	TLSServerName string `mapstructure:"tls_server_name"`
	// DialTimeout bounds a connection attempt. Default 1s.
	DialTimeout time.Duration `mapstructure:"dial_timeout"`
	// ReadTimeout bounds the wait for one command's reply (a blocking
	// command, such as the event streams' XREAD, adds its own block time).
	// Small, so that a stalled Redis fails a request fast instead of hanging
	// it. Default 500ms.
	ReadTimeout time.Duration `mapstructure:"read_timeout"`
	// WriteTimeout bounds writing one command. Default 500ms.
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// MaxRetries is how often a command that failed on the network is tried
	// again (0: never). Default 1.
	MaxRetries int `mapstructure:"max_retries"`
	// PoolTimeout bounds the wait for a free connection when every pooled
	// one is busy. Default 1s.
	PoolTimeout time.Duration `mapstructure:"pool_timeout"`
}

// DatabaseConfig reaches PostgreSQL.
type DatabaseConfig struct {
	// URL is a PostgreSQL connection URL or DSN. Default
	// "postgres://taskforge@127.0.0.1:5432/taskforge?sslmode=disable".
	URL string `mapstructure:"url" secret:"true"`
	// MaxOpenConns caps open connections. Default 20.
	MaxOpenConns int `mapstructure:"max_open_conns"`
	// MaxIdleConns caps idle connections. Default 10.
	MaxIdleConns int `mapstructure:"max_idle_conns"`
	// ConnMaxLifetime recycles connections. Default 30m.
	ConnMaxLifetime time.Duration `mapstructure:"conn_max_lifetime"`
	// ConnMaxIdleTime closes idle connections. Default 5m.
	ConnMaxIdleTime time.Duration `mapstructure:"conn_max_idle_time"`
}

// AuthConfig configures authentication.
type AuthConfig struct {
	// BootstrapAdminKey is an admin API key accepted for first use. Default empty.
	BootstrapAdminKey string `mapstructure:"bootstrap_admin_key" secret:"true"`
	// JWTSecret verifies HS256 tokens. Empty disables HS256. Outside development
	// the example value is refused.
	JWTSecret string `mapstructure:"jwt_secret" secret:"true"`
	// JWKSURL is fetched for RS256/ES256 keys. Default empty.
	JWKSURL string `mapstructure:"jwks_url"`
	// JWTIssuer and JWTAudience are required claims when set.
	JWTIssuer   string `mapstructure:"jwt_issuer"`
	JWTAudience string `mapstructure:"jwt_audience"`
	// JWTAlgorithms pins the accepted algorithms. Default [HS256, RS256, ES256].
	JWTAlgorithms []string `mapstructure:"jwt_algorithms"`
	// JWTLeeway is the clock skew allowed on exp, nbf and iat, at most 5m.
	// Default 30s.
	JWTLeeway time.Duration `mapstructure:"jwt_leeway"`
	// JWTMaxLifetime is the longest a token may live (exp - iat; iat is
	// required). Default 24h.
	JWTMaxLifetime time.Duration `mapstructure:"jwt_max_lifetime"`
	// JWTRevokedIDs lists the jti of revoked tokens. Default empty.
	JWTRevokedIDs []string `mapstructure:"jwt_revoked_ids"`
	// JWTMinIssuedAt refuses every token issued before it (RFC 3339), to log
	// everyone out at once. Default empty (none refused).
	JWTMinIssuedAt string `mapstructure:"jwt_min_issued_at"`
	// MaxPriority maps a role to the most urgent priority its callers may
	// give a task (critical > high > normal > low); a more urgent one is
	// refused with 403. Default: viewer low, operator high, admin critical
	// (critical carries the scheduler's fire jobs, so only admins and the
	// scheduler use it).
	MaxPriority map[string]string `mapstructure:"max_priority"`
}

// CryptoConfig holds the keyring for secret task params.
type CryptoConfig struct {
	// Keys maps key ids to base64-encoded 32-byte AES-256 keys. Default empty; in
	// development a fixed key "dev" is used.
	Keys map[string]string `mapstructure:"keys" secret:"true"`
	// ActiveKey is the id of the key that encrypts new data. Default "dev".
	ActiveKey string `mapstructure:"active_key"`
}

// EgressConfig guards every outbound HTTP call.
type EgressConfig struct {
	// AllowCIDRs lists ranges that are reachable although private or loopback.
	// Default empty.
	AllowCIDRs []string `mapstructure:"allow_cidrs"`
	// ConnectTimeout bounds dialling. Default 5s.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// Timeout bounds a whole request. Default 30s.
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxResponseBytes caps a response body. Default 10485760.
	MaxResponseBytes int64 `mapstructure:"max_response_bytes"`
	// MaxRedirects is how many redirects are followed, each re-checked. Default 3.
	MaxRedirects int `mapstructure:"max_redirects"`
	// Price, Notify, Callbacks, Webhooks and JWKS are the allow-lists of each
	// kind of outbound call: the price provider; Slack, SMS, push and ntfy;
	// task completion callbacks; webhook_callback tasks; the identity
	// provider's key set (auth.jwks_url). A purpose whose list is empty uses
	// AllowCIDRs. Default empty.
	Price     EgressPurposeConfig `mapstructure:"price"`
	Notify    EgressPurposeConfig `mapstructure:"notify"`
	Callbacks EgressPurposeConfig `mapstructure:"callbacks"`
	Webhooks  EgressPurposeConfig `mapstructure:"webhooks"`
	JWKS      EgressPurposeConfig `mapstructure:"jwks"`
}

// EgressPurposeConfig is the allow-list of one kind of outbound call.
type EgressPurposeConfig struct {
	// AllowCIDRs lists ranges this kind of call may reach although private or
	// loopback. If empty, egress.allow_cidrs applies. Default empty.
	AllowCIDRs []string `mapstructure:"allow_cidrs"`
}

// Purposes returns the per-purpose allow-list sections by name, for
// validation and documentation.
func (c EgressConfig) Purposes() map[string]EgressPurposeConfig {
	return map[string]EgressPurposeConfig{"price": c.Price, "notify": c.Notify, "callbacks": c.Callbacks, "webhooks": c.Webhooks, "jwks": c.JWKS}
}

// StorageConfig configures result storage.
type StorageConfig struct {
	// Backend is "local" or "s3". Default "local".
	Backend string `mapstructure:"backend"`
	// LocalDir is where local result files live. Default "./.run/results".
	LocalDir string `mapstructure:"local_dir"`
	// SigningKey signs download links. Default empty: a random key per process
	// (links then do not survive a restart or reach another replica).
	SigningKey string `mapstructure:"signing_key" secret:"true"`
	// LinkTTL is how long a download link works. Default 15m.
	LinkTTL time.Duration `mapstructure:"link_ttl"`
	// ResultTTL is how long results are kept. Default 168h.
	ResultTTL time.Duration `mapstructure:"result_ttl"`
	// InlineMaxBytes is the largest JSON result kept in the task row; a larger
	// one is stored as the task's result file result.json and the row's
	// result_url points at it. Default 65536.
	InlineMaxBytes int      `mapstructure:"inline_max_bytes"`
	S3             S3Config `mapstructure:"s3"`
}

// S3Config reaches S3-compatible object storage.
type S3Config struct {
	Endpoint     string `mapstructure:"endpoint"`
	Region       string `mapstructure:"region"`
	Bucket       string `mapstructure:"bucket"`
	AccessKey    string `mapstructure:"access_key" secret:"true"`
	SecretKey    string `mapstructure:"secret_key" secret:"true"`
	UsePathStyle bool   `mapstructure:"use_path_style"`
}

// SMTPConfig configures outgoing mail.
type SMTPConfig struct {
	// Host and Port of the SMTP server. Defaults "127.0.0.1" and 1025.
	Host string `mapstructure:"host"`
	Port int    `mapstructure:"port"`
	// Username and Password authenticate when set.
	Username string `mapstructure:"username"`
	Password string `mapstructure:"password" secret:"true"`
	// From is the sender address. Default "taskforge@localhost".
	From string `mapstructure:"from"`
	// TLS is "starttls", "tls" or "none". Default "starttls" in production and
	// "none" in development.
	TLS string `mapstructure:"tls"`
}

// AlertsConfig configures send_alert's channels.
type AlertsConfig struct {
	SlackWebhookURL string `mapstructure:"slack_webhook_url" secret:"true"`
	SMSURL          string `mapstructure:"sms_url"`
	SMSAccount      string `mapstructure:"sms_account"`
	SMSToken        string `mapstructure:"sms_token" secret:"true"`
	SMSFrom         string `mapstructure:"sms_from"`
	PushURL         string `mapstructure:"push_url"`
	PushToken       string `mapstructure:"push_token" secret:"true"`
}

// PricesConfig selects the price provider.
type PricesConfig struct {
	// Provider is "simulated" or "stooq". Default "simulated".
	Provider string `mapstructure:"provider"`
	// StooqBaseURL is the Stooq CSV endpoint. Default "https://stooq.com".
	StooqBaseURL string `mapstructure:"stooq_base_url"`
	// BatchSize is the number of symbols fetched and upserted per transaction.
	// Default 100.
	BatchSize int `mapstructure:"batch_size"`
}

// RateLimitConfig limits requests per caller, shared by all API replicas.
type RateLimitConfig struct {
	// Enabled turns rate limiting on. Default true.
	Enabled bool `mapstructure:"enabled"`
	// PerRole maps a role to requests per second and burst. Defaults: viewer
	// 20/40, operator 50/100, admin 200/400.
	PerRole map[string]RateLimit `mapstructure:"per_role"`
	// PerAddress limits requests per client address before authentication, so
	// that a flood of bad credentials stays bounded. Default 200/400 (the
	// admin's limit: callers behind one address are not held below it).
	PerAddress RateLimit `mapstructure:"per_address"`
	// IPv6Prefix is the prefix length that groups IPv6 client addresses for
	// the per-address limit and the aggregated audit of refused credentials:
	// one subscriber usually holds a whole /64. Default 64.
	IPv6Prefix int `mapstructure:"ipv6_prefix"`
	// RedisTimeout is the limiter's own deadline for one Redis check; past it
	// (or on any Redis error) the request is judged by this replica's local
	// limiter instead. Default 200ms.
	RedisTimeout time.Duration `mapstructure:"redis_timeout"`
	// LocalFor is how long the limiter stays on its local limits after Redis
	// failed it before it tries Redis again, so that a stalled Redis costs
	// one deadline per interval, not one per request. Default 2s.
	LocalFor time.Duration `mapstructure:"local_for"`
}

// RateLimit is a sustained rate and a burst.
type RateLimit struct {
	RPS   float64 `mapstructure:"rps"`
	Burst int     `mapstructure:"burst"`
}

// RetentionConfig sets how long cleanup_old_data keeps data, in days.
type RetentionConfig struct {
	// Tasks, TaskLogs, Prices, Results and Audit default to 30, 14, 3650, 7 and 365.
	Tasks    int `mapstructure:"tasks"`
	TaskLogs int `mapstructure:"task_logs"`
	Prices   int `mapstructure:"prices"`
	Results  int `mapstructure:"results"`
	Audit    int `mapstructure:"audit"`
	// AuditMin is the fewest days of audit log a cleanup_old_data may keep:
	// one asking to prune it younger is refused (422 at creation, and by the
	// worker), and Audit may not be below it. Default 365.
	AuditMin int `mapstructure:"audit_min"`
}

// Defaults returns the configuration used when nothing overrides it.
func Defaults() Config {
	return Config{
		Env: "development",
		Log: LogConfig{Level: "info"},
		API: APIConfig{
			Addr: "127.0.0.1:8080", PublicURL: "http://127.0.0.1:8080",
			ShutdownTimeout: 15 * time.Second,
			ReadTimeout:     15 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second,
			EnqueueTimeout:   time.Second,
			BodyLimit:        1 << 20,
			CORSAllowOrigins: []string{},
		},
		Worker: WorkerConfig{
			AdminAddr: "127.0.0.1:9091", Concurrency: 50, Servers: 1, TaskCheckInterval: 100 * time.Millisecond, StrictPriority: true,
			QueueWeights:    map[string]int{"critical": 8, "high": 4, "normal": 2, "low": 1},
			ShutdownTimeout: 30 * time.Second, FlushInterval: 50 * time.Millisecond,
			TypeLimits:  map[string]int{"backup_data": 2, "optimize_database": 1},
			MaxMessages: 50,
		},
		Scheduler: SchedulerConfig{
			AdminAddr: "127.0.0.1:9092", SyncInterval: 5 * time.Second, CatchUp: 1,
			ReconcileInterval: 30 * time.Second, LostGrace: 2 * time.Minute,
			ShutdownTimeout: 10 * time.Second, SeedSchedules: true,
		},
		Monitor: MonitorConfig{Addr: "127.0.0.1:8081", CollectInterval: 5 * time.Second, ShutdownTimeout: 10 * time.Second},
		Redis: RedisConfig{Mode: "single", Addr: "127.0.0.1:6379", Addrs: []string{}, DialTimeout: time.Second,
			ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, MaxRetries: 1, PoolTimeout: time.Second},
		Database: DatabaseConfig{
			URL:          "postgres://taskforge@127.0.0.1:5432/taskforge?sslmode=disable",
			MaxOpenConns: 20, MaxIdleConns: 10, ConnMaxLifetime: 30 * time.Minute, ConnMaxIdleTime: 5 * time.Minute,
		},
		Auth: AuthConfig{JWTAlgorithms: []string{"HS256", "RS256", "ES256"},
			JWTLeeway: 30 * time.Second, JWTMaxLifetime: 24 * time.Hour, JWTRevokedIDs: []string{},
			MaxPriority: map[string]string{"viewer": "low", "operator": "high", "admin": "critical"}},
		Crypto: CryptoConfig{Keys: map[string]string{}, ActiveKey: "dev"},
		Egress: EgressConfig{
			AllowCIDRs: []string{}, ConnectTimeout: 5 * time.Second, Timeout: 30 * time.Second,
			MaxResponseBytes: 10 << 20, MaxRedirects: 3,
			Price: EgressPurposeConfig{AllowCIDRs: []string{}}, Notify: EgressPurposeConfig{AllowCIDRs: []string{}},
			Callbacks: EgressPurposeConfig{AllowCIDRs: []string{}}, Webhooks: EgressPurposeConfig{AllowCIDRs: []string{}},
			JWKS: EgressPurposeConfig{AllowCIDRs: []string{}},
		},
		Storage: StorageConfig{
			Backend: "local", LocalDir: "./.run/results", LinkTTL: 15 * time.Minute,
			ResultTTL: 168 * time.Hour, InlineMaxBytes: 64 << 10, S3: S3Config{Region: "us-east-1"},
		},
		SMTP:   SMTPConfig{Host: "127.0.0.1", Port: 1025, From: "taskforge@localhost"},
		Prices: PricesConfig{Provider: "simulated", StooqBaseURL: "https://stooq.com", BatchSize: 100},
		RateLimit: RateLimitConfig{Enabled: true, PerRole: map[string]RateLimit{
			"viewer": {RPS: 20, Burst: 40}, "operator": {RPS: 50, Burst: 100}, "admin": {RPS: 200, Burst: 400},
		}, PerAddress: RateLimit{RPS: 200, Burst: 400}, IPv6Prefix: 64,
			RedisTimeout: 200 * time.Millisecond, LocalFor: 2 * time.Second},
		Retention: RetentionConfig{Tasks: 30, TaskLogs: 14, Prices: 3650, Results: 7, Audit: 365, AuditMin: 365},
		Proxy:     ProxyConfig{TrustedCIDRs: []string{}, Header: "x-forwarded-for"},
		Events: EventsConfig{KeepAlive: 15 * time.Second, WriteTimeout: 10 * time.Second, MaxStreams: 10000,
			MaxStreamsPerCaller: 20, Buffer: 64, StreamMax: 100000, History: 1000, HistoryTTL: 15 * time.Minute,
			ResumeMax: 10000},
	}
}

// Load reads the configuration: defaults, then the YAML file at path (or at
// $TASKFORGE_CONFIG when path is empty), then TASKFORGE_* environment variables.
// It does not validate; call Validate.
func Load(path string) (Config, error) {
	v := viper.New()
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	// Every key must be known to viper for AutomaticEnv to find it during
	// Unmarshal, so the defaults are registered key by key.
	defaults := map[string]any{}
	if err := mapstructure.Decode(Defaults(), &defaults); err != nil {
		return Config{}, fmt.Errorf("config: defaults: %w", err)
	}
	setDefaults(v, "", defaults)

	if path == "" {
		path = os.Getenv(EnvConfigFile)
	}
	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("config: read %s: %w", path, err)
		}
	}

	var cfg Config
	err := v.Unmarshal(&cfg, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		durationHook(),
		stringToSliceHook(),
		stringToMapHook(),
	)))
	if err != nil {
		return Config{}, decodeError(v, err)
	}
	mergeFreeMaps(&cfg)
	return cfg, nil
}

// mergeFreeMaps lays the entries a file or the environment gave for a free map
// over the default entries, so that setting worker.type_limits.backup_data keeps
// the default limit of optimize_database, and one queue weight keeps the others.
func mergeFreeMaps(cfg *Config) {
	d := Defaults()
	cfg.Worker.QueueWeights = mergeMap(d.Worker.QueueWeights, cfg.Worker.QueueWeights)
	cfg.Worker.TypeLimits = mergeMap(d.Worker.TypeLimits, cfg.Worker.TypeLimits)
	cfg.Crypto.Keys = mergeMap(d.Crypto.Keys, cfg.Crypto.Keys)
	cfg.RateLimit.PerRole = mergeMap(d.RateLimit.PerRole, cfg.RateLimit.PerRole)
	cfg.Auth.MaxPriority = mergeMap(d.Auth.MaxPriority, cfg.Auth.MaxPriority)
}

func mergeMap[V any](defaults, given map[string]V) map[string]V {
	out := make(map[string]V, len(defaults)+len(given))
	maps.Copy(out, defaults)
	maps.Copy(out, given)
	return out
}

// durationHook reads durations such as "500ms", "5s" or "2m". A bare number is
// refused rather than read as nanoseconds ("5" is almost surely not 5ns).
func durationHook() mapstructure.DecodeHookFuncType {
	durationType := reflect.TypeOf(time.Duration(0))
	return func(f reflect.Type, t reflect.Type, data any) (any, error) {
		if t != durationType || f == durationType {
			return data, nil
		}
		switch f.Kind() {
		case reflect.String:
			d, err := time.ParseDuration(strings.TrimSpace(data.(string)))
			if err != nil {
				return nil, errBadDuration
			}
			return d, nil
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Float32, reflect.Float64:
			if reflect.ValueOf(data).IsZero() {
				return time.Duration(0), nil
			}
			return nil, errBadDuration
		}
		return data, nil
	}
}

var errBadDuration = errors.New("must be a duration with a unit, such as 500ms, 5s, 2m or 1h")

// decodeError turns mapstructure's errors into one error per key, each naming
// the key and the bad value (masked for secrets) and wrapping ErrInvalid.
func decodeError(v *viper.Viper, err error) error {
	var leaves []*mapstructure.DecodeError
	var walk func(error)
	walk = func(e error) {
		if de, ok := e.(*mapstructure.DecodeError); ok {
			inner := de.Unwrap()
			_, nested := inner.(*mapstructure.DecodeError)
			_, joined := inner.(interface{ Unwrap() []error })
			if !nested && !joined {
				leaves = append(leaves, de)
				return
			}
			walk(inner)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if u := errors.Unwrap(e); u != nil {
			walk(u)
		}
	}
	walk(err)
	if len(leaves) == 0 {
		return fmt.Errorf("config: %w", err)
	}
	errs := make([]error, 0, len(leaves))
	for _, de := range leaves {
		key := strings.NewReplacer("[", ".", "]", "").Replace(de.Name())
		inner := errors.Unwrap(de)
		value, why := v.Get(key), inner.Error()
		var pe *mapstructure.ParseError
		var ue *mapstructure.UnconvertibleTypeError
		switch {
		case errors.As(inner, &pe):
			value, why = pe.Value, "must be "+describeType(pe.Expected.Type())
		case errors.As(inner, &ue):
			value, why = ue.Value, "must be "+describeType(ue.Expected.Type())
		}
		shown := fmt.Sprintf("%q", fmt.Sprint(value))
		if isSecretKey(key) {
			shown = "(masked)"
		}
		errs = append(errs, fmt.Errorf("%w: %s = %s: %s", ErrInvalid, key, shown, why))
	}
	return errors.Join(errs...)
}

// describeType names what a value of t looks like, for error messages.
func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a list (in the environment: comma-separated)"
	case reflect.Map:
		return "a map (in the environment: key=value pairs, comma-separated)"
	case reflect.Struct:
		return "a map of " + t.Name() + " fields"
	}
	return "a " + t.Kind().String()
}

// isSecretKey reports whether the dotted key is, or lies inside, a field
// tagged secret:"true".
func isSecretKey(key string) bool {
	t := reflect.TypeOf(Config{})
	for _, part := range strings.Split(key, ".") {
		if t.Kind() != reflect.Struct {
			return false
		}
		found := false
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Tag.Get("mapstructure") != part {
				continue
			}
			if f.Tag.Get("secret") == "true" {
				return true
			}
			t, found = f.Type, true
			break
		}
		if !found {
			return false
		}
	}
	return false
}

// setDefaults registers every leaf of m under prefix so that environment
// variables can override keys that no file mentions.
func setDefaults(v *viper.Viper, prefix string, m map[string]any) {
	for k, val := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := val.(map[string]any); ok && !isFreeMap(key) {
			setDefaults(v, key, sub)
			continue
		}
		v.SetDefault(key, val)
	}
}

// isFreeMap reports whether key is a map whose keys are data (queue names, key
// ids, roles) rather than fixed fields, so it is set as one value.
func isFreeMap(key string) bool {
	switch key {
	case "worker.queue_weights", "worker.type_limits", "crypto.keys", "ratelimit.per_role", "auth.max_priority":
		return true
	}
	return false
}

// stringToSliceHook splits a comma-separated environment value into a list.
func stringToSliceHook() mapstructure.DecodeHookFuncType {
	return func(f reflect.Type, t reflect.Type, data any) (any, error) {
		if f.Kind() != reflect.String || t.Kind() != reflect.Slice {
			return data, nil
		}
		s := strings.TrimSpace(data.(string))
		if s == "" {
			return []string{}, nil
		}
		parts := strings.Split(s, ",")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		return parts, nil
	}
}

// stringToMapHook reads "a=1,b=2" from an environment variable into a map.
func stringToMapHook() mapstructure.DecodeHookFuncType {
	return func(f reflect.Type, t reflect.Type, data any) (any, error) {
		if f.Kind() != reflect.String || t.Kind() != reflect.Map {
			return data, nil
		}
		out := map[string]any{}
		for _, pair := range strings.Split(data.(string), ",") {
			pair = strings.TrimSpace(pair)
			if pair == "" {
				continue
			}
			k, val, ok := strings.Cut(pair, "=")
			if !ok {
				// The pair is not quoted: it may hold a secret (crypto.keys).
				return nil, errors.New("must be key=value pairs separated by commas, such as a=1,b=2")
			}
			out[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		return out, nil
	}
}

// IsDevelopment reports whether the configuration is for development.
func (c Config) IsDevelopment() bool { return c.Env == "development" }

// MonitorReadOnly is monitor.read_only, or when it is unset, whether the
// configuration is for production: a production monitor changes no queue
// unless told to.
func (c Config) MonitorReadOnly() bool {
	if c.Monitor.ReadOnly != nil {
		return *c.Monitor.ReadOnly
	}
	return !c.IsDevelopment()
}

// ErrInvalid is wrapped by every Validate error.
var ErrInvalid = errors.New("invalid configuration")

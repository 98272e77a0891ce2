// Package config loads Taskforge's configuration: defaults in code, then a YAML
// file, then environment variables prefixed TASKFORGE_ (nested keys joined with
// '_', e.g. TASKFORGE_REDIS_ADDR). Every service loads the same typed Config and
// calls Validate before it wires anything.
package config

import (
	"errors"
	"time"
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
	Notify    NotifyConfig    `mapstructure:"notify"`
	Push      PushConfig      `mapstructure:"push"`
	Tracing   TracingConfig   `mapstructure:"tracing"`
	Workflows WorkflowsConfig `mapstructure:"workflows"`
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
			UploadLimit:      100 << 20,
			UploadTimeout:    10 * time.Minute,
			CORSAllowOrigins: []string{},
		},
		Worker: WorkerConfig{
			AdminAddr: "127.0.0.1:9091", Concurrency: 50, Servers: 1, TaskCheckInterval: 100 * time.Millisecond, StrictPriority: true,
			BurstPoll: 5 * time.Millisecond, BurstLinger: 2 * time.Second,
			QueueWeights:    map[string]int{"critical": 8, "high": 4, "normal": 2, "low": 1},
			ShutdownTimeout: 30 * time.Second, FlushInterval: 50 * time.Millisecond, FlushGap: 5 * time.Millisecond,
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
			LockTimeout: 5 * time.Second, StatementTimeout: 60 * time.Second,
		},
		Auth: AuthConfig{JWTAlgorithms: []string{"HS256", "RS256", "ES256"},
			JWTLeeway: 30 * time.Second, JWTMaxLifetime: 24 * time.Hour, JWTRevokedIDs: []string{},
			MaxPriority: map[string]string{"viewer": "low", "operator": "high", "admin": "critical"},
			KeyCacheTTL: 30 * time.Second},
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
			Cache: ResultCacheConfig{Enabled: true, TTL: time.Minute, MaxBytes: 64 << 10},
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
		Notify:    NotifyDefaults(),
		Tracing:   TracingConfig{SampleRatio: 1},
		Workflows: WorkflowsConfig{MaxSteps: 100, Sweep: 5 * time.Second},
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

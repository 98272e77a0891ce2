package config

import "time"

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
	// LockTimeout bounds a statement's wait for a lock (lock_timeout): past
	// it the statement fails as a lock conflict, which is retried, then a
	// 503. Default 5s; 0 or negative: no limit.
	LockTimeout time.Duration `mapstructure:"lock_timeout"`
	// StatementTimeout bounds every statement (statement_timeout);
	// migrations and backups lift it. Default 60s; 0 or negative: no limit.
	StatementTimeout time.Duration `mapstructure:"statement_timeout"`
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
	// Cache keeps ended tasks' results in Redis for repeated reads.
	Cache ResultCacheConfig `mapstructure:"cache"`
}

// ResultCacheConfig configures the result cache.
type ResultCacheConfig struct {
	// Enabled turns the cache on. Default true.
	Enabled bool `mapstructure:"enabled"`
	// TTL is how long an entry is served. Default 1m.
	TTL time.Duration `mapstructure:"ttl"`
	// MaxBytes is the largest entry cached. Default 65536.
	MaxBytes int `mapstructure:"max_bytes"`
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

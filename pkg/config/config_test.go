package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/taskforge/taskforge/pkg/config"
)

// clearEnv hides every TASKFORGE_* variable of the surrounding environment from
// the test (t.Setenv restores them afterwards).
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, config.EnvPrefix+"_") {
			t.Setenv(k, "")
			require.NoError(t, os.Unsetenv(k))
		}
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "taskforge.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func TestLoadWithoutFileOrEnvGivesDefaults(t *testing.T) {
	clearEnv(t)
	cfg, err := config.Load("")
	require.NoError(t, err)
	require.Equal(t, config.Defaults(), cfg)
	require.NoError(t, cfg.Validate())
	require.True(t, cfg.IsDevelopment())
}

func TestPrecedenceDefaultsFileEnv(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, `
redis:
  addr: file-redis:6379
  db: 3
api:
  addr: 0.0.0.0:9000
storage:
  s3:
    bucket: from-file
monitor:
  collect_interval: 2s
`)
	t.Setenv("TASKFORGE_REDIS_ADDR", "env-redis:6380")
	t.Setenv("TASKFORGE_STORAGE_S3_REGION", "eu-west-3")
	t.Setenv("TASKFORGE_MONITOR_COLLECT_INTERVAL", "750ms")
	t.Setenv("TASKFORGE_WORKER_STRICT_PRIORITY", "false")

	cfg, err := config.Load(path)
	require.NoError(t, err)
	require.Equal(t, "env-redis:6380", cfg.Redis.Addr, "env beats file")
	require.Equal(t, 3, cfg.Redis.DB, "file beats default")
	require.Equal(t, "0.0.0.0:9000", cfg.API.Addr, "file beats default")
	require.Equal(t, "from-file", cfg.Storage.S3.Bucket, "nested key from file")
	require.Equal(t, "eu-west-3", cfg.Storage.S3.Region, "nested key from env (TASKFORGE_STORAGE_S3_REGION)")
	require.Equal(t, 750*time.Millisecond, cfg.Monitor.CollectInterval, "env duration beats file")
	require.False(t, cfg.Worker.StrictPriority, "env bool beats default")
	require.Equal(t, config.Defaults().Worker.Concurrency, cfg.Worker.Concurrency, "untouched key keeps its default")
	require.NoError(t, cfg.Validate())
}

func TestConfigFileFromEnvironment(t *testing.T) {
	clearEnv(t)
	t.Setenv(config.EnvConfigFile, writeFile(t, "worker:\n  concurrency: 42\n"))
	cfg, err := config.Load("")
	require.NoError(t, err)
	require.Equal(t, 42, cfg.Worker.Concurrency)

	// An explicit path wins over TASKFORGE_CONFIG.
	cfg, err = config.Load(writeFile(t, "worker:\n  concurrency: 7\n"))
	require.NoError(t, err)
	require.Equal(t, 7, cfg.Worker.Concurrency)
}

func TestMissingFileIsAnError(t *testing.T) {
	clearEnv(t)
	_, err := config.Load(filepath.Join(t.TempDir(), "absent.yaml"))
	require.ErrorContains(t, err, "absent.yaml")
}

func TestEnvListsAndMaps(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, cfg config.Config)
	}{
		{
			name: "list of CIDRs",
			env:  map[string]string{"TASKFORGE_EGRESS_ALLOW_CIDRS": "10.0.0.0/8,192.168.0.0/16"},
			check: func(t *testing.T, cfg config.Config) {
				require.Equal(t, []string{"10.0.0.0/8", "192.168.0.0/16"}, cfg.Egress.AllowCIDRs)
			},
		},
		{
			name: "list with spaces and a single element",
			env:  map[string]string{"TASKFORGE_REDIS_ADDRS": " 10.0.0.1:26379 ", "TASKFORGE_API_CORS_ALLOW_ORIGINS": "https://a.example, https://b.example"},
			check: func(t *testing.T, cfg config.Config) {
				require.Equal(t, []string{"10.0.0.1:26379"}, cfg.Redis.Addrs)
				require.Equal(t, []string{"https://a.example", "https://b.example"}, cfg.API.CORSAllowOrigins)
			},
		},
		{
			name: "map entry keeps the other default entries",
			env:  map[string]string{"TASKFORGE_WORKER_TYPE_LIMITS": "backup_data=3"},
			check: func(t *testing.T, cfg config.Config) {
				require.Equal(t, map[string]int{"backup_data": 3, "optimize_database": 1}, cfg.Worker.TypeLimits)
			},
		},
		{
			name: "map with a new entry",
			env:  map[string]string{"TASKFORGE_WORKER_TYPE_LIMITS": "generate_report=4, backup_data=1"},
			check: func(t *testing.T, cfg config.Config) {
				require.Equal(t, map[string]int{"backup_data": 1, "optimize_database": 1, "generate_report": 4}, cfg.Worker.TypeLimits)
			},
		},
		{
			name: "queue weights",
			env:  map[string]string{"TASKFORGE_WORKER_QUEUE_WEIGHTS": "critical=20,low=2"},
			check: func(t *testing.T, cfg config.Config) {
				require.Equal(t, map[string]int{"critical": 20, "high": 4, "normal": 2, "low": 2}, cfg.Worker.QueueWeights)
			},
		},
		{
			name: "crypto keys",
			env:  map[string]string{"TASKFORGE_CRYPTO_KEYS": "k1=" + key32, "TASKFORGE_CRYPTO_ACTIVE_KEY": "k1"},
			check: func(t *testing.T, cfg config.Config) {
				require.Equal(t, map[string]string{"k1": key32}, cfg.Crypto.Keys)
				require.NoError(t, cfg.Validate())
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg, err := config.Load("")
			require.NoError(t, err)
			tc.check(t, cfg)
		})
	}
}

// key32 is a base64-encoded 32-byte key.
const key32 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

func TestFileMapsMergeOverDefaults(t *testing.T) {
	clearEnv(t)
	cfg, err := config.Load(writeFile(t, `
worker:
  queue_weights:
    high: 7
  type_limits:
    backup_data: 5
ratelimit:
  per_role:
    admin: {rps: 1000, burst: 2000}
`))
	require.NoError(t, err)
	require.Equal(t, map[string]int{"critical": 8, "high": 7, "normal": 2, "low": 1}, cfg.Worker.QueueWeights)
	require.Equal(t, map[string]int{"backup_data": 5, "optimize_database": 1}, cfg.Worker.TypeLimits)
	require.Equal(t, config.RateLimit{RPS: 1000, Burst: 2000}, cfg.RateLimit.PerRole["admin"])
	require.Equal(t, config.RateLimit{RPS: 20, Burst: 40}, cfg.RateLimit.PerRole["viewer"])
	require.NoError(t, cfg.Validate())
}

// TestBadValuesNameTheKeyAndTheValue covers both kinds of bad value: those Load
// cannot decode and those Validate refuses.
func TestBadValuesNameTheKeyAndTheValue(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		file   string
		key    string
		value  string // "" when the value must not appear (secrets)
		secret string // must not appear in the error
	}{
		{name: "redis mode", env: map[string]string{"TASKFORGE_REDIS_MODE": "triple"}, key: "redis.mode", value: `"triple"`},
		{name: "api addr without port", env: map[string]string{"TASKFORGE_API_ADDR": "8080"}, key: "api.addr", value: `"8080"`},
		{name: "api addr with a named port", env: map[string]string{"TASKFORGE_API_ADDR": "127.0.0.1:http"}, key: "api.addr", value: `"127.0.0.1:http"`},
		{name: "duration without unit in env", env: map[string]string{"TASKFORGE_MONITOR_COLLECT_INTERVAL": "5"}, key: "monitor.collect_interval", value: `"5"`},
		{name: "duration that is a word", env: map[string]string{"TASKFORGE_API_SHUTDOWN_TIMEOUT": "soon"}, key: "api.shutdown_timeout", value: `"soon"`},
		{name: "bare number as duration in a file", file: "worker:\n  flush_interval: 50\n", key: "worker.flush_interval", value: `"50"`},
		{name: "negative duration", env: map[string]string{"TASKFORGE_SCHEDULER_SYNC_INTERVAL": "-5s"}, key: "scheduler.sync_interval", value: "-5s"},
		{name: "collect interval too short", env: map[string]string{"TASKFORGE_MONITOR_COLLECT_INTERVAL": "1ms"}, key: "monitor.collect_interval", value: "1ms"},
		{name: "integer", env: map[string]string{"TASKFORGE_WORKER_CONCURRENCY": "many"}, key: "worker.concurrency", value: `"many"`},
		{name: "integer out of range", env: map[string]string{"TASKFORGE_WORKER_SERVERS": "100"}, key: "worker.servers", value: "100"},
		{name: "boolean", env: map[string]string{"TASKFORGE_REDIS_TLS": "perhaps"}, key: "redis.tls", value: `"perhaps"`},
		{name: "map without =", env: map[string]string{"TASKFORGE_WORKER_TYPE_LIMITS": "backup_data"}, key: "worker.type_limits", value: `"backup_data"`},
		{name: "map value not a number", env: map[string]string{"TASKFORGE_WORKER_TYPE_LIMITS": "backup_data=lots"}, key: "worker.type_limits.backup_data", value: `"lots"`},
		{name: "map value below 1", env: map[string]string{"TASKFORGE_WORKER_TYPE_LIMITS": "backup_data=0"}, key: "worker.type_limits.backup_data", value: "0"},
		{name: "CIDR", env: map[string]string{"TASKFORGE_EGRESS_ALLOW_CIDRS": "10.0.0.0/8,10.0.0.0/33"}, key: "egress.allow_cidrs[1]", value: `"10.0.0.0/33"`},
		{name: "log level", env: map[string]string{"TASKFORGE_LOG_LEVEL": "loud"}, key: "log.level", value: `"loud"`},
		{name: "env", env: map[string]string{"TASKFORGE_ENV": "staging"}, key: "env", value: `"staging"`},
		{name: "sentinel without master", env: map[string]string{"TASKFORGE_REDIS_MODE": "sentinel", "TASKFORGE_REDIS_ADDRS": "10.0.0.1:26379"}, key: "redis.master_name", value: `""`},
		{name: "cluster with db", env: map[string]string{"TASKFORGE_REDIS_MODE": "cluster", "TASKFORGE_REDIS_ADDRS": "10.0.0.1:7000", "TASKFORGE_REDIS_DB": "2"}, key: "redis.db", value: "2"},
		{name: "public url", env: map[string]string{"TASKFORGE_API_PUBLIC_URL": "ftp://x"}, key: "api.public_url", value: `"ftp://x"`},
		{name: "storage backend", file: "storage:\n  backend: floppy\n", key: "storage.backend", value: `"floppy"`},
		{name: "secret map without = is masked", env: map[string]string{"TASKFORGE_CRYPTO_KEYS": "hunter2-not-a-pair"}, key: "crypto.keys", secret: "hunter2-not-a-pair"},
		{name: "short crypto key is masked", env: map[string]string{"TASKFORGE_CRYPTO_KEYS": "k1=aHVudGVyMg==", "TASKFORGE_CRYPTO_ACTIVE_KEY": "k1"}, key: "crypto.keys.k1", secret: "aHVudGVyMg=="},
		{name: "database url password is masked", env: map[string]string{"TASKFORGE_DATABASE_URL": "postgres://u:hunter2@/db"}, key: "database.url", secret: "hunter2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			path := ""
			if tc.file != "" {
				path = writeFile(t, tc.file)
			}
			cfg, err := config.Load(path)
			if err == nil {
				err = cfg.Validate()
			}
			require.Error(t, err)
			require.True(t, errors.Is(err, config.ErrInvalid), "%v does not wrap ErrInvalid", err)
			msg := err.Error()
			require.Contains(t, msg, tc.key+" = ", "the error names the key")
			if tc.value != "" {
				require.Contains(t, msg, tc.key+" = "+tc.value, "the error names the value")
			}
			if tc.secret != "" {
				require.NotContains(t, msg, tc.secret, "the error shows a secret")
			}
			require.NotContains(t, msg, "decoding failed", "mapstructure's wording leaked")
		})
	}
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	cfg := config.Defaults()
	cfg.Redis.Mode = "triple"
	cfg.API.Addr = "nowhere"
	cfg.Worker.Concurrency = 0
	err := cfg.Validate()
	require.Error(t, err)
	for _, key := range []string{"redis.mode", "api.addr", "worker.concurrency"} {
		require.Contains(t, err.Error(), key)
	}
	require.Len(t, strings.Split(err.Error(), "\n"), 3)
}

// TestFlushGapBounds: worker.flush_gap defaults to 5ms, 0 turns it off, and a
// negative gap or one longer than worker.flush_interval is refused by name.
func TestFlushGapBounds(t *testing.T) {
	cfg := config.Defaults()
	require.Equal(t, 5*time.Millisecond, cfg.Worker.FlushGap)
	for _, ok := range []time.Duration{0, cfg.Worker.FlushInterval} {
		cfg.Worker.FlushGap = ok
		require.NoError(t, cfg.Validate(), ok)
	}
	for _, bad := range []time.Duration{-time.Millisecond, cfg.Worker.FlushInterval + time.Millisecond} {
		cfg.Worker.FlushGap = bad
		err := cfg.Validate()
		require.ErrorContains(t, err, "worker.flush_gap", bad)
	}
}

func TestProductionRefusesWeakJWTSecrets(t *testing.T) {
	t.Parallel()
	prod := func(secret, jwks string) error {
		cfg := config.Defaults()
		cfg.Env = "production"
		cfg.Auth.JWTSecret = secret
		cfg.Auth.JWKSURL = jwks
		return cfg.Validate()
	}
	long := strings.Repeat("s", 40)
	tests := []struct {
		name, secret, jwks string
		refused            bool
	}{
		{"example secret", config.ExampleJWTSecret, "", true},
		{"empty secret without JWKS", "", "", true},
		{"short secret", "only-twenty-chars-xx", "", true},
		{"long secret", long, "", false},
		{"JWKS only", "", "https://idp.example/.well-known/jwks.json", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := prod(tc.secret, tc.jwks)
			require.Error(t, err, "production without crypto keys is refused anyway")
			if tc.refused {
				require.Contains(t, err.Error(), "auth.jwt_secret")
			} else {
				require.NotContains(t, err.Error(), "auth.jwt_secret")
			}
			if tc.secret != "" {
				require.NotContains(t, err.Error(), tc.secret, "the error shows the secret")
			}
		})
	}

	// Development accepts the example and the empty secret.
	for _, s := range []string{config.ExampleJWTSecret, ""} {
		cfg := config.Defaults()
		cfg.Auth.JWTSecret = s
		require.NoError(t, cfg.Validate())
	}
}

func TestStringMasksEverySecret(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	// Give every field tagged secret a recognisable value.
	var n int
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		for i := 0; i < v.NumField(); i++ {
			f, fv := v.Type().Field(i), v.Field(i)
			switch {
			case f.Tag.Get("secret") == "true" && fv.Kind() == reflect.String:
				n++
				fv.SetString("SECRET" + strings.Repeat("x", n))
			case f.Tag.Get("secret") == "true" && fv.Kind() == reflect.Map:
				n++
				fv.Set(reflect.ValueOf(map[string]string{"k1": "SECRET-map-value"}))
			case fv.Kind() == reflect.Struct:
				fill(fv)
			}
		}
	}
	fill(reflect.ValueOf(&cfg).Elem())
	require.GreaterOrEqual(t, n, 12, "secret fields found")
	cfg.Database.URL = "postgres://taskforge:SECRET-db@db.internal:5432/taskforge?sslmode=require"
	cfg.Alerts.SlackWebhookURL = "https://hooks.slack.example/services/T0/B0/SECRET-path"

	out := cfg.String()
	require.NotContains(t, out, "SECRET")
	require.Contains(t, out, "db.internal:5432/taskforge", "the database address stays readable")
	require.Contains(t, out, "hooks.slack.example", "the webhook host stays readable")
	require.Contains(t, out, "k1:", "the key ids stay readable")
	require.Contains(t, out, "addr: 127.0.0.1:8080", "other keys are printed")

	// A DSN and a password in the query are masked too.
	cfg.Database.URL = "host=db user=u password=SECRET-dsn dbname=t"
	require.NotContains(t, cfg.String(), "SECRET")
	cfg.Database.URL = "postgres://u@db/t?password=SECRET-query&sslmode=require"
	out = cfg.String()
	require.NotContains(t, out, "SECRET")
	require.Contains(t, out, "sslmode=require")
}

// examplePath is the commented example configuration at the repository root.
const examplePath = "../../config/taskforge.example.yaml"

// flatten lists the dotted keys of m; the free maps count as one key each.
func flatten(prefix string, m map[string]any, out map[string]bool) {
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		sub, ok := v.(map[string]any)
		switch key {
		case "worker.queue_weights", "worker.type_limits", "crypto.keys", "ratelimit.per_role", "auth.max_priority":
			ok = false
		}
		if ok {
			flatten(key, sub, out)
			continue
		}
		out[key] = true
	}
}

// TestExampleFileListsEveryKeyWithItsDefault keeps config/taskforge.example.yaml
// in step with Defaults: every key appears, no unknown key does, and loading
// the file gives the defaults (but for the example JWT secret).
func TestExampleFileListsEveryKeyWithItsDefault(t *testing.T) {
	clearEnv(t)
	raw, err := os.ReadFile(examplePath)
	require.NoError(t, err)

	var file map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &file))
	inFile := map[string]bool{}
	flatten("", file, inFile)

	defaults := map[string]any{}
	require.NoError(t, mapstructure.Decode(config.Defaults(), &defaults))
	var norm map[string]any
	b, err := yaml.Marshal(defaults)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, &norm))
	inDefaults := map[string]bool{}
	flatten("", norm, inDefaults)

	var missing, unknown []string
	for k := range inDefaults {
		if !inFile[k] {
			missing = append(missing, k)
		}
	}
	for k := range inFile {
		if !inDefaults[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(unknown)
	require.Empty(t, missing, "keys missing from %s (add them with their default and a comment)", examplePath)
	require.Empty(t, unknown, "keys in %s that Config does not have", examplePath)

	cfg, err := config.Load(examplePath)
	require.NoError(t, err)
	want := config.Defaults()
	want.Auth.JWTSecret = config.ExampleJWTSecret
	require.Equal(t, want, cfg, "a value in the example differs from its default")
	require.NoError(t, cfg.Validate())

	cfg.Env = "production"
	require.ErrorContains(t, cfg.Validate(), "auth.jwt_secret", "production refuses the example's secret")
}

func TestLoadReportsEveryBadValueAtOnce(t *testing.T) {
	clearEnv(t)
	t.Setenv("TASKFORGE_WORKER_TYPE_LIMITS", "backup_data=lots")
	t.Setenv("TASKFORGE_MONITOR_COLLECT_INTERVAL", "5")
	t.Setenv("TASKFORGE_REDIS_TLS", "perhaps")
	_, err := config.Load(writeFile(t, "api:\n  body_limit: big\n"))
	require.ErrorIs(t, err, config.ErrInvalid)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, 4, err.Error())
	for _, want := range []string{
		`worker.type_limits.backup_data = "lots": must be a whole number`,
		`monitor.collect_interval = "5": must be a duration`,
		`redis.tls = "perhaps": must be true or false`,
		`api.body_limit = "big": must be a whole number`,
	} {
		require.Contains(t, err.Error(), want)
	}
}

// TestMonitorReadOnlyByDefaultInProduction: unset, monitor.read_only follows
// env; set, it is what it says.
func TestMonitorReadOnlyByDefaultInProduction(t *testing.T) {
	clearEnv(t)
	cfg, err := config.Load("")
	require.NoError(t, err)
	require.False(t, cfg.MonitorReadOnly(), "development")
	t.Setenv("TASKFORGE_ENV", "production")
	cfg, err = config.Load("")
	require.NoError(t, err)
	require.True(t, cfg.MonitorReadOnly(), "production")
	t.Setenv("TASKFORGE_MONITOR_READ_ONLY", "false")
	cfg, err = config.Load("")
	require.NoError(t, err)
	require.False(t, cfg.MonitorReadOnly(), "explicitly writable in production")
	t.Setenv("TASKFORGE_ENV", "")
	cfg, err = config.Load(writeFile(t, "env: development\nmonitor:\n  read_only: true\n"))
	require.NoError(t, err)
	require.False(t, cfg.MonitorReadOnly(), "the environment overrides the file")
	t.Setenv("TASKFORGE_MONITOR_READ_ONLY", "")
	cfg, err = config.Load(writeFile(t, "env: development\nmonitor:\n  read_only: true\n"))
	require.NoError(t, err)
	require.True(t, cfg.MonitorReadOnly(), "explicitly read-only in development")
}

// TestProductionJWTNeedsIssuerAndAudience is finding 8's configuration fix:
// outside development a JWT configuration without iss and aud, or a JWKS
// over plain http, does not start.
func TestProductionJWTNeedsIssuerAndAudience(t *testing.T) {
	cfg := config.Defaults()
	cfg.Env = "production"
	cfg.Auth.JWTSecret = strings.Repeat("s", 40)
	cfg.Auth.JWKSURL = "http://idp.example/jwks.json"
	err := cfg.Validate()
	for _, key := range []string{"auth.jwt_issuer", "auth.jwt_audience", "auth.jwks_url"} {
		require.ErrorContains(t, err, key)
	}
	cfg.Auth.JWTIssuer, cfg.Auth.JWTAudience, cfg.Auth.JWKSURL = "https://idp.example", "taskforge", "https://idp.example/jwks.json"
	err = cfg.Validate()
	for _, key := range []string{"auth.jwt_issuer", "auth.jwt_audience", "auth.jwks_url"} {
		require.NotContains(t, fmt.Sprint(err), key)
	}
	cfg.Auth.JWTLeeway, cfg.Auth.JWTMaxLifetime, cfg.Auth.JWTMinIssuedAt = time.Hour, 0, "yesterday"
	err = cfg.Validate()
	for _, key := range []string{"auth.jwt_leeway", "auth.jwt_max_lifetime", "auth.jwt_min_issued_at"} {
		require.ErrorContains(t, err, key)
	}
}

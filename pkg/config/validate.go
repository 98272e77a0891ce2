package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"go.yaml.in/yaml/v3"
)

// ExampleJWTSecret is the placeholder of the example configuration; it is refused
// outside development.
const ExampleJWTSecret = "change-me-example-secret"

// Validate checks every key a service depends on and returns all problems at once,
// each naming its key and the bad value.
func (c Config) Validate() error {
	var errs []error
	bad := func(key string, value any, why string) {
		errs = append(errs, fmt.Errorf("%w: %s = %v: %s", ErrInvalid, key, value, why))
	}
	oneOf := func(key, value string, allowed ...string) {
		if !slices.Contains(allowed, value) {
			bad(key, fmt.Sprintf("%q", value), "must be one of "+strings.Join(allowed, ", "))
		}
	}
	addr := func(key, value string) {
		_, port, err := net.SplitHostPort(value)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
			bad(key, fmt.Sprintf("%q", value), "must be host:port with a numeric port")
		}
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, d, "must be positive")
		}
	}

	oneOf("env", c.Env, "development", "production")
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	if c.Log.Format != "" {
		oneOf("log.format", c.Log.Format, "json", "console")
	}

	addr("api.addr", c.API.Addr)
	if u, err := url.Parse(c.API.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("api.public_url", fmt.Sprintf("%q", c.API.PublicURL), "must be an http(s) URL")
	}
	positive("api.shutdown_timeout", c.API.ShutdownTimeout)
	positive("api.read_timeout", c.API.ReadTimeout)
	positive("api.write_timeout", c.API.WriteTimeout)
	positive("api.idle_timeout", c.API.IdleTimeout)
	positive("api.enqueue_timeout", c.API.EnqueueTimeout)
	if c.API.BodyLimit < 1024 {
		bad("api.body_limit", c.API.BodyLimit, "must be at least 1024")
	}
	if c.API.UploadLimit < 1024 {
		bad("api.upload_limit", c.API.UploadLimit, "must be at least 1024")
	}
	positive("api.upload_timeout", c.API.UploadTimeout)

	addr("worker.admin_addr", c.Worker.AdminAddr)
	if c.Worker.Concurrency < 1 {
		bad("worker.concurrency", c.Worker.Concurrency, "must be at least 1")
	}
	if c.Worker.Servers < 1 || c.Worker.Servers > 64 {
		bad("worker.servers", c.Worker.Servers, "must be between 1 and 64")
	}
	for _, q := range []string{"critical", "high", "normal", "low"} {
		if w, ok := c.Worker.QueueWeights[q]; !ok || w < 1 {
			bad("worker.queue_weights."+q, c.Worker.QueueWeights[q], "must be at least 1")
		}
	}
	for typ, n := range c.Worker.TypeLimits {
		if n < 1 {
			bad("worker.type_limits."+typ, n, "must be at least 1")
		}
	}
	positive("worker.shutdown_timeout", c.Worker.ShutdownTimeout)
	positive("worker.flush_interval", c.Worker.FlushInterval)
	if c.Worker.FlushGap < 0 || c.Worker.FlushGap > c.Worker.FlushInterval {
		bad("worker.flush_gap", c.Worker.FlushGap, "must be between 0 and worker.flush_interval")
	}
	if c.Worker.TaskCheckInterval < 10*time.Millisecond {
		bad("worker.task_check_interval", c.Worker.TaskCheckInterval, "must be at least 10ms")
	}
	if c.Worker.BurstPoll != 0 && c.Worker.BurstPoll < time.Millisecond {
		bad("worker.burst_poll", c.Worker.BurstPoll, "must be 0 (off) or at least 1ms")
	}
	if c.Worker.BurstPoll != 0 && c.Worker.BurstLinger < 100*time.Millisecond {
		bad("worker.burst_linger", c.Worker.BurstLinger, "must be at least 100ms")
	}
	if c.Worker.MaxMessages < 1 {
		bad("worker.max_messages", c.Worker.MaxMessages, "must be at least 1")
	}

	addr("scheduler.admin_addr", c.Scheduler.AdminAddr)
	positive("scheduler.sync_interval", c.Scheduler.SyncInterval)
	positive("scheduler.reconcile_interval", c.Scheduler.ReconcileInterval)
	positive("scheduler.shutdown_timeout", c.Scheduler.ShutdownTimeout)
	if c.Scheduler.CatchUp < 0 {
		bad("scheduler.catch_up", c.Scheduler.CatchUp, "must not be negative")
	}

	c.validateEvents(bad, positive)
	c.validateTracing(bad)
	c.validateWorkflows(bad)

	addr("monitor.addr", c.Monitor.Addr)
	if c.Monitor.CollectInterval < 100*time.Millisecond {
		bad("monitor.collect_interval", c.Monitor.CollectInterval, "must be at least 100ms")
	}
	positive("monitor.shutdown_timeout", c.Monitor.ShutdownTimeout)

	oneOf("redis.mode", c.Redis.Mode, "single", "sentinel", "cluster")
	switch c.Redis.Mode {
	case "single":
		addr("redis.addr", c.Redis.Addr)
	case "sentinel":
		if len(c.Redis.Addrs) == 0 {
			bad("redis.addrs", "[]", "sentinel mode needs the sentinels' addresses")
		}
		if c.Redis.MasterName == "" {
			bad("redis.master_name", `""`, "sentinel mode needs the master's name")
		}
	case "cluster":
		if len(c.Redis.Addrs) == 0 {
			bad("redis.addrs", "[]", "cluster mode needs node addresses")
		}
		if c.Redis.DB != 0 {
			bad("redis.db", c.Redis.DB, "cluster mode supports only db 0")
		}
	}
	for i, a := range c.Redis.Addrs {
		addr(fmt.Sprintf("redis.addrs[%d]", i), a)
	}
	if c.Redis.DB < 0 {
		bad("redis.db", c.Redis.DB, "must not be negative")
	}
	positive("redis.dial_timeout", c.Redis.DialTimeout)
	positive("redis.read_timeout", c.Redis.ReadTimeout)
	positive("redis.write_timeout", c.Redis.WriteTimeout)
	positive("redis.pool_timeout", c.Redis.PoolTimeout)
	if c.Redis.MaxRetries < 0 || c.Redis.MaxRetries > 10 {
		bad("redis.max_retries", c.Redis.MaxRetries, "must be between 0 and 10")
	}

	if u, err := url.Parse(c.Database.URL); c.Database.URL == "" || (err == nil && strings.HasPrefix(c.Database.URL, "postgres") && u.Host == "" && !strings.Contains(c.Database.URL, "host=")) {
		bad("database.url", maskedURL(c.Database.URL), "must be a postgres:// URL or a DSN")
	}
	if c.Database.MaxOpenConns < 1 {
		bad("database.max_open_conns", c.Database.MaxOpenConns, "must be at least 1")
	}

	if !c.IsDevelopment() {
		switch {
		case c.Auth.JWTSecret == ExampleJWTSecret:
			bad("auth.jwt_secret", "(masked)", "the example secret is refused outside development")
		case c.Auth.JWTSecret == "" && c.Auth.JWKSURL == "":
			bad("auth.jwt_secret", `""`, "must be set outside development (or set auth.jwks_url)")
		case c.Auth.JWTSecret != "" && len(c.Auth.JWTSecret) < 32:
			bad("auth.jwt_secret", "(masked)", "must be at least 32 characters")
		}
	}
	if !c.IsDevelopment() && (c.Auth.JWTSecret != "" || c.Auth.JWKSURL != "") {
		// A token minted for another application of the same identity
		// provider must not be accepted here.
		if c.Auth.JWTIssuer == "" {
			bad("auth.jwt_issuer", `""`, "must be set outside development when JWTs are accepted")
		}
		if c.Auth.JWTAudience == "" {
			bad("auth.jwt_audience", `""`, "must be set outside development when JWTs are accepted")
		}
		if u, err := url.Parse(c.Auth.JWKSURL); c.Auth.JWKSURL != "" && (err != nil || u.Scheme != "https" || u.Host == "") {
			bad("auth.jwks_url", fmt.Sprintf("%q", c.Auth.JWKSURL), "must be an https URL outside development")
		}
	}
	if c.Auth.KeyCacheTTL < 0 || c.Auth.KeyCacheTTL > time.Minute {
		bad("auth.key_cache_ttl", c.Auth.KeyCacheTTL, "must be between 0 and 1m")
	}
	if c.Auth.KeyCacheTTL > 0 && c.Database.MaxOpenConns == 1 {
		bad("database.max_open_conns", c.Database.MaxOpenConns, "must be at least 2 while auth.key_cache_ttl is set (the API listens for key changes on one connection)")
	}
	if c.Auth.JWTLeeway < 0 || c.Auth.JWTLeeway > 5*time.Minute {
		bad("auth.jwt_leeway", c.Auth.JWTLeeway, "must be between 0 and 5m")
	}
	if c.Auth.JWTMaxLifetime < time.Minute || c.Auth.JWTMaxLifetime > 30*24*time.Hour {
		bad("auth.jwt_max_lifetime", c.Auth.JWTMaxLifetime, "must be between 1m and 720h")
	}
	if c.Auth.JWTMinIssuedAt != "" {
		if _, err := time.Parse(time.RFC3339, c.Auth.JWTMinIssuedAt); err != nil {
			bad("auth.jwt_min_issued_at", fmt.Sprintf("%q", c.Auth.JWTMinIssuedAt), "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
		}
	}
	for role, prio := range c.Auth.MaxPriority {
		if !slices.Contains([]string{"viewer", "operator", "admin"}, role) {
			bad("auth.max_priority."+role, fmt.Sprintf("%q", prio), "is not a role (viewer, operator, admin)")
		} else {
			oneOf("auth.max_priority."+role, prio, "critical", "high", "normal", "low")
		}
	}
	for _, alg := range c.Auth.JWTAlgorithms {
		oneOf("auth.jwt_algorithms", alg, "HS256", "RS256", "ES256")
	}
	for id, k := range c.Crypto.Keys {
		raw, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(raw) != 32 {
			bad("crypto.keys."+id, "(masked)", "must be 32 bytes, base64-encoded")
		}
	}
	if len(c.Crypto.Keys) > 0 {
		if _, ok := c.Crypto.Keys[c.Crypto.ActiveKey]; !ok {
			bad("crypto.active_key", fmt.Sprintf("%q", c.Crypto.ActiveKey), "must name a key in crypto.keys")
		}
	} else if !c.IsDevelopment() {
		bad("crypto.keys", "{}", "production needs at least one key")
	}

	for i, cidr := range c.Egress.AllowCIDRs {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			bad(fmt.Sprintf("egress.allow_cidrs[%d]", i), fmt.Sprintf("%q", cidr), "must be a CIDR such as 10.0.0.0/8")
		}
	}
	for _, name := range []string{"price", "notify", "callbacks", "webhooks", "jwks"} {
		for i, cidr := range c.Egress.Purposes()[name].AllowCIDRs {
			if _, _, err := net.ParseCIDR(cidr); err != nil {
				bad(fmt.Sprintf("egress.%s.allow_cidrs[%d]", name, i), fmt.Sprintf("%q", cidr), "must be a CIDR such as 10.0.0.0/8")
			}
		}
	}
	positive("egress.connect_timeout", c.Egress.ConnectTimeout)
	positive("egress.timeout", c.Egress.Timeout)
	if c.Egress.MaxResponseBytes < 1 {
		bad("egress.max_response_bytes", c.Egress.MaxResponseBytes, "must be positive")
	}

	oneOf("storage.backend", c.Storage.Backend, "local", "s3")
	if c.Storage.Backend == "s3" && c.Storage.S3.Bucket == "" {
		bad("storage.s3.bucket", `""`, "s3 backend needs a bucket")
	}
	if !c.IsDevelopment() && len(c.Storage.SigningKey) < 16 {
		// Without a shared key every replica signs with its own random key and
		// a link made by one is refused by the others.
		bad("storage.signing_key", "(masked)", "must be set (16+ characters, the same on every replica) outside development")
	}
	positive("storage.link_ttl", c.Storage.LinkTTL)
	positive("storage.result_ttl", c.Storage.ResultTTL)

	if c.SMTP.TLS != "" {
		oneOf("smtp.tls", c.SMTP.TLS, "starttls", "tls", "none")
	}
	if c.SMTP.Port < 1 || c.SMTP.Port > 65535 {
		bad("smtp.port", c.SMTP.Port, "must be a port number")
	}
	oneOf("prices.provider", c.Prices.Provider, "simulated", "stooq")
	if c.Prices.BatchSize < 1 || c.Prices.BatchSize > 10000 {
		bad("prices.batch_size", c.Prices.BatchSize, "must be between 1 and 10000")
	}
	for role, rl := range c.RateLimit.PerRole {
		if rl.RPS <= 0 || rl.Burst < 1 {
			bad("ratelimit.per_role."+role, fmt.Sprintf("%+v", rl), "rps and burst must be positive")
		}
	}
	if pa := c.RateLimit.PerAddress; pa.RPS <= 0 || pa.Burst < 1 {
		bad("ratelimit.per_address", fmt.Sprintf("%+v", pa), "rps and burst must be positive")
	}
	if c.RateLimit.IPv6Prefix < 1 || c.RateLimit.IPv6Prefix > 128 {
		bad("ratelimit.ipv6_prefix", c.RateLimit.IPv6Prefix, "must be between 1 and 128")
	}
	positive("ratelimit.redis_timeout", c.RateLimit.RedisTimeout)
	positive("ratelimit.local_for", c.RateLimit.LocalFor)
	if c.Retention.AuditMin < 1 {
		bad("retention.audit_min", c.Retention.AuditMin, "must be at least 1")
	}
	if c.Retention.Audit < c.Retention.AuditMin {
		bad("retention.audit", c.Retention.Audit, fmt.Sprintf("must be at least retention.audit_min (%d)", c.Retention.AuditMin))
	}
	for i, cidr := range c.Proxy.TrustedCIDRs {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			if _, err := netip.ParseAddr(cidr); err != nil {
				bad(fmt.Sprintf("proxy.trusted_cidrs[%d]", i), fmt.Sprintf("%q", cidr), "must be a CIDR such as 10.0.0.0/8 or an address")
			}
		}
	}
	oneOf("proxy.header", strings.ToLower(c.Proxy.Header), "x-forwarded-for", "forwarded")
	errs = append(errs, c.Notify.validate()...)
	errs = append(errs, c.Push.validate()...)
	return errors.Join(errs...)
}

// String prints the configuration as YAML with every secret masked.
func (c Config) String() string {
	m := map[string]any{}
	_ = mapstructure.Decode(c, &m)
	maskSecrets(reflect.TypeOf(c), m)
	out, err := yaml.Marshal(m)
	if err != nil {
		return fmt.Sprintf("config: %v", err)
	}
	return string(out)
}

// maskSecrets replaces the values of fields tagged secret:"true" in m.
func maskSecrets(t reflect.Type, m map[string]any) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := f.Tag.Get("mapstructure")
		val, ok := m[key]
		if !ok {
			continue
		}
		if f.Tag.Get("secret") == "true" {
			m[key] = mask(val)
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			if sub, ok := val.(map[string]any); ok {
				maskSecrets(f.Type, sub)
			}
		}
	}
}

func mask(v any) any {
	switch x := v.(type) {
	case string:
		if x == "" {
			return ""
		}
		if strings.Contains(x, "://") {
			return maskedURL(x)
		}
		return "********"
	case map[string]string:
		out := map[string]string{}
		for k := range x {
			out[k] = "********"
		}
		return out
	}
	return "********"
}

// maskedURL hides the secret parts of a URL and keeps the rest readable: the
// password (in the user info or, for PostgreSQL, a password parameter) and, for
// other URLs such as webhooks whose path is the secret, the path and query.
func maskedURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "********"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	if u.Scheme == "postgres" || u.Scheme == "postgresql" {
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		u.Path, u.RawPath, u.RawQuery, u.Fragment = "/********", "", "", ""
	}
	return u.String()
}

// validateEvents checks the events section.
func (c Config) validateEvents(bad func(string, any, string), positive func(string, time.Duration)) {
	e := c.Events
	if e.KeepAlive < 10*time.Millisecond {
		bad("events.keepalive", e.KeepAlive, "must be at least 10ms")
	}
	positive("events.write_timeout", e.WriteTimeout)
	positive("events.history_ttl", e.HistoryTTL)
	for key, n := range map[string]int64{
		"events.max_streams": int64(e.MaxStreams), "events.max_streams_per_caller": int64(e.MaxStreamsPerCaller),
		"events.buffer": int64(e.Buffer), "events.stream_max": e.StreamMax, "events.history": e.History,
		"events.resume_max": e.ResumeMax,
	} {
		if n < 1 {
			bad(key, n, "must be at least 1")
		}
	}
}

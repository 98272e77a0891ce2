package config

import "time"

// EventsConfig configures the live task events: what the writers (worker,
// API, scheduler) publish to Redis and the API's server-sent event streams.
type EventsConfig struct {
	// KeepAlive is the longest an open stream stays silent: a comment line is
	// sent after it, and a task's stream that had nothing to send re-reads
	// the task. Default 15s.
	KeepAlive time.Duration `mapstructure:"keepalive"`
	// WriteTimeout bounds each write to a stream's client; a client that does
	// not take an event within it (within ¾ of it at the least) is
	// disconnected. Default 10s.
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

// RateLimitConfig limits requests per caller, shared by all API replicas.
type RateLimitConfig struct {
	// Enabled turns rate limiting on. Default true.
	Enabled bool `mapstructure:"enabled"`
	// PerRole maps a role to requests per second and burst. Defaults: viewer
	// 20/40, operator 50/100, admin 200/400.
	PerRole map[string]RateLimit `mapstructure:"per_role"`
	// PerAddress limits requests per client address before authentication, so
	// that a flood of bad credentials stays bounded; each API replica keeps
	// it in memory (N replicas allow N times it). Default 200/400 (the
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

// Package ratelimit limits requests per caller with GCRA (the generic cell rate
// algorithm) kept in Redis, so every API replica draws on the same budget. One
// Lua script call per request reads and updates the caller's "theoretical
// arrival time"; the key expires when the caller's budget is full again.
//
// When Redis cannot be reached the limiter neither hangs nor refuses: each
// check has its own short deadline (Options.Timeout), and on a timeout or any
// Redis error the request is judged by an in-memory limiter of this replica
// with the same rate and burst, for callers and for the pre-authentication
// address guard alike (Decide). The limiter then stays on its local limits
// for Options.LocalFor before one request tries Redis again, so a stalled
// Redis costs one deadline per interval, not one per request. While degraded,
// N replicas allow up to N times the budget: rate limiting protects capacity,
// and refusing every request while Redis is away would turn a degraded
// dependency into a full outage of the reads that need only PostgreSQL; the
// requests that need Redis (creating tasks) answer 503 by themselves. The
// fallback is counted (taskforge_ratelimit_local_decisions_total, the gauge
// taskforge_ratelimit_degraded) and the middleware logs it at most every few
// seconds, never per request.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// ErrInvalidLimit means a rate or burst that is not positive.
var ErrInvalidLimit = errors.New("ratelimit: rate and burst must be positive")

// DefaultPrefix prefixes every key the limiter writes.
const DefaultPrefix = "taskforge:ratelimit:"

// gcra is the limiter's script. KEYS[1] is the caller's key; ARGV[1] the
// emission interval (µs per request), ARGV[2] the burst, ARGV[3] the current
// time in µs or "" for the Redis server's clock (one clock for all replicas).
// It returns {allowed (0|1), retry after (µs), remaining}.
const gcra = `
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, math.ceil(allow_at - now), 0}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, 0, math.floor((now - allow_at) / interval)}
`

// Limiter checks and spends request budgets in Redis.
type Limiter struct {
	rdb    redis.Scripter
	script *redis.Script
	prefix string
	// now, when set (tests), replaces the Redis server's clock.
	now  func() time.Time
	opts Options

	local *localLimiter
	// degraded is true while decisions are local; localUntil (Unix ns) is
	// when one request next tries Redis.
	degraded   atomic.Bool
	localUntil atomic.Int64

	localDecisions prometheus.Counter
	degradedGauge  prometheus.Gauge
}

// Options configure a Limiter.
type Options struct {
	// Timeout is the deadline of one Redis check in Decide; past it the
	// request is judged locally. The Redis client must honour context
	// deadlines (queue.RedisOpt's clients do). If zero, 200 milliseconds.
	Timeout time.Duration
	// LocalFor is how long Decide stays on local limits after Redis failed
	// before it tries Redis again. If zero, 2 seconds.
	LocalFor time.Duration
	// MaxLocalKeys caps the callers and addresses the local limiter tracks;
	// past it, keys whose budget is full again are dropped, and if none is,
	// new keys share one budget. If zero, 100000.
	MaxLocalKeys int
	// Registerer receives the fallback metrics. If nil, they are not exported.
	Registerer prometheus.Registerer
}

// New returns a Limiter on rdb (a *redis.Client, *redis.ClusterClient or
// redis.UniversalClient) writing keys under DefaultPrefix, with default
// Options.
func New(rdb redis.Scripter) (*Limiter, error) {
	return NewWithOptions(rdb, Options{})
}

// NewWithOptions is New with options.
func NewWithOptions(rdb redis.Scripter, o Options) (*Limiter, error) {
	if rdb == nil {
		return nil, errors.New("ratelimit: nil redis client")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.LocalFor <= 0 {
		o.LocalFor = DefaultLocalFor
	}
	if o.MaxLocalKeys <= 0 {
		o.MaxLocalKeys = 100000
	}
	l := &Limiter{rdb: rdb, script: redis.NewScript(gcra), prefix: DefaultPrefix, opts: o,
		local: newLocalLimiter(o.MaxLocalKeys),
		localDecisions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "taskforge_ratelimit_local_decisions_total",
			Help: "Rate-limit decisions this replica made alone because Redis did not answer in time.",
		}),
		degradedGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "taskforge_ratelimit_degraded",
			Help: "1 while the rate limiter judges requests by this replica's local limits (Redis unavailable).",
		}),
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{l.localDecisions, l.degradedGauge} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("ratelimit: metrics: %w", err)
			}
		}
	}
	return l, nil
}

// Defaults of Options.
const (
	DefaultTimeout  = 200 * time.Millisecond
	DefaultLocalFor = 2 * time.Second
)

// Decide spends one request of key's budget like Check, but never waits for
// Redis longer than Options.Timeout: on a timeout or a Redis error, and for
// Options.LocalFor after one, the request is judged by this replica's local
// limiter with the same rate and burst. local reports a local decision; err
// is the Redis error of the call that fell back (nil for the decisions made
// locally while degraded, and when Redis answered).
func (l *Limiter) Decide(ctx context.Context, key string, rate float64, burst int) (res Result, local bool, err error) {
	now := time.Now()
	if l.degraded.Load() {
		until := l.localUntil.Load()
		// One request per interval probes Redis; the others stay local.
		if now.UnixNano() < until || !l.localUntil.CompareAndSwap(until, now.Add(l.opts.LocalFor).UnixNano()) {
			l.localDecisions.Inc()
			return l.local.check(key, rate, burst, now), true, nil
		}
	}
	cctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	res, err = l.Check(cctx, key, rate, burst)
	cancel()
	switch {
	case err == nil:
		if l.degraded.CompareAndSwap(true, false) {
			l.degradedGauge.Set(0)
		}
		return res, false, nil
	case errors.Is(err, ErrInvalidLimit):
		return res, false, err
	}
	l.localUntil.Store(time.Now().Add(l.opts.LocalFor).UnixNano())
	if !l.degraded.Swap(true) {
		l.degradedGauge.Set(1)
	}
	l.localDecisions.Inc()
	return l.local.check(key, rate, burst, now), true, err
}

// Degraded reports whether decisions are currently local.
func (l *Limiter) Degraded() bool { return l.degraded.Load() }

// Allow spends one request of key's budget: rate requests per second
// sustained, up to burst at once. When refused, retryAfter is how long until
// one request would be allowed. On a Redis error it returns allowed = true
// (fail open) with the error.
func (l *Limiter) Allow(ctx context.Context, key string, rate float64, burst int) (allowed bool, retryAfter time.Duration, err error) {
	r, err := l.Check(ctx, key, rate, burst)
	return r.Allowed, r.RetryAfter, err
}

// Result is the outcome of Check.
type Result struct {
	Allowed bool
	// RetryAfter is how long until a request is allowed (0 when allowed).
	RetryAfter time.Duration
	// Remaining is how many more requests the budget allows right now.
	Remaining int
}

// Check is Allow with the remaining budget.
func (l *Limiter) Check(ctx context.Context, key string, rate float64, burst int) (Result, error) {
	if !(rate > 0) || burst < 1 || math.IsInf(rate, 0) {
		return Result{Allowed: true}, fmt.Errorf("%w: rate %v, burst %d", ErrInvalidLimit, rate, burst)
	}
	interval := math.Max(1, math.Round(1e6/rate)) // µs per request
	now := ""
	if l.now != nil {
		now = strconv.FormatInt(l.now().UnixMicro(), 10)
	}
	vals, err := l.script.Run(ctx, l.rdb, []string{l.prefix + key},
		strconv.FormatFloat(interval, 'f', 0, 64), burst, now).Int64Slice()
	if err != nil {
		return Result{Allowed: true}, fmt.Errorf("ratelimit: %w", err)
	}
	if len(vals) != 3 {
		return Result{Allowed: true}, fmt.Errorf("ratelimit: script returned %d values", len(vals))
	}
	return Result{
		Allowed:    vals[0] == 1,
		RetryAfter: time.Duration(vals[1]) * time.Microsecond,
		Remaining:  int(vals[2]),
	}, nil
}

// Package ratelimit limits requests per caller with GCRA (the generic cell rate
// algorithm) kept in Redis, so every API replica draws on the same budget. One
// Lua script call per request reads and updates the caller's "theoretical
// arrival time"; the key expires when the caller's budget is full again.
//
// On a Redis error the limiter fails open: the request is let through and the
// error reported (the middleware logs it, at most every few seconds). Rate
// limiting protects capacity; refusing every request while Redis is down would
// turn a degraded dependency into a full outage, and the requests that need
// Redis (creating tasks) answer 503 by themselves.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

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
	now func() time.Time
}

// New returns a Limiter on rdb (a *redis.Client, *redis.ClusterClient or
// redis.UniversalClient) writing keys under DefaultPrefix.
func New(rdb redis.Scripter) (*Limiter, error) {
	if rdb == nil {
		return nil, errors.New("ratelimit: nil redis client")
	}
	return &Limiter{rdb: rdb, script: redis.NewScript(gcra), prefix: DefaultPrefix}, nil
}

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

package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Semaphore is a cluster-wide counting semaphore in Redis with leases: each
// holder is a member of a sorted set scored by its lease's expiry, so a slot
// held by a crashed process frees itself when the lease ends. Holders renew
// their lease while they run. Expiry is judged by the Redis server's clock, so
// workers' clocks need not agree.
type Semaphore struct {
	rc     redis.UniversalClient
	prefix string
	ttl    time.Duration
}

// NewSemaphore returns a semaphore whose keys start with prefix and whose
// leases last ttl.
func NewSemaphore(rc redis.UniversalClient, prefix string, ttl time.Duration) *Semaphore {
	return &Semaphore{rc: rc, prefix: prefix, ttl: ttl}
}

// acquireScript drops expired holders, then renews ARGV[1]'s lease if it holds
// a slot or takes one if fewer than ARGV[2] are held. It returns 1 when the
// holder has a slot.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local exp = now + tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], exp, ARGV[1])
  return 1
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], exp, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  return 1
end
return 0`)

// renewScript extends ARGV[1]'s lease if it still holds a slot.
var renewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1`)

// countScript counts live holders.
var countScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')`)

func (s *Semaphore) key(name string) string { return s.prefix + name }

// Acquire takes one of limit slots of name for holder, or renews the lease if
// holder has one already. It reports whether holder has a slot.
func (s *Semaphore) Acquire(ctx context.Context, name, holder string, limit int) (bool, error) {
	n, err := acquireScript.Run(ctx, s.rc, []string{s.key(name)}, holder, limit, s.ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("worker: semaphore %s: acquire: %w", name, err)
	}
	return n == 1, nil
}

// Renew extends holder's lease; false means the lease had ended and the slot
// may have gone to someone else.
func (s *Semaphore) Renew(ctx context.Context, name, holder string) (bool, error) {
	n, err := renewScript.Run(ctx, s.rc, []string{s.key(name)}, holder, s.ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("worker: semaphore %s: renew: %w", name, err)
	}
	return n == 1, nil
}

// Release gives holder's slot back.
func (s *Semaphore) Release(ctx context.Context, name, holder string) error {
	if err := s.rc.ZRem(ctx, s.key(name), holder).Err(); err != nil {
		return fmt.Errorf("worker: semaphore %s: release: %w", name, err)
	}
	return nil
}

// Count is the number of live holders of name.
func (s *Semaphore) Count(ctx context.Context, name string) (int, error) {
	n, err := countScript.Run(ctx, s.rc, []string{s.key(name)}).Int()
	if err != nil {
		return 0, fmt.Errorf("worker: semaphore %s: count: %w", name, err)
	}
	return n, nil
}

package ratelimit

import (
	"math"
	"sync"
	"time"
)

// overflowKey is the budget that new keys share when the local table is full
// of callers still inside their burst.
const overflowKey = "\x00overflow"

// localLimiter is the same GCRA as the Redis script, in this process's memory:
// the fallback while Redis is unavailable. Each key's theoretical arrival time
// (Unix ns) is kept until its budget is full again.
type localLimiter struct {
	mu      sync.Mutex
	tat     map[string]int64
	maxKeys int
}

func newLocalLimiter(maxKeys int) *localLimiter {
	return &localLimiter{tat: map[string]int64{}, maxKeys: maxKeys}
}

// check spends one request of key's budget at now.
func (l *localLimiter) check(key string, rate float64, burst int, now time.Time) Result {
	if !(rate > 0) || burst < 1 || math.IsInf(rate, 0) {
		return Result{Allowed: true}
	}
	interval := int64(math.Max(1, math.Round(1e9/rate))) // ns per request
	t := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	tat, ok := l.tat[key]
	if !ok && len(l.tat) >= l.maxKeys {
		l.sweep(t)
		if len(l.tat) >= l.maxKeys {
			key = overflowKey
			tat = l.tat[key]
		}
	}
	if tat < t {
		tat = t
	}
	newTAT := tat + interval
	allowAt := newTAT - int64(burst)*interval
	if t < allowAt {
		return Result{RetryAfter: time.Duration(allowAt - t)}
	}
	l.tat[key] = newTAT
	return Result{Allowed: true, Remaining: int((t - allowAt) / interval)}
}

// sweep drops the keys whose budget is full again (as if never seen).
func (l *localLimiter) sweep(now int64) {
	for k, tat := range l.tat {
		if tat <= now {
			delete(l.tat, k)
		}
	}
}

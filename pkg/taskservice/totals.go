package taskservice

import (
	"fmt"
	"sync"
	"time"
)

// totals remembers, for TotalTTL, the total of a list whose total is the
// planner's estimate (more than CountCap matching rows): under load the
// pages of one filter cost one query each, not a page and an EXPLAIN. An
// exact total (CountCap rows or fewer) is counted on every page, so that
// what is reported as exact is. At most maxTotals filters are remembered;
// past that the expired ones are dropped, then arbitrary ones until half
// remain.
type totals struct {
	mu sync.Mutex
	m  map[string]rememberedTotal
}

type rememberedTotal struct {
	n     int64
	until time.Time
}

// TotalTTL is how long an estimated total is reused for the same filter.
const TotalTTL = time.Second

const maxTotals = 1024

func newTotals() *totals { return &totals{m: map[string]rememberedTotal{}} }

// key is w's identity: its conditions and their arguments.
func (w where) key() string { return fmt.Sprintf("%s\x00%v", w.sql(), w.args) }

// get returns the estimate remembered for key, if it is still fresh.
func (t *totals) get(key string, now time.Time) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.m[key]
	if !ok || !now.Before(r.until) {
		return 0, false
	}
	return r.n, true
}

// put remembers an estimate for key.
func (t *totals) put(key string, n int64, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= maxTotals {
		for k, r := range t.m {
			if !now.Before(r.until) || len(t.m) > maxTotals/2 {
				delete(t.m, k)
			}
		}
	}
	t.m[key] = rememberedTotal{n: n, until: now.Add(TotalTTL)}
}

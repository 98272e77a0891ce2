package taskservice

import (
	"fmt"
	"time"

	"github.com/taskforge/taskforge/pkg/memo"
)

// totals remembers, for TotalTTL, the total of a list whose total is the
// planner's estimate (more than CountCap matching rows): under load the
// pages of one filter cost one query each, not a page and an EXPLAIN. An
// exact total (CountCap rows or fewer) is counted on every page, so that
// what is reported as exact is. At most maxTotals filters are remembered.
type totals struct {
	m *memo.Map[string, rememberedTotal]
}

type rememberedTotal struct {
	n     int64
	until time.Time
}

// TotalTTL is how long an estimated total is reused for the same filter.
const TotalTTL = time.Second

const maxTotals = 1024

func newTotals() *totals { return &totals{m: memo.New[string, rememberedTotal](maxTotals)} }

// key is w's identity: its conditions and their arguments.
func (w where) key() string { return fmt.Sprintf("%s\x00%v", w.sql(), w.args) }

// get returns the estimate remembered for key, if it is still fresh.
func (t *totals) get(key string, now time.Time) (int64, bool) {
	r, ok := t.m.Get(key)
	if !ok || !now.Before(r.until) {
		return 0, false
	}
	return r.n, true
}

// put remembers an estimate for key.
func (t *totals) put(key string, n int64, now time.Time) {
	t.m.Put(key, rememberedTotal{n: n, until: now.Add(TotalTTL)})
}

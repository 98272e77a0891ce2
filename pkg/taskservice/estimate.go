package taskservice

import (
	"context"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/tasks"
)

// estimator answers estimated_duration: the median duration of the type's last
// n completed runs (an index-only walk of tasks_type_completed_idx), cached per
// type for ttl so that creating a task costs no query most of the time.
type estimator struct {
	db  *gorm.DB
	n   int
	ttl time.Duration

	mu    sync.Mutex
	cache map[string]estimate
}

type estimate struct {
	seconds int
	at      time.Time
}

func newEstimator(db *gorm.DB, n int, ttl time.Duration) *estimator {
	return &estimator{db: db, n: n, ttl: ttl, cache: map[string]estimate{}}
}

// estimate returns seconds for spec; on any error it falls back to the type's
// default, since an estimate is never worth failing a request.
func (e *estimator) estimate(ctx context.Context, spec tasks.Spec) int {
	e.mu.Lock()
	c, ok := e.cache[spec.Name]
	if ok && time.Since(c.at) < e.ttl {
		e.mu.Unlock()
		return c.seconds
	}
	// Refresh once: other callers keep the stale value meanwhile.
	e.cache[spec.Name] = estimate{seconds: orDefault(c.seconds, spec.EstimatedDuration), at: time.Now()}
	e.mu.Unlock()

	var median *float64
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err := e.db.WithContext(ctx).Raw(`
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)
FROM (SELECT duration_ms FROM tasks
      WHERE type = ? AND status = 'completed' AND duration_ms IS NOT NULL
      ORDER BY completed_at DESC LIMIT ?) recent`, spec.Name, e.n).Scan(&median).Error
	secs := spec.EstimatedDuration
	if err == nil && median != nil {
		secs = max(1, int(*median/1000+0.5))
	}
	e.mu.Lock()
	e.cache[spec.Name] = estimate{seconds: secs, at: time.Now()}
	e.mu.Unlock()
	return secs
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

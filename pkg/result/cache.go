package result

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// Defaults of CacheOptions.
const (
	DefaultCacheTTL      = time.Minute
	DefaultCacheMaxBytes = 64 << 10
	DefaultCacheTimeout  = 200 * time.Millisecond
	cachePrefix          = "taskforge:result-cache:"
)

// CacheOptions configure a Cache.
type CacheOptions struct {
	// TTL is how long an entry is served; it also bounds how long an entry
	// whose invalidation was lost (Redis away at that moment) can outlive
	// its task's change. If zero, one minute.
	TTL time.Duration
	// MaxBytes caps an entry: a larger result is not cached. If zero, 64 KiB.
	MaxBytes int
	// Timeout bounds each Redis call; a slow or absent Redis is a miss, never
	// a slower read. If zero, 200 ms.
	Timeout time.Duration
	// Registerer receives taskforge_result_cache_requests_total{outcome}
	// (hit, miss, skip: an entry too large or a task not ended). May be nil.
	Registerer prometheus.Registerer
}

// Cache keeps in Redis what the result route reads from PostgreSQL for an
// ended task — its status, owner, JSON result and result files' metadata — so
// that repeated reads of a result do not touch PostgreSQL. Entries are only
// written for ended tasks (completed, failed, cancelled: their results no
// longer change), and removed when a task leaves that state (a manual retry,
// through Forget in the retry's transaction and again through Publish after it
// committed), when one of its files is stored, and when the cleanup deletes
// it. A nil *Cache caches nothing.
type Cache struct {
	rc   redis.UniversalClient
	opts CacheOptions
	reqs *prometheus.CounterVec
}

// NewCache returns a Cache on rc.
func NewCache(rc redis.UniversalClient, o CacheOptions) (*Cache, error) {
	if rc == nil {
		return nil, errors.New("result: cache: nil redis client")
	}
	if o.TTL <= 0 {
		o.TTL = DefaultCacheTTL
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultCacheMaxBytes
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultCacheTimeout
	}
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "taskforge_result_cache_requests_total",
		Help: "Reads of the result cache, by outcome (hit, miss, skip).",
	}, []string{"outcome"})
	if o.Registerer != nil {
		if err := o.Registerer.Register(reqs); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			reqs = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	for _, o := range []string{"hit", "miss", "skip"} {
		reqs.WithLabelValues(o)
	}
	return &Cache{rc: rc, opts: o, reqs: reqs}, nil
}

// Cached is what the result route needs of an ended task.
type Cached struct {
	ID        string     `json:"id"`
	Status    string     `json:"status"`
	CreatedBy string     `json:"created_by"`
	Result    store.JSON `json:"result,omitempty"`
	Files     []Result   `json:"files,omitempty"`
}

func cacheKey(taskID string) string { return cachePrefix + taskID }

// Get returns task id's entry; ok is false on a miss (including a Redis
// failure).
func (c *Cache) Get(ctx context.Context, id string) (Cached, bool) {
	if c == nil {
		return Cached{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	b, err := c.rc.Get(ctx, cacheKey(id)).Bytes()
	var e Cached
	if err != nil || json.Unmarshal(b, &e) != nil || e.ID != id {
		c.reqs.WithLabelValues("miss").Inc()
		return Cached{}, false
	}
	c.reqs.WithLabelValues("hit").Inc()
	return e, true
}

// Put keeps e when its task has ended and it fits MaxBytes. A failure is
// ignored: the next read misses.
func (c *Cache) Put(ctx context.Context, e Cached) {
	if c == nil {
		return
	}
	b, err := json.Marshal(e)
	if err != nil || !tasks.IsTerminal(e.Status) || len(b) > c.opts.MaxBytes {
		c.reqs.WithLabelValues("skip").Inc()
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	_ = c.rc.Set(ctx, cacheKey(e.ID), b, c.opts.TTL).Err()
}

// Forget removes the entries of ids.
func (c *Cache) Forget(ctx context.Context, ids ...string) error {
	if c == nil || len(ids) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	// One key per call: the keys of a batch need not share a Cluster slot.
	pipe := c.rc.Pipeline()
	for _, id := range ids {
		pipe.Del(ctx, cacheKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("result: cache: forget: %w", err)
	}
	return nil
}

// Publish takes the lifecycle's committed changes (it is a
// lifecycle.Publisher): a task that moved back to pending after it had run
// (a manual retry; a new task's first version is 1) loses its entry. It does
// not block: the deletion runs in the background.
func (c *Cache) Publish(evs ...event.Event) {
	if c == nil {
		return
	}
	var ids []string
	for _, e := range evs {
		if e.Kind == event.KindTask && e.Status == tasks.StatusPending && e.Version > 1 {
			ids = append(ids, e.TaskID)
		}
	}
	if len(ids) > 0 {
		go func() { _ = c.Forget(context.Background(), ids...) }()
	}
}

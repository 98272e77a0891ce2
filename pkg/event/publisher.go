package event

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/config"
)

// Defaults of Options.
const (
	DefaultPrefix     = "taskforge:events"
	DefaultStreamMax  = 100_000
	DefaultHistory    = 1000
	DefaultHistoryTTL = 15 * time.Minute
	DefaultQueue      = 50_000
)

// Options name the streams and bound them. Publishers and readers of one
// deployment must agree on Prefix.
type Options struct {
	// Prefix names the keys: "{<prefix>}" is the shared stream and
	// "{<prefix>}:task:<id>" a task's own (one hash slot, so that a Redis
	// Cluster runs the script). If empty, "taskforge:events".
	Prefix string
	// StreamMax caps the shared stream (approximately, MAXLEN ~). If zero,
	// 100000.
	StreamMax int64
	// History caps a task's own stream (approximately). If zero, 1000.
	History int64
	// HistoryTTL is how long a task's own stream is kept after its last event.
	// If zero, 15 minutes.
	HistoryTTL time.Duration
	// Queue caps the events waiting to be written; past it new events are
	// dropped (and counted). If zero, 50000.
	Queue int
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.StreamMax <= 0 {
		o.StreamMax = DefaultStreamMax
	}
	if o.History <= 0 {
		o.History = DefaultHistory
	}
	if o.HistoryTTL <= 0 {
		o.HistoryTTL = DefaultHistoryTTL
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	return o
}

// AllKey is the key of the shared stream.
func (o Options) AllKey() string { return "{" + o.withDefaults().Prefix + "}" }

// TaskKey is the key of a task's own stream.
func (o Options) TaskKey(id string) string { return o.AllKey() + ":task:" + id }

// publishScript appends events to the shared stream and each, under the same
// id, to its task's own stream, whose lifetime it renews (once per task and
// call). KEYS[1] is the shared stream and KEYS[1+i] the task stream of the
// i-th event; ARGV holds the shared stream's cap, the history's cap and its
// lifetime in milliseconds, then for each event its number of field values
// and the values. The id of the shared stream always grows, so it is a valid
// next id of the task's stream too; should a task's stream somehow be ahead,
// the shared entry is kept and the history entry skipped. One call carries
// many events: Redis's cost of a script call is paid once for them.
var publishScript = redis.NewScript(`
local renewed = {}
local a = 4
for i = 2, #KEYS do
  local n = tonumber(ARGV[a])
  local f = {unpack(ARGV, a + 1, a + n)}
  a = a + n + 1
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(f))
  if pcall(redis.call, 'XADD', KEYS[i], 'MAXLEN', '~', ARGV[2], id, unpack(f)) and not renewed[KEYS[i]] then
    renewed[KEYS[i]] = true
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
  end
end
return #KEYS - 1`)

// Publisher writes events to Redis in the background: Publish queues them and
// returns at once; a single goroutine writes everything queued meanwhile in
// one pipeline. A nil *Publisher discards every event.
type Publisher struct {
	rc   redis.UniversalClient
	log  *zap.Logger
	opts Options
	m    *publisherMetrics

	mu      sync.Mutex
	queue   []Event
	closed  bool
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	// drainBy bounds the last write after Close.
	drainBy time.Time
}

type publisherMetrics struct {
	published *prometheus.CounterVec
	dropped   *prometheus.CounterVec
}

// NewPublisher starts a publisher on rc; its metrics
// (taskforge_events_published_total{kind} and
// taskforge_events_publish_dropped_total{reason}) go to reg when not nil.
// Close stops it.
func NewPublisher(rc redis.UniversalClient, log *zap.Logger, reg prometheus.Registerer, opts Options) (*Publisher, error) {
	if rc == nil || log == nil {
		return nil, errors.New("event: nil dependency")
	}
	m := &publisherMetrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_events_published_total",
			Help: "Live task events written to Redis after their change committed, by kind (task, log).",
		}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_events_publish_dropped_total",
			Help: "Live task events not published, by reason (queue_full, redis, closed); streams recover by re-reading the row.",
		}, []string{"reason"}),
	}
	var err error
	if m.published, err = register(reg, m.published); err != nil {
		return nil, err
	}
	if m.dropped, err = register(reg, m.dropped); err != nil {
		return nil, err
	}
	p := &Publisher{rc: rc, log: log, opts: opts.withDefaults(), m: m,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	go p.run()
	return p, nil
}

// register registers c in reg, or returns the collector already registered
// under its name (two publishers in one process share their counters).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// Publish queues events for writing. It never blocks; call it after the
// change's transaction committed.
func (p *Publisher) Publish(evs ...Event) {
	if p == nil || len(evs) == 0 {
		return
	}
	now := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.m.dropped.WithLabelValues("closed").Add(float64(len(evs)))
		return
	}
	room := p.opts.Queue - len(p.queue)
	n := min(room, len(evs))
	for _, e := range evs[:max(n, 0)] {
		e.Published = now
		p.queue = append(p.queue, e)
	}
	p.mu.Unlock()
	if n < len(evs) {
		p.m.dropped.WithLabelValues("queue_full").Add(float64(len(evs) - max(n, 0)))
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Close writes what is queued (until ctx ends) and stops the publisher.
func (p *Publisher) Close(ctx context.Context) {
	if p == nil {
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.stopped
		return
	}
	p.closed = true
	p.drainBy = time.Now().Add(5 * time.Second)
	if dl, ok := ctx.Deadline(); ok {
		p.drainBy = dl
	}
	p.mu.Unlock()
	close(p.stop)
	select {
	case <-p.stopped:
	case <-ctx.Done():
	}
}

func (p *Publisher) run() {
	defer close(p.stopped)
	for {
		select {
		case <-p.wake:
			p.write()
		case <-p.stop:
			p.write()
			return
		}
	}
}

// maxPipeline bounds the events of one pipeline.
const maxPipeline = 1000

// write sends everything queued, maxPipeline events per round trip.
func (p *Publisher) write() {
	for {
		p.mu.Lock()
		n := min(len(p.queue), maxPipeline)
		batch := p.queue[:n:n]
		p.queue = p.queue[n:]
		if len(p.queue) == 0 {
			p.queue = nil
		}
		drainBy := p.drainBy
		p.mu.Unlock()
		if n == 0 {
			return
		}
		timeout := 5 * time.Second
		if !drainBy.IsZero() {
			timeout = max(time.Until(drainBy), 10*time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := p.send(ctx, batch)
		cancel()
		if err != nil {
			p.m.dropped.WithLabelValues("redis").Add(float64(len(batch)))
			p.log.Warn("live events not published", zap.Int("events", len(batch)), zap.Error(err))
		}
	}
}

// perCall bounds the events of one script call, which Redis runs without
// serving anything else (a hundred events take it well under a millisecond).
const perCall = 100

// call is one script call's keys and arguments and the kinds of its events.
type call struct {
	keys  []string
	args  []any
	kinds []string
}

// send writes batch in one pipeline of script calls of up to perCall events
// each, loading the script once when Redis does not know it yet.
func (p *Publisher) send(ctx context.Context, batch []Event) error {
	ttl := strconv.FormatInt(p.opts.HistoryTTL.Milliseconds(), 10)
	var calls []call
	for _, e := range batch {
		f, err := e.fields()
		if err != nil {
			p.log.Error("live event not encodable", zap.String("task_id", e.TaskID), zap.Error(err))
			continue
		}
		if len(calls) == 0 || len(calls[len(calls)-1].kinds) == perCall {
			calls = append(calls, call{keys: []string{p.opts.AllKey()}, args: []any{p.opts.StreamMax, p.opts.History, ttl}})
		}
		c := &calls[len(calls)-1]
		c.keys = append(c.keys, p.opts.TaskKey(e.TaskID))
		c.args = append(append(c.args, len(f)), f...)
		c.kinds = append(c.kinds, e.Kind)
	}
	if len(calls) == 0 {
		return nil
	}
	for try := 0; ; try++ {
		pipe := p.rc.Pipeline()
		cmds := make([]*redis.Cmd, len(calls))
		for i, c := range calls {
			cmds[i] = publishScript.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		_, err := pipe.Exec(ctx)
		if err != nil && try == 0 && isNoScript(err) {
			if lerr := publishScript.Load(ctx, p.rc).Err(); lerr != nil {
				return lerr
			}
			continue
		}
		for i, cmd := range cmds {
			if cmd.Err() == nil {
				for _, k := range calls[i].kinds {
					p.m.published.WithLabelValues(k).Inc()
				}
			}
		}
		return err
	}
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

// FromConfig is the Options of the events configuration section.
func FromConfig(c config.EventsConfig) Options {
	return Options{StreamMax: c.StreamMax, History: c.History, HistoryTTL: c.HistoryTTL}
}

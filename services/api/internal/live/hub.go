// Package live fans the live task events out to the API's server-sent event
// streams. One Hub per API replica reads the shared Redis stream that the
// writers publish to (pkg/event), reads the changed rows from PostgreSQL once
// per batch for every stream that wants them, renders each row once, and hands
// the result to the subscribed streams without ever blocking on one of them:
// a stream that falls Options.Buffer events behind is dropped (its client
// resumes with Last-Event-ID). It also keeps the caps on open streams.
package live

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// Errors of Subscribe, and the reasons a subscription ends.
var (
	// ErrTooManyStreams: the replica has Options.MaxStreams open.
	ErrTooManyStreams = errors.New("live: too many open streams on this replica")
	// ErrTooManyForCaller: the caller has Options.MaxPerCaller open here.
	ErrTooManyForCaller = errors.New("live: too many open streams for this caller")
	// ErrSlow: the subscriber fell Options.Buffer events behind.
	ErrSlow = errors.New("live: stream fell behind")
	// ErrShutdown: the hub closed (the API is shutting down).
	ErrShutdown = errors.New("live: shutting down")
)

// Loader reads task rows by id (params redacted); ids that do not exist are
// absent from the map.
type Loader func(ctx context.Context, ids []string) (map[string]store.Task, error)

// Renderer is the JSON of a task as GET /api/v1/tasks/{id} shows it.
type Renderer func(store.Task) ([]byte, error)

// Options configure a Hub. Zero values get the defaults named.
type Options struct {
	// MaxStreams caps the subscriptions of the hub. If zero, 10000.
	MaxStreams int
	// MaxPerCaller caps one caller's subscriptions. If zero, 20.
	MaxPerCaller int
	// Buffer is each subscription's queue. If zero, 64.
	Buffer int
	// Registerer receives the metrics. If nil, they are not registered.
	Registerer prometheus.Registerer
}

// Delivery is one event for a subscriber.
type Delivery struct {
	// ID is the event's stream position.
	ID string
	// Kind is event.KindTask or event.KindLog.
	Kind   string
	TaskID string
	// Version and Terminal describe the row a task event shows.
	Version  int64
	Terminal bool
	// Data is the event's JSON: the task view or the log line.
	Data []byte
	// Published is when the writer published it.
	Published time.Time
}

// Filter tells a subscription of every task which rows it shows.
type Filter func(store.Task) bool

// Interest is what a subscription receives: one task's events (TaskID set),
// or the task events of every row Filter accepts (nil: every row). Owner,
// when set, narrows those to the rows Owner created (store.Task.CreatedBy),
// so that an event is offered only to the subscriptions of its row's owner
// and to those without one, not to every open stream.
type Interest struct {
	TaskID string
	Owner  string
	Filter Filter
}

// Sub is one subscription. C delivers its events and is closed when the hub
// drops it; Err then says why.
type Sub struct {
	C      <-chan *Delivery
	c      chan *Delivery
	hub    *Hub
	caller string
	in     Interest
	err    error
	done   bool
}

// Hub is the fan-out of one API replica.
type Hub struct {
	rdr    *event.Reader
	load   Loader
	render Renderer
	log    *zap.Logger
	opts   Options
	m      *metrics

	mu     sync.Mutex
	byTask map[string]map[*Sub]struct{}
	// byOwner holds the subscriptions of every task that have an Owner,
	// anyOwner those that have none.
	byOwner  map[string]map[*Sub]struct{}
	anyOwner map[*Sub]struct{}
	callers  map[string]int
	open     int
	closed   bool
	stop     chan struct{}
	stopped  chan struct{}
	runStart sync.Once
}

// New returns a Hub; Start runs it and Close stops it.
func New(rdr *event.Reader, load Loader, render Renderer, log *zap.Logger, opts Options) (*Hub, error) {
	if rdr == nil || load == nil || render == nil || log == nil {
		return nil, errors.New("live: nil dependency")
	}
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = 10000
	}
	if opts.MaxPerCaller <= 0 {
		opts.MaxPerCaller = 20
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 64
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Hub{rdr: rdr, load: load, render: render, log: log, opts: opts, m: m,
		byTask: map[string]map[*Sub]struct{}{}, byOwner: map[string]map[*Sub]struct{}{}, anyOwner: map[*Sub]struct{}{},
		callers: map[string]int{},
		stop:    make(chan struct{}), stopped: make(chan struct{})}, nil
}

// Reader is the hub's reader of the event streams (for snapshots and
// resumption).
func (h *Hub) Reader() *event.Reader { return h.rdr }

// Subscribe opens a subscription for caller to what in says.
func (h *Hub) Subscribe(caller string, in Interest) (*Sub, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, ErrShutdown
	case h.open >= h.opts.MaxStreams:
		h.m.rejected.WithLabelValues("replica").Inc()
		return nil, ErrTooManyStreams
	case h.callers[caller] >= h.opts.MaxPerCaller:
		h.m.rejected.WithLabelValues("caller").Inc()
		return nil, ErrTooManyForCaller
	}
	c := make(chan *Delivery, h.opts.Buffer)
	s := &Sub{C: c, c: c, hub: h, caller: caller, in: in}
	switch {
	case in.TaskID != "":
		addSub(h.byTask, in.TaskID, s)
	case in.Owner != "":
		addSub(h.byOwner, in.Owner, s)
	default:
		h.anyOwner[s] = struct{}{}
	}
	h.open++
	h.callers[caller]++
	h.m.open.Inc()
	return s, nil
}

// Close ends the subscription (the stream ended).
func (s *Sub) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.drop(s, nil)
}

// Err says why C was closed: ErrSlow or ErrShutdown (nil while open or after
// Close).
func (s *Sub) Err() error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.err
}

// Delivered records that d reached the client: the delivered counter and the
// publish-to-deliver latency.
func (h *Hub) Delivered(d *Delivery) {
	h.m.delivered.WithLabelValues(d.Kind).Inc()
	if !d.Published.IsZero() {
		h.m.latency.Observe(time.Since(d.Published).Seconds())
	}
}

// Wrote counts one write of one or more events to a stream client.
func (h *Hub) Wrote() { h.m.writes.Inc() }

// Dropped counts a stream closed for a reason other than the hub's (a write
// that passed its deadline).
func (h *Hub) Dropped(reason string) { h.m.dropped.WithLabelValues(reason).Inc() }

// drop removes s (h.mu held) and closes its channel with err.
func (h *Hub) drop(s *Sub, err error) {
	if s.done {
		return
	}
	s.done, s.err = true, err
	switch {
	case s.in.TaskID != "":
		removeSub(h.byTask, s.in.TaskID, s)
	case s.in.Owner != "":
		removeSub(h.byOwner, s.in.Owner, s)
	default:
		delete(h.anyOwner, s)
	}
	h.open--
	if h.callers[s.caller]--; h.callers[s.caller] <= 0 {
		delete(h.callers, s.caller)
	}
	h.m.open.Dec()
	if errors.Is(err, ErrSlow) {
		h.m.dropped.WithLabelValues("slow").Inc()
	}
	close(s.c)
}

func addSub(m map[string]map[*Sub]struct{}, key string, s *Sub) {
	set := m[key]
	if set == nil {
		set = map[*Sub]struct{}{}
		m[key] = set
	}
	set[s] = struct{}{}
}

func removeSub(m map[string]map[*Sub]struct{}, key string, s *Sub) {
	if set := m[key]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(m, key)
		}
	}
}

// Start begins reading the shared stream from its current end.
func (h *Hub) Start(ctx context.Context) {
	h.runStart.Do(func() { go h.run(ctx) })
}

// Close drops every subscription with ErrShutdown (their streams end) and
// stops reading, waiting until ctx ends at most.
func (h *Hub) Close(ctx context.Context) {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.stop)
		for s := range h.anyOwner {
			h.drop(s, ErrShutdown)
		}
		for _, m := range []map[string]map[*Sub]struct{}{h.byTask, h.byOwner} {
			for _, set := range m {
				for s := range set {
					h.drop(s, ErrShutdown)
				}
			}
		}
	}
	h.mu.Unlock()
	// A hub never started has nothing to wait for.
	h.runStart.Do(func() { close(h.stopped) })
	select {
	case <-h.stopped:
	case <-ctx.Done():
	}
}

// Shutdown is Close for http.Server.RegisterOnShutdown.
func (h *Hub) Shutdown() { h.Close(context.Background()) }

// readBlock bounds one XREAD, so that Close is seen soon.
const readBlock = time.Second

func (h *Hub) run(ctx context.Context) {
	defer close(h.stopped)
	after := ""
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-h.stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		if after == "" {
			last, err := h.rdr.Last(ctx, "")
			if err != nil {
				h.wait(&backoff, err)
				continue
			}
			after = last
		}
		entries, err := h.rdr.Read(ctx, after, 1000, readBlock)
		if err != nil {
			h.wait(&backoff, err)
			continue
		}
		backoff = 100 * time.Millisecond
		if len(entries) == 0 {
			continue
		}
		after = entries[len(entries)-1].ID
		h.dispatch(ctx, entries)
	}
}

func (h *Hub) wait(backoff *time.Duration, err error) {
	h.log.Warn("live events not read; retrying", zap.Error(err), zap.Duration("backoff", *backoff))
	select {
	case <-h.stop:
	case <-time.After(*backoff):
	}
	*backoff = min(*backoff*2, 5*time.Second)
}

// Render turns entries into deliveries: log lines as they are; task events
// with the row read now, rendered, when the row is at the event's version
// (a row already further along is shown by its own later event). rows may
// hold rows already read; the rest are loaded.
func Render(entries []event.Entry, rows map[string]store.Task, render Renderer) []Delivery {
	out := make([]Delivery, 0, len(entries))
	cache := map[string][]byte{}
	for _, e := range entries {
		d := Delivery{ID: e.ID, Kind: e.Kind, TaskID: e.TaskID, Published: e.Published}
		switch e.Kind {
		case event.KindLog:
			b, err := jsonLog(e.Log)
			if err != nil {
				continue
			}
			d.Data = b
		case event.KindTask:
			row, ok := rows[e.TaskID]
			if !ok || row.Version != e.Version {
				continue
			}
			b, ok := cache[e.TaskID]
			if !ok {
				var err error
				if b, err = render(row); err != nil {
					continue
				}
				cache[e.TaskID] = b
			}
			d.Data, d.Version, d.Terminal = b, row.Version, tasks.IsTerminal(row.Status)
		default:
			continue
		}
		out = append(out, d)
	}
	return out
}

// dispatch delivers one batch read from the shared stream.
func (h *Hub) dispatch(ctx context.Context, entries []event.Entry) {
	h.mu.Lock()
	anyAll := len(h.anyOwner) > 0 || len(h.byOwner) > 0
	want := map[string]bool{}
	var keep []event.Entry
	for _, e := range entries {
		if _, ok := h.byTask[e.TaskID]; ok || (anyAll && e.Kind == event.KindTask) {
			keep = append(keep, e)
			if e.Kind == event.KindTask {
				want[e.TaskID] = true
			}
		}
	}
	h.mu.Unlock()
	if len(keep) == 0 {
		return
	}
	rows := map[string]store.Task{}
	if len(want) > 0 {
		ids := make([]string, 0, len(want))
		for id := range want {
			ids = append(ids, id)
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		rows, err = h.load(lctx, ids)
		cancel()
		if err != nil {
			// The streams re-read their task when they hear nothing.
			h.log.Warn("changed tasks not read; their events are skipped", zap.Int("tasks", len(ids)), zap.Error(err))
			rows = map[string]store.Task{}
		}
	}
	ds := Render(keep, rows, h.render)
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range ds {
		// Every subscriber shares the one delivery (read-only): a queue holds
		// pointers, not copies.
		d := &ds[i]
		for s := range h.byTask[d.TaskID] {
			h.send(s, d)
		}
		if d.Kind != event.KindTask {
			continue
		}
		row := rows[d.TaskID]
		for s := range h.byOwner[row.CreatedBy] {
			h.offer(s, row, d)
		}
		for s := range h.anyOwner {
			h.offer(s, row, d)
		}
	}
}

// offer sends d to s if s's filter accepts row (h.mu held).
func (h *Hub) offer(s *Sub, row store.Task, d *Delivery) {
	if s.in.Filter == nil || s.in.Filter(row) {
		h.send(s, d)
	}
}

// send hands d to s, or drops s when its queue is full (h.mu held).
func (h *Hub) send(s *Sub, d *Delivery) {
	select {
	case s.c <- d:
	default:
		h.drop(s, ErrSlow)
	}
}

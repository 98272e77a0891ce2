package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// eventsRedisDB is the Redis database of the events benchmark.
const eventsRedisDB = 4003

// eventsConfig is the events benchmark's load.
type eventsConfig struct {
	bin         string
	streams     int
	taskStreams int
	callers     int
	rate        float64
	duration    time.Duration
	// workerServers is the worker's worker.servers (0: its default).
	workerServers int
}

// benchEvents measures live events through the real binaries: one API
// replica and one worker started from cfg.bin with a production
// configuration, N GET /api/v1/events streams (and a few per-task streams)
// open on the API while webhook_callback tasks complete at cfg.rate, their
// pace set by the loopback receiver they call.
// warmUp is the start of the completions left out of the steady pace, and
// paceHeld the share of the target pace that counts as holding it (the
// receiver's slots are a millisecond apart at 1,000/s and a missed one is
// never made up).
const (
	warmUp   = 2 * time.Second
	paceHeld = 0.98
)

func benchEvents(ctx context.Context, dbURL, redisAddr string, cfg eventsConfig) error {
	const dbName = "bench_api_events"
	if cfg.callers <= 0 {
		// Fill each caller's default cap (events.max_streams_per_caller 20).
		cfg.callers = (cfg.streams + 19) / 20
	}
	total := int(math.Round(cfg.rate * cfg.duration.Seconds()))
	if total < 1 || cfg.streams < 1 {
		return errors.New("events: need at least one stream and one task")
	}
	u, err := freshDatabase(ctx, dbURL, dbName)
	if err != nil {
		return err
	}
	defer dropDatabase(dbURL, dbName)
	rc := redis.NewClient(&redis.Options{Addr: redisAddr, DB: eventsRedisDB})
	err = rc.FlushDB(ctx).Err()
	_ = rc.Close()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "taskforge-bench-events")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// --- The receiver the webhook_callback tasks call: it answers at most
	// cfg.rate requests per second, which paces the completions.
	sink := newPacedSink(cfg.rate)
	sinkURL, stopSink, err := listen(sink)
	if err != nil {
		return err
	}
	defer stopSink()

	// --- Production configuration. Rate limits are raised (the benchmark's
	// clients all come from 127.0.0.1); everything else is the default.
	cfgFile := filepath.Join(dir, "taskforge.yaml")
	if err := os.WriteFile(cfgFile, []byte(`ratelimit:
  per_address: {rps: 1000000, burst: 1000000}
  per_role:
    operator: {rps: 1000000, burst: 1000000}
    admin: {rps: 1000000, burst: 1000000}
`), 0o600); err != nil {
		return err
	}
	apiAddr, err := freeAddr()
	if err != nil {
		return err
	}
	workerAddr, err := freeAddr()
	if err != nil {
		return err
	}
	adminKey := "tfbench_admin_" + randHex(16)
	cryptoKey := make([]byte, 32)
	_, _ = rand.Read(cryptoKey)
	apiURL := "http://" + apiAddr
	env := []string{
		"TASKFORGE_ENV=production",
		"TASKFORGE_CONFIG=" + cfgFile,
		"TASKFORGE_LOG_LEVEL=warn",
		"TASKFORGE_LOG_FORMAT=json",
		"TASKFORGE_DATABASE_URL=" + u,
		"TASKFORGE_REDIS_ADDR=" + redisAddr,
		"TASKFORGE_REDIS_DB=" + strconv.Itoa(eventsRedisDB),
		"TASKFORGE_AUTH_BOOTSTRAP_ADMIN_KEY=" + adminKey,
		"TASKFORGE_AUTH_JWT_SECRET=" + randHex(32),
		"TASKFORGE_AUTH_JWT_ISSUER=https://issuer.bench.invalid",
		"TASKFORGE_AUTH_JWT_AUDIENCE=taskforge-bench",
		"TASKFORGE_CRYPTO_KEYS=bench=" + base64.StdEncoding.EncodeToString(cryptoKey),
		"TASKFORGE_CRYPTO_ACTIVE_KEY=bench",
		"TASKFORGE_STORAGE_BACKEND=local",
		"TASKFORGE_STORAGE_LOCAL_DIR=" + filepath.Join(dir, "results"),
		"TASKFORGE_STORAGE_SIGNING_KEY=" + randHex(16),
		"TASKFORGE_API_ADDR=" + apiAddr,
		"TASKFORGE_API_PUBLIC_URL=" + apiURL,
		"TASKFORGE_WORKER_ADMIN_ADDR=" + workerAddr,
		"TASKFORGE_WORKER_CALLBACK_SECRET=" + randHex(32),
		"TASKFORGE_EGRESS_ALLOW_CIDRS=127.0.0.0/8",
		"TASKFORGE_PRICES_PROVIDER=simulated",
	}
	servers := "the worker's default Asynq servers"
	if cfg.workerServers > 0 {
		env = append(env, "TASKFORGE_WORKER_SERVERS="+strconv.Itoa(cfg.workerServers))
		servers = strconv.Itoa(cfg.workerServers) + " Asynq servers in the worker"
	}

	// --- The API.
	api, err := startService(dir, "api", filepath.Join(cfg.bin, "taskforge-api"), env)
	if err != nil {
		return err
	}
	defer func() {
		if err := api.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "api: %v\n%s\n", err, api.tail())
		}
	}()
	if err := api.waitReady(ctx, apiURL+"/readyz", 60*time.Second); err != nil {
		return err
	}
	keys := make([]string, cfg.callers)
	for i := range keys {
		if keys[i], err = createKey(ctx, apiURL, adminKey, fmt.Sprintf("bench-events-%d", i)); err != nil {
			return err
		}
	}

	fmt.Printf("live events: %d GET /api/v1/events streams (%d operator keys, streams spread evenly: each sees its key's tasks) "+
		"+ %d GET /api/v1/tasks/{id}/events streams (admin) on one API replica; %d webhook_callback tasks, completions paced at %.0f/s "+
		"by their loopback receiver; api and worker binaries with TASKFORGE_ENV=production, logs at warn, API keys over HTTP on loopback; "+
		"%s; %d CPUs shared by everything\n", cfg.streams, cfg.callers, cfg.taskStreams, total, cfg.rate, servers, runtime.NumCPU())

	metricsURL := apiURL + "/metrics"
	s0, err := settledScrape(ctx, metricsURL, adminKey)
	if err != nil {
		return err
	}

	// --- N /events streams, opened 32 at a time, before any task exists
	// (their snapshot is empty).
	var recording atomic.Bool
	sc := newStreamClient(&recording)
	sctx, closeStreams := context.WithCancel(ctx)
	defer closeStreams()
	stats := make([]*streamStats, cfg.streams)
	var readers sync.WaitGroup
	// openStreams opens streams from..to-1.
	openStreams := func(from, to int) error {
		return forEach(ctx, to-from, 32, func(j int) error {
			i := from + j
			br, body, err := sc.open(sctx, apiURL+"/api/v1/events", keys[i%cfg.callers])
			if err != nil {
				return err
			}
			st := &streamStats{}
			stats[i] = st
			readers.Add(1)
			go func() { defer readers.Done(); defer body.Close(); sc.read(br, st) }()
			return nil
		})
	}
	// In two halves: the second half's cost is the marginal one, without
	// what the first streams made grow once (Redis and PostgreSQL pools,
	// caches).
	half := cfg.streams / 2
	if err := openStreams(0, half); err != nil {
		return err
	}
	sHalf, err := settledScrape(ctx, metricsURL, adminKey)
	if err != nil {
		return err
	}
	if err := openStreams(half, cfg.streams); err != nil {
		return err
	}
	s1, err := settledScrape(ctx, metricsURL, adminKey)
	if err != nil {
		return err
	}
	streamMem := memDelta(s0, s1, cfg.streams)
	marginalMem := memDelta(sHalf, s1, cfg.streams-half)

	// --- The anchors, with the streams open and idle: N idle keep-alive
	// connections that each made one GET /healthz (memory), and sequential
	// GET /healthz round trips on one connection (latency).
	idle, err := openIdleConns(apiAddr, cfg.streams)
	if err != nil {
		return err
	}
	s2, err := settledScrape(ctx, metricsURL, adminKey)
	if err != nil {
		return err
	}
	connMem := memDelta(s1, s2, cfg.streams)
	for _, c := range idle {
		_ = c.Close()
	}
	anchor, err := roundTrips(ctx, apiURL+"/healthz", 2000, 0)
	if err != nil {
		return err
	}

	// --- The tasks, created while no worker runs (they wait in the queue).
	// The open streams receive their pending events; nothing is recorded yet.
	ids, err := createTasks(ctx, apiURL, keys, sinkURL+"/hook", total, 32)
	if err != nil {
		return err
	}
	taskStats := make([]*streamStats, cfg.taskStreams)
	for j := range taskStats {
		id := ids[int((float64(j)+0.5)*float64(total)/float64(cfg.taskStreams))]
		br, body, err := sc.open(sctx, apiURL+"/api/v1/tasks/"+id+"/events", adminKey)
		if err != nil {
			return err
		}
		st := &streamStats{}
		taskStats[j] = st
		readers.Add(1)
		go func() { defer readers.Done(); defer body.Close(); sc.read(br, st) }()
	}
	// Let the pending events drain before recording.
	if _, err := settledScrape(ctx, metricsURL, adminKey); err != nil {
		return err
	}
	s3, err := scrape(ctx, metricsURL, adminKey)
	if err != nil {
		return err
	}

	// --- The run: start the worker; record every task event from now on.
	recording.Store(true)
	started := time.Now()
	worker, err := startService(dir, "worker", filepath.Join(cfg.bin, "taskforge-worker"), env)
	if err != nil {
		return err
	}
	defer func() {
		if err := worker.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "worker: %v\n%s\n", err, worker.tail())
		}
	}()
	db, err := sql.Open("pgx", u)
	if err != nil {
		return err
	}
	defer db.Close()
	procs, err := newCPUProcs(ctx, db, redisAddr, namedPID{"api", api.pid()}, namedPID{"worker", worker.pid()})
	if err != nil {
		return err
	}
	cpuBefore := procs.sample()
	pctx, stopProbe := context.WithCancel(ctx)
	probeDone := make(chan []time.Duration, 1)
	go func() {
		lat, _ := roundTrips(pctx, apiURL+"/healthz", math.MaxInt, 20*time.Millisecond)
		probeDone <- lat
	}()
	limit := time.Duration(float64(cfg.duration)*4) + 2*time.Minute
	for sink.count.Load() < int64(total) {
		if time.Since(started) > limit {
			stopProbe()
			return fmt.Errorf("events: only %d of %d tasks reached the receiver in %s", sink.count.Load(), total, limit)
		}
		select {
		case <-worker.done:
			stopProbe()
			return fmt.Errorf("worker exited (%v):\n%s", worker.err, worker.tail())
		case <-ctx.Done():
			stopProbe()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	cpu := procs.sample().sub(cpuBefore)
	// Wait for the last events: until the API's delivered counter stops
	// moving.
	s4, err := settledScrape(ctx, metricsURL, adminKey)
	stopProbe()
	if err != nil {
		return err
	}
	healthUnderLoad := <-probeDone
	recording.Store(false)
	closeStreams()
	readers.Wait()

	// --- Figures.
	first, last := sink.span()
	rate := float64(total-1) / last.Sub(first).Seconds()
	var pub, commit, tpub, tcommit []time.Duration
	completed, streamErrs, received := 0, 0, 0
	for _, st := range stats {
		pub, commit = append(pub, st.pub...), append(commit, st.commit...)
		completed += st.completed
		received += len(st.pub)
		if st.err != nil {
			streamErrs++
		}
	}
	ended := 0
	for _, st := range taskStats {
		tpub, tcommit = append(tpub, st.pub...), append(tcommit, st.commit...)
		if st.endedByServer && st.lastStatus == "completed" {
			ended++
		}
	}
	expected := 0
	for i := range stats {
		k := i % cfg.callers
		expected += total / cfg.callers
		if k < total%cfg.callers {
			expected++
		}
	}
	run := s4.sub(s3)
	fmt.Printf("anchor: GET /healthz round trip on the same API with the %d streams open and idle: p50 %.2f ms  p99 %.2f ms (%d sequential requests)\n",
		cfg.streams, ms(pct(anchor, .50)), ms(pct(anchor, .99)), len(anchor))
	fmt.Printf("completions: %d tasks reached the receiver at %.0f/s (target %.0f/s)", total, rate, cfg.rate)
	steady, slowest, steadyOK := sink.steady(warmUp)
	if steadyOK {
		fmt.Printf("; after the first %s (the worker's start): %.0f/s, the slowest whole second %d", warmUp, steady, slowest)
	}
	fmt.Println()
	fmt.Printf("deliveries: %d task events on the /events streams while recording (%.0f/s over the %.1f s from the worker's start to the last completion); completed events %d of %d expected; "+
		"server: %0.f events written in %.0f writes, dropped consumers slow %.0f write %.0f; %d stream read errors\n",
		received, float64(received)/last.Sub(started).Seconds(), last.Sub(started).Seconds(), completed, expected,
		run[`taskforge_events_delivered_total{kind="task"}`]+run[`taskforge_events_delivered_total{kind="log"}`], run[`taskforge_events_writes_total`],
		run[`taskforge_events_dropped_consumers_total{reason="slow"}`], run[`taskforge_events_dropped_consumers_total{reason="write"}`], streamErrs)
	fmt.Printf("CPU ms per task from the worker's start to the last completion: %s\n",
		cpu.perTask(total, "api", "worker", "postgres", "redis", "load generator"))
	a50, a99 := pct(anchor, .50), pct(anchor, .99)
	line := func(name string, lat []time.Duration) {
		if len(lat) == 0 {
			fmt.Printf("  %s: no events\n", pad(name, 44))
			return
		}
		p50, p99 := pct(lat, .50), pct(lat, .99)
		fmt.Printf("  %s p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms  (n=%d; %.1f× / %.1f× the anchor's p50 / p99)\n",
			pad(name, 44), ms(p50), ms(p99), ms(pct(lat, 1)), len(lat), float64(p50)/float64(a50), float64(p99)/float64(a99))
	}
	fmt.Println("latency of the task events on the /events streams:")
	line("publish→receipt (Redis stream id → client)", pub)
	line("row updated_at→receipt", commit)
	h50, h99 := histQuantile(run, "taskforge_events_deliver_latency_seconds", .50), histQuantile(run, "taskforge_events_deliver_latency_seconds", .99)
	fmt.Printf("  %s p50 %7.2f ms  p99 %7.2f ms  (bucket interpolation, every stream)\n", pad("server: publish→write (its histogram)", 44), h50*1e3, h99*1e3)
	fmt.Printf("latency on the %d per-task streams (%d ended after their completed event):\n", cfg.taskStreams, ended)
	line("publish→receipt", tpub)
	line("row updated_at→receipt", tcommit)
	fmt.Printf("GET /healthz every 20 ms during the run: p50 %.2f ms  p99 %.2f ms (n=%d)\n",
		ms(pct(healthUnderLoad, .50)), ms(pct(healthUnderLoad, .99)), len(healthUnderLoad))
	fmt.Printf("API memory per open /events stream (idle, before any task): RSS %.1f KiB, Go heap+stacks %.1f KiB (heap in use %.1f, stacks %.1f), %.2f goroutines; %.0f GCs between the scrapes\n",
		streamMem.rss/1024, (streamMem.heap+streamMem.stacks)/1024, streamMem.heap/1024, streamMem.stacks/1024, streamMem.goroutines, streamMem.gcs)
	fmt.Printf("  the second half of the streams alone (marginal): RSS %.1f KiB, Go heap+stacks %.1f KiB (heap in use %.1f, stacks %.1f)\n",
		marginalMem.rss/1024, (marginalMem.heap+marginalMem.stacks)/1024, marginalMem.heap/1024, marginalMem.stacks/1024)
	// The heap figures move with the API's garbage collections between two
	// scrapes (a GC can even make a difference negative); RSS does not
	// shrink as soon, so the ratio is of RSS.
	fmt.Printf("anchor: per idle keep-alive HTTP connection on the same API: RSS %.1f KiB, Go heap+stacks %.1f KiB; a stream costs %.1f× its RSS\n",
		connMem.rss/1024, (connMem.heap+connMem.stacks)/1024, streamMem.rss/connMem.rss)
	p99 := pct(pub, .99)
	fmt.Printf("targets: publish→receipt p99 <= 100 ms: %v; RSS per stream <= 64 KiB: %v; completions after the first %s >= %.0f%% of the pace: %v\n",
		len(pub) > 0 && p99 <= 100*time.Millisecond, streamMem.rss <= 64*1024,
		warmUp, 100*paceHeld, steadyOK && steady >= paceHeld*cfg.rate)
	return nil
}

// memFigures are per-unit differences of the API's memory metrics.
type memFigures struct{ rss, heap, stacks, goroutines, gcs float64 }

func memDelta(a, b metricSet, n int) memFigures {
	d := b.sub(a)
	return memFigures{
		rss:        d["process_resident_memory_bytes"] / float64(n),
		heap:       d["go_memstats_heap_inuse_bytes"] / float64(n),
		stacks:     d["go_memstats_stack_inuse_bytes"] / float64(n),
		goroutines: d["go_goroutines"] / float64(n),
		gcs:        d["go_gc_duration_seconds_count"],
	}
}

// metricSet is one scrape.
type metricSet map[string]float64

func (m metricSet) sub(o metricSet) metricSet {
	out := metricSet{}
	for k, v := range m {
		out[k] = v - o[k]
	}
	return out
}

// settledScrape waits until the API's delivered-events counter and
// goroutine count stop changing (three scrapes 1 s apart agree), then
// returns the last scrape.
func settledScrape(ctx context.Context, url, token string) (metricSet, error) {
	var prev metricSet
	same := 0
	for range 60 {
		m, err := scrape(ctx, url, token)
		if err != nil {
			return nil, err
		}
		if prev != nil && m[`taskforge_events_delivered_total{kind="task"}`] == prev[`taskforge_events_delivered_total{kind="task"}`] &&
			m["go_goroutines"] == prev["go_goroutines"] {
			if same++; same >= 2 {
				return m, nil
			}
		} else {
			same = 0
		}
		prev = m
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return prev, nil
}

// histQuantile is a Prometheus histogram's quantile q, interpolated linearly
// within its bucket as histogram_quantile does.
func histQuantile(m metricSet, name string, q float64) float64 {
	type bucket struct{ le, n float64 }
	var bs []bucket
	prefix := name + `_bucket{le="`
	for k, v := range m {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(k[len(prefix):], `"}`), 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return math.NaN()
	}
	rank := q * bs[len(bs)-1].n
	lo, below := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return lo
			}
			return lo + (b.le-lo)*(rank-below)/math.Max(b.n-below, 1)
		}
		lo, below = b.le, b.n
	}
	return lo
}

func pct(all []time.Duration, p float64) time.Duration {
	if len(all) == 0 {
		return 0
	}
	if !slices.IsSorted(all) {
		slices.Sort(all)
	}
	return all[min(len(all)-1, int(float64(len(all))*p))]
}

// pacedSink answers every request 200, at most rate per second: a request
// beyond the pace waits for its slot.
type pacedSink struct {
	interval time.Duration
	mu       sync.Mutex
	next     time.Time
	// times are the answers' times, in order.
	times []time.Time
	count atomic.Int64
}

func newPacedSink(rate float64) *pacedSink {
	return &pacedSink{interval: time.Duration(float64(time.Second) / rate)}
}

func (s *pacedSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	now := time.Now()
	if s.next.Before(now) {
		s.next = now
	}
	slot := s.next
	s.next = s.next.Add(s.interval)
	s.mu.Unlock()
	time.Sleep(time.Until(slot))
	s.mu.Lock()
	s.times = append(s.times, time.Now())
	s.mu.Unlock()
	s.count.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"ok":true}`))
}

func (s *pacedSink) span() (time.Time, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.times) == 0 {
		return time.Time{}, time.Time{}
	}
	return s.times[0], s.times[len(s.times)-1]
}

// steady is the pace after the first warm of the answers (the worker's
// start: its servers, connections and statements warming up), and the
// fewest answers in one whole second of that span. A paced receiver only
// loses time: a slot no request waits for is gone, so a pace near the target
// means a request was waiting nearly always. ok is false when the span is
// shorter than a second.
func (s *pacedSink) steady(warm time.Duration) (rate float64, slowest int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.times) < 2 {
		return 0, 0, false
	}
	from := s.times[0].Add(warm)
	i := sort.Search(len(s.times), func(i int) bool { return !s.times[i].Before(from) })
	rest := s.times[i:]
	if len(rest) < 2 || rest[len(rest)-1].Sub(rest[0]) < time.Second {
		return 0, 0, false
	}
	rate = float64(len(rest)-1) / rest[len(rest)-1].Sub(rest[0]).Seconds()
	slowest = -1
	for j, end := 0, rest[0].Add(time.Second); !end.After(rest[len(rest)-1]); end = end.Add(time.Second) {
		n := 0
		for ; j < len(rest) && rest[j].Before(end); j++ {
			n++
		}
		if slowest < 0 || n < slowest {
			slowest = n
		}
	}
	return rate, slowest, true
}

// forEach runs fn(0..n-1) on conc goroutines and returns the first error.
func forEach(ctx context.Context, n, conc int, fn func(i int) error) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		return ctx.Err()
	}
	return firstErr
}

// createKey makes an operator API key through POST /api/v1/api-keys.
func createKey(ctx context.Context, apiURL, adminKey, name string) (string, error) {
	var out struct {
		Key string `json:"key"`
	}
	if err := postJSON(ctx, http.DefaultClient, apiURL+"/api/v1/api-keys", adminKey, map[string]string{"name": name, "role": "operator"}, &out); err != nil {
		return "", err
	}
	return out.Key, nil
}

// createTasks creates total webhook_callback tasks calling hook, task i by
// keys[i%len(keys)], from conc clients, and returns their ids by index.
func createTasks(ctx context.Context, apiURL string, keys []string, hook string, total, conc int) ([]string, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conc}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ids := make([]string, total)
	t0 := time.Now()
	err := forEach(ctx, total, conc, func(i int) error {
		body := map[string]any{"type": "webhook_callback", "params": map[string]any{"url": hook, "payload": map[string]int{"n": i}}}
		var out struct {
			TaskID string `json:"task_id"`
		}
		if err := postJSON(ctx, hc, apiURL+"/api/v1/tasks", keys[i%len(keys)], body, &out); err != nil {
			return err
		}
		ids[i] = out.TaskID
		return nil
	})
	if err == nil {
		fmt.Printf("created %d tasks in %.1f s (%.0f/s, worker not yet started)\n", total, time.Since(t0).Seconds(), float64(total)/time.Since(t0).Seconds())
	}
	return ids, err
}

func postJSON(ctx context.Context, hc *http.Client, url, token string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: status %d: %s", url, resp.StatusCode, rb)
	}
	return json.Unmarshal(rb, out)
}

// openIdleConns opens n connections to addr that each make one GET /healthz
// and then stay open, idle.
func openIdleConns(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return conns, err
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
			return conns, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return conns, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return conns, nil
}

// roundTrips times up to n sequential GETs of url on one keep-alive
// connection, every, until ctx ends.
func roundTrips(ctx context.Context, url string, n int, every time.Duration) ([]time.Duration, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var out []time.Duration
	for i := 0; i < n && ctx.Err() == nil; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		t0 := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return out, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out = append(out, time.Since(t0))
		if every > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}
	return out, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

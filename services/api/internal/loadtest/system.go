package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/taskforge/taskforge/pkg/store"
)

// Redis databases of the system benchmark: the stack's and the anchors'.
const (
	systemRedisDB = 4010
	anchorRedisDB = 4011
)

// systemConfig is the system benchmark's load.
type systemConfig struct {
	bin     string
	phases  []string
	clients []int // create: concurrent clients per measurement
	creates int   // create: requests per measurement
	rounds  int   // create: measurements per client count
	drain   int   // drain: tasks due at once
	runs    []serverRun
	e2e     int // end to end: tasks
	rows    int // list: rows loaded
	lists   int // list: requests per measurement
	flows   int // workflow: two-step workflows
	// flowRate paces the workflow phase's creates (a second).
	flowRate int
	// workerTaskCheck sets the worker's task_check_interval ("": default).
	workerTaskCheck string
	// workerBurstPoll sets the worker's burst_poll ("": default).
	workerBurstPoll string
}

// serverRun is a worker configuration: Asynq servers and their total
// concurrency.
type serverRun struct{ servers, concurrency int }

func (r serverRun) String() string { return fmt.Sprintf("%d×%d", r.servers, r.concurrency) }

func parseRuns(s string) ([]serverRun, error) {
	var out []serverRun
	for _, f := range strings.Fields(strings.ReplaceAll(s, ",", " ")) {
		a, b, ok := strings.Cut(f, "x")
		sv, err1 := strconv.Atoi(a)
		c, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || sv < 1 || c < sv {
			return nil, fmt.Errorf("runs: %q is not SERVERSxCONCURRENCY", f)
		}
		out = append(out, serverRun{sv, c})
	}
	return out, nil
}

// The processes whose CPU the phases print, in order.
var (
	stackProcs  = []string{"api", "worker", "scheduler", "monitor", "postgres", "redis", "load generator"}
	anchorProcs = []string{"anchor", "anchor servers", "postgres", "redis", "load generator"}
)

// benchSystem runs the phases of the system benchmark.
func benchSystem(ctx context.Context, dbURL, redisAddr string, cfg systemConfig) error {
	fmt.Printf("system benchmark: taskforge-api, -worker, -scheduler and -monitor binaries from %s, TASKFORGE_ENV=production, "+
		"JSON logs at info to files, audit on, rate limits on (raised so as not to refuse), API keys created through POST /api/v1/api-keys; "+
		"driven over HTTP on loopback by this separate process; anchors in a process of their own on the same Redis server; %d CPUs shared by everything; %s\n",
		cfg.bin, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	var main []string
	list := false
	for _, p := range cfg.phases {
		switch p {
		case "create", "drain", "e2e", "workflow":
			main = append(main, p)
		case "list":
			list = true
		default:
			return fmt.Errorf("system: unknown phase %q (create, drain, e2e, workflow, list)", p)
		}
	}
	if len(main) > 0 {
		st, err := startSystem(ctx, dbURL, redisAddr, cfg.bin, stackOptions{dbName: "bench_system", redisDB: systemRedisDB,
			workerTaskCheck: cfg.workerTaskCheck, workerBurstPoll: cfg.workerBurstPoll})
		if err != nil {
			return err
		}
		defer st.stop()
		procs, err := newCPUProcs(ctx, st.db, redisAddr,
			namedPID{"api", st.api.pid()}, namedPID{"worker", st.worker.pid()}, namedPID{"scheduler", st.scheduler.pid()}, namedPID{"monitor", st.monitor.pid()})
		if err != nil {
			return err
		}
		sink := newCountSink()
		sinkURL, stopSink, err := sink.listen()
		if err != nil {
			return err
		}
		defer stopSink()
		b := &systemBench{cfg: cfg, st: st, procs: procs, sink: sink, sinkURL: sinkURL, redisAddr: redisAddr}
		for _, p := range main {
			var err error
			switch p {
			case "create":
				err = b.create(ctx)
			case "drain":
				err = b.drain(ctx)
			case "e2e":
				err = b.endToEnd(ctx)
			case "workflow":
				err = b.workflowSteps(ctx)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
	}
	if list {
		return benchSystemList(ctx, dbURL, redisAddr, cfg)
	}
	return nil
}

type systemBench struct {
	cfg       systemConfig
	st        *systemStack
	procs     *cpuProcs
	sink      *countSink
	sinkURL   string
	redisAddr string
}

// anchor flushes the anchors' Redis database, starts an anchor process and
// adds it to the CPU accounting under name; stop ends it.
func (b *systemBench) anchor(ctx context.Context, name string, args ...string) (string, func(), error) {
	flushRedis(ctx, b.redisAddr, anchorRedisDB)
	return startAnchorNoFlush(ctx, b, name, args...)
}

func flushRedis(ctx context.Context, addr string, db int) {
	rc := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	_ = rc.FlushDB(ctx).Err()
	_ = rc.Close()
}

// --- create

func (b *systemBench) create(ctx context.Context) error {
	anchorURL, stop, err := b.anchor(ctx, "anchor", "-enqueue", "-delay", "1h")
	if err != nil {
		return err
	}
	defer stop()
	body := func(int) []byte {
		return []byte(`{"type":"refresh_portfolio","params":{"portfolio_id":"pf_1"},"priority":"normal","scheduled_for":"` +
			time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`)
	}
	apiReq := postRequests(b.st.apiURL+"/api/v1/tasks", b.st.operatorKey, body)
	anchorReq := postRequests(anchorURL+"/enqueue", "", body)
	fmt.Printf("\ncreate: POST /api/v1/tasks (refresh_portfolio scheduled an hour ahead, operator API key) against the anchor "+
		"bare Echo → asynq.Enqueue (the same body, ProcessAt an hour ahead); %d requests per measurement\n", b.cfg.creates)
	if _, err := drive(ctx, b.cfg.creates/10, 16, http.StatusCreated, anchorReq); err != nil {
		return err
	}
	if _, err := drive(ctx, b.cfg.creates/10, 16, http.StatusCreated, apiReq); err != nil {
		return err
	}
	for _, c := range b.cfg.clients {
		for r := range b.cfg.rounds {
			var a, t latencies
			cpuA, err := b.procs.window(func() (err error) { a, err = drive(ctx, b.cfg.creates, c, http.StatusCreated, anchorReq); return })
			if err != nil {
				return err
			}
			cpuT, err := b.procs.window(func() (err error) { t, err = drive(ctx, b.cfg.creates, c, http.StatusCreated, apiReq); return })
			if err != nil {
				return err
			}
			label := fmt.Sprintf("create %d clients #%d", c, r+1)
			fmt.Printf("%s taskforge %s\n%s anchor    %s\n%s ratio: %.2f× the anchor's rate, p50 %.1f×, p99 %.1f×\n",
				pad(label, 24), t, pad("", 24), a, pad("", 24), t.rate()/a.rate(), ratio(t.p(.5), a.p(.5)), ratio(t.p(.99), a.p(.99)))
			fmt.Printf("%s CPU ms per create: taskforge: %s\n%s                     anchor:    %s\n",
				pad("", 24), cpuT.perTask(t.ok, stackProcs...), pad("", 24), cpuA.perTask(a.ok, anchorProcs...))
			switch c {
			case 16:
				fmt.Printf("%s targets: >= 0.5× the anchor: %v; p99 <= 15 ms: %v\n", pad("", 24), t.rate()/a.rate() >= 0.5, t.p(.99) <= 15*time.Millisecond)
			case 64:
				fmt.Printf("%s target: >= 0.6× the anchor: %v\n", pad("", 24), t.rate()/a.rate() >= 0.6)
			}
		}
	}
	return nil
}

// --- drain

func (b *systemBench) drain(ctx context.Context) error {
	n := b.cfg.drain
	fmt.Printf("\ndrain: %d webhook_callback tasks due at once (created through the API into the paused queue, then resumed), "+
		"each POSTing to a loopback receiver in the load process, until every row reads completed; anchors: raw Asynq servers "+
		"(same servers, concurrency, queues and poll interval) with a handler doing the same POST, and with a no-op handler, "+
		"on %d tasks enqueued into a paused queue, until the queue is empty\n", n, n)
	current := serverRun{1, 50}
	for _, run := range b.cfg.runs {
		if run != current {
			if err := b.st.restartWorker(ctx, "TASKFORGE_WORKER_SERVERS="+strconv.Itoa(run.servers), "TASKFORGE_WORKER_CONCURRENCY="+strconv.Itoa(run.concurrency)); err != nil {
				return err
			}
			b.procs.named = slices.DeleteFunc(b.procs.named, func(p namedPID) bool { return p.name == "worker" })
			b.procs.named = append(b.procs.named, namedPID{"worker", b.st.worker.pid()})
			current = run
		}
		path := "/drain/" + run.String()
		if err := b.st.pauseQueue(ctx, "normal", true); err != nil {
			return err
		}
		done0, err := b.st.countStatus(ctx, "webhook_callback", "completed")
		if err != nil {
			return err
		}
		t0 := time.Now()
		if _, err := drive(ctx, n, 16, http.StatusCreated, postRequests(b.st.apiURL+"/api/v1/tasks", b.st.operatorKey, webhookBody(b.sinkURL+path))); err != nil {
			return err
		}
		created := time.Since(t0)
		time.Sleep(time.Second) // let the API's batches and the worker settle
		if early, err := b.st.countStatus(ctx, "webhook_callback", "completed"); err != nil {
			return err
		} else if early != done0 {
			return fmt.Errorf("drain %s: %d tasks completed while the queue was paused (the measurement would be wrong)", run, early-done0)
		}
		var took time.Duration
		conns0 := b.sink.conns.Load()
		cpuT, err := b.procs.window(func() error {
			if err := b.st.pauseQueue(ctx, "normal", false); err != nil {
				return err
			}
			start := time.Now()
			end, err := b.st.waitCompleted(ctx, "webhook_callback", done0+n, 10*time.Minute)
			took = end.Sub(start)
			return err
		})
		if err != nil {
			return err
		}
		if got := b.sink.count(path); got != n {
			return fmt.Errorf("drain %s: the receiver got %d requests for %d tasks", run, got, n)
		}
		rate := float64(n) / took.Seconds()
		fmt.Printf("drain %s (servers×concurrency): created in %.1f s; taskforge %7.0f tasks/s (%.2f s; %d connections opened to the receiver)\n",
			run, created.Seconds(), rate, took.Seconds(), b.sink.conns.Load()-conns0)
		fmt.Printf("  CPU ms per task: taskforge: %s\n", cpuT.perTask(n, stackProcs...))
		for _, h := range []string{"webhook", "noop"} {
			conns0 := b.sink.conns.Load()
			r, cpuA, err := b.anchorDrain(ctx, run, h, n)
			if err != nil {
				return err
			}
			conns := b.sink.conns.Load() - conns0
			what := "raw asynq + the same POST"
			if h == "noop" {
				what = "raw asynq, no-op handler"
			}
			fmt.Printf("  anchor %s: %7.0f tasks/s; taskforge/anchor %.2f×", pad(what, 26), r, rate/r)
			if h == "webhook" {
				fmt.Printf(" (%d connections opened to the receiver; target >= 0.7×: %v)", conns, rate/r >= 0.7)
			}
			fmt.Println()
			fmt.Printf("    CPU ms per task: anchor: %s\n", cpuA.perTask(n, anchorProcs...))
		}
	}
	if current != (serverRun{1, 50}) {
		if err := b.st.restartWorker(ctx); err != nil {
			return err
		}
		b.procs.named = slices.DeleteFunc(b.procs.named, func(p namedPID) bool { return p.name == "worker" })
		b.procs.named = append(b.procs.named, namedPID{"worker", b.st.worker.pid()})
	}
	return nil
}

// anchorDrain enqueues n tasks into the anchor's paused queue, starts raw
// Asynq servers with handler, resumes the queue and times the drain.
func (b *systemBench) anchorDrain(ctx context.Context, run serverRun, handler string, n int) (float64, cpuByName, error) {
	flushRedis(ctx, b.redisAddr, anchorRedisDB)
	opt := asynq.RedisClientOpt{Addr: b.redisAddr, DB: anchorRedisDB}
	client, insp := asynq.NewClient(opt), asynq.NewInspector(opt)
	defer client.Close()
	defer insp.Close()
	path := "/anchor-drain/" + run.String() + "/" + handler
	hook := b.sinkURL + path
	if err := forEach(ctx, n, 16, func(i int) error {
		p, _ := json.Marshal(map[string]any{"url": hook, "payload": map[string]int{"n": i}})
		_, err := client.EnqueueContext(ctx, asynq.NewTask("webhook_callback", p), asynq.Queue("normal"), asynq.TaskID(newID()))
		return err
	}); err != nil {
		return 0, nil, err
	}
	if err := insp.PauseQueue("normal"); err != nil {
		return 0, nil, err
	}
	_, stop, err := startAnchorNoFlush(ctx, b, "anchor servers", "-servers", strconv.Itoa(run.servers), "-concurrency", strconv.Itoa(run.concurrency), "-handler", handler)
	if err != nil {
		return 0, nil, err
	}
	defer stop()
	var took time.Duration
	cpu, err := b.procs.window(func() error {
		if err := insp.UnpauseQueue("normal"); err != nil {
			return err
		}
		start := time.Now()
		end, err := waitQueueEmpty(ctx, insp, "normal", n, 10*time.Minute)
		took = end.Sub(start)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	if handler == "webhook" {
		if got := b.sink.count(path); got != n {
			return 0, nil, fmt.Errorf("anchor drain %s: the receiver got %d requests for %d tasks", run, got, n)
		}
	}
	return float64(n) / took.Seconds(), cpu, nil
}

// waitQueueEmpty polls queue every 20 ms until it holds no pending, active or
// retrying task and n were processed.
func waitQueueEmpty(ctx context.Context, insp *asynq.Inspector, queue string, n int, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	for {
		info, err := insp.GetQueueInfo(queue)
		if err != nil {
			return time.Time{}, err
		}
		if info.Pending+info.Active+info.Retry == 0 && info.Processed >= n {
			if info.Failed > 0 {
				return time.Time{}, fmt.Errorf("anchor: %d of %d tasks failed", info.Failed, n)
			}
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("anchor: queue %s not drained within %s: %+v", queue, within, info)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// --- end to end

func (b *systemBench) endToEnd(ctx context.Context) error {
	n := b.cfg.e2e
	run := serverRun{1, 50}
	fmt.Printf("\nend to end: 16 clients create %d webhook_callback tasks due now through the API (operator key), each POSTing to a loopback "+
		"receiver, until every row reads completed; anchor: 16 clients POST the same bodies to the bare Echo → asynq.Enqueue process while raw "+
		"Asynq servers (%s, the same POST) run them, until the receiver got every one and the queue is empty\n", n, run)
	done0, err := b.st.countStatus(ctx, "webhook_callback", "completed")
	if err != nil {
		return err
	}
	var took time.Duration
	var lat latencies
	cpuT, err := b.procs.window(func() error {
		start := time.Now()
		var err error
		if lat, err = drive(ctx, n, 16, http.StatusCreated, postRequests(b.st.apiURL+"/api/v1/tasks", b.st.operatorKey, webhookBody(b.sinkURL+"/e2e"))); err != nil {
			return err
		}
		end, err := b.st.waitCompleted(ctx, "webhook_callback", done0+n, 10*time.Minute)
		took = end.Sub(start)
		return err
	})
	if err != nil {
		return err
	}
	if got := b.sink.count("/e2e"); got != n {
		return fmt.Errorf("end to end: the receiver got %d requests for %d tasks", got, n)
	}
	rate := float64(n) / took.Seconds()

	anchorURL, stopEnq, err := b.anchor(ctx, "anchor", "-enqueue")
	if err != nil {
		return err
	}
	defer stopEnq()
	opt := asynq.RedisClientOpt{Addr: b.redisAddr, DB: anchorRedisDB}
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	_, stopSrv, err := startAnchorNoFlush(ctx, b, "anchor servers", "-servers", strconv.Itoa(run.servers), "-concurrency", strconv.Itoa(run.concurrency), "-handler", "webhook")
	if err != nil {
		return err
	}
	defer stopSrv()
	var tookA time.Duration
	var latA latencies
	cpuA, err := b.procs.window(func() error {
		start := time.Now()
		var err error
		if latA, err = drive(ctx, n, 16, http.StatusCreated, postRequests(anchorURL+"/enqueue", "", webhookBody(b.sinkURL+"/e2e-anchor"))); err != nil {
			return err
		}
		end, err := waitQueueEmpty(ctx, insp, "normal", n, 10*time.Minute)
		tookA = end.Sub(start)
		return err
	})
	if err != nil {
		return err
	}
	if got := b.sink.count("/e2e-anchor"); got != n {
		return fmt.Errorf("end to end anchor: the receiver got %d requests for %d tasks", got, n)
	}
	rateA := float64(n) / tookA.Seconds()
	fmt.Printf("end to end: taskforge %7.0f tasks/s completed (%.2f s; creates %s)\n", rate, took.Seconds(), lat)
	fmt.Printf("            anchor    %7.0f tasks/s completed (%.2f s; enqueues %s)\n", rateA, tookA.Seconds(), latA)
	fmt.Printf("            ratio %.2f× the anchor; target >= 3000 tasks/s: %v\n", rate/rateA, rate >= 3000)
	fmt.Printf("  CPU ms per task: taskforge: %s\n", cpuT.perTask(n, stackProcs...))
	fmt.Printf("                   anchor:    %s\n", cpuA.perTask(n, anchorProcs...))
	return nil
}

// startAnchorNoFlush is anchor without flushing the anchors' Redis database
// (a second anchor process on the first one's queue).
func startAnchorNoFlush(ctx context.Context, b *systemBench, name string, args ...string) (string, func(), error) {
	s, url, err := startAnchor(ctx, b.st.dir, strings.ReplaceAll(name, " ", "-"), append([]string{"-redis", b.redisAddr, "-db", strconv.Itoa(anchorRedisDB)}, args...)...)
	if err != nil {
		return "", nil, err
	}
	b.procs.named = append(b.procs.named, namedPID{name, s.pid()})
	return url, func() {
		if err := s.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n%s\n", name, err, s.tail())
		}
		b.procs.named = slices.DeleteFunc(b.procs.named, func(p namedPID) bool { return p.pid == s.pid() })
	}, nil
}

// --- list

func benchSystemList(ctx context.Context, dbURL, redisAddr string, cfg systemConfig) error {
	var loaded time.Duration
	// Without the scheduler: its reconciler would enqueue the loaded rows that
	// are pending, running or retrying (they have no Asynq task) and the
	// worker would run them during the measurement.
	st, err := startSystem(ctx, dbURL, redisAddr, cfg.bin, stackOptions{dbName: "bench_system_list", redisDB: systemRedisDB + 1, noScheduler: true,
		before: func(ctx context.Context, u string) error {
			db, err := store.Open(store.Options{URL: u})
			if err != nil {
				return err
			}
			sqlDB, _ := db.DB()
			defer sqlDB.Close()
			t0 := time.Now()
			err = loadTasks(ctx, db, cfg.rows)
			loaded = time.Since(t0)
			return err
		}})
	if err != nil {
		return err
	}
	defer st.stop()
	procs, err := newCPUProcs(ctx, st.db, redisAddr, namedPID{"api", st.api.pid()}, namedPID{"worker", st.worker.pid()},
		namedPID{"monitor", st.monitor.pid()})
	if err != nil {
		return err
	}
	b := &systemBench{cfg: cfg, st: st, procs: procs, redisAddr: redisAddr}
	anchorURL, stop, err := b.anchor(ctx, "anchor", "-list-db", st.dbURL)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("\nlist: pages of 50 under 16 concurrent clients over %d task rows (one INSERT … SELECT generate_series, indexes and VACUUM ANALYZE: %.1f s), "+
		"admin API key, no scheduler (its reconciler would enqueue the loaded open rows); anchor: a bare Echo → database/sql (pgx) handler answering the same page (newest first) as JSON; %d requests per measurement\n",
		cfg.rows, loaded.Seconds(), cfg.lists)
	cases := []struct{ name, query string }{
		{"GET /api/v1/tasks?limit=50", "limit=50"},
		{"GET /api/v1/tasks?status=pending&limit=50", "status=pending&limit=50"},
	}
	anchorReq := getRequests(anchorURL+"/tasks?limit=50", "")
	if _, err := drive(ctx, cfg.lists/10, 16, http.StatusOK, anchorReq); err != nil {
		return err
	}
	for _, tc := range cases {
		apiReq := getRequests(st.apiURL+"/api/v1/tasks?"+tc.query, st.listKey)
		if _, err := drive(ctx, cfg.lists/10, 16, http.StatusOK, apiReq); err != nil {
			return err
		}
		var a, t latencies
		cpuA, err := procs.window(func() (err error) { a, err = drive(ctx, cfg.lists, 16, http.StatusOK, anchorReq); return })
		if err != nil {
			return err
		}
		cpuT, err := procs.window(func() (err error) { t, err = drive(ctx, cfg.lists, 16, http.StatusOK, apiReq); return })
		if err != nil {
			return err
		}
		fmt.Printf("%s taskforge %s\n%s anchor    %s (newest 50, no filter)\n%s ratio: %.2f× the anchor's rate, p50 %.1f×, p99 %.1f×\n",
			pad(tc.name, 44), t, pad("", 44), a, pad("", 44), t.rate()/a.rate(), ratio(t.p(.5), a.p(.5)), ratio(t.p(.99), a.p(.99)))
		fmt.Printf("%s CPU ms per request: taskforge: %s\n%s                      anchor:    %s\n",
			pad("", 44), cpuT.perTask(t.ok, stackProcs...), pad("", 44), cpuA.perTask(a.ok, anchorProcs...))
		fmt.Printf("%s target: p99 <= 20 ms: %v\n", pad("", 44), t.p(.99) <= 20*time.Millisecond)
	}
	return nil
}

// --- load

// latencies are one measurement of the load loop.
type latencies struct {
	all     []time.Duration // sorted
	ok      int
	errors  int
	elapsed time.Duration
}

func (l latencies) rate() float64 { return float64(l.ok) / l.elapsed.Seconds() }

func (l latencies) p(q float64) time.Duration { return pct(l.all, q) }

func (l latencies) String() string {
	return fmt.Sprintf("%7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  max %7.2f ms  (%d ok, %d errors, %.1f s)",
		l.rate(), ms(l.p(.5)), ms(l.p(.99)), ms(l.p(1)), l.ok, l.errors, l.elapsed.Seconds())
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(max(b, 1)) }

// requestFunc builds request i.
type requestFunc func(ctx context.Context, i int) *http.Request

func postRequests(url, token string, body func(i int) []byte) requestFunc {
	return func(ctx context.Context, i int) *http.Request {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body(i)))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return req
	}
}

func getRequests(url, token string) requestFunc {
	return func(ctx context.Context, _ int) *http.Request {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return req
	}
}

func webhookBody(url string) func(int) []byte {
	return func(i int) []byte {
		return []byte(`{"type":"webhook_callback","priority":"normal","params":{"url":"` + url + `","payload":{"n":` + strconv.Itoa(i) + `}}}`)
	}
}

// drive sends n requests from conc clients over keep-alive connections and
// times each; any answer but want counts as an error, and more than 1 % of
// errors fails the measurement.
func drive(ctx context.Context, n, conc, want int, mk requestFunc) (latencies, error) {
	tr := &http.Transport{MaxIdleConns: conc, MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var next, errs atomic.Int64
	lat := make([][]time.Duration, conc)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, n/conc+1)
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					break
				}
				req := mk(ctx, i)
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != want {
						err = fmt.Errorf("%s %s: status %d: %.300s", req.Method, req.URL.Path, resp.StatusCode, b)
					}
				}
				mine = append(mine, time.Since(t0))
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
			lat[w] = mine
		}()
	}
	wg.Wait()
	l := latencies{all: slices.Concat(lat...), elapsed: time.Since(start), errors: int(errs.Load())}
	slices.Sort(l.all)
	l.ok = len(l.all) - l.errors
	if err := ctx.Err(); err != nil {
		return l, err
	}
	if e, ok := firstErr.Load().(string); ok {
		if l.errors*100 > n {
			return l, fmt.Errorf("%d of %d requests failed; first: %s", l.errors, n, e)
		}
		fmt.Fprintf(os.Stderr, "%d of %d requests failed; first: %s\n", l.errors, n, e)
	}
	if len(l.all) == 0 {
		return l, errors.New("no request completed")
	}
	return l, nil
}

// countSink answers every request 200 and counts them by path, and the
// connections its clients opened.
type countSink struct {
	mu    sync.Mutex
	n     map[string]int
	conns atomic.Int64
}

func (s *countSink) listen() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func newCountSink() *countSink { return &countSink{n: map[string]int{}} }

func (s *countSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	s.n[r.URL.Path]++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"ok":true}`))
}

func (s *countSink) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[path]
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/health"
	"github.com/taskforge/taskforge/pkg/ratelimit"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/services/api/internal/server"
)

// Redis databases of the benchmark (scripts/bench/run.sh gives Redis 4096).
const (
	benchRedisAPI  = 4001
	benchRedisBare = 4002
)

const createBody = `{"type":"refresh_portfolio","params":{"portfolio_id":"pf_1"},"priority":"normal"}`

type result struct {
	cpu      cpuSample
	name     string
	requests int
	errors   int64
	elapsed  time.Duration
	p50, p99 time.Duration
	max      time.Duration
}

func (r result) rate() float64 { return float64(r.requests-int(r.errors)) / r.elapsed.Seconds() }

func (r result) String() string {
	self, pg, rd, total := r.cpu.perRequest(r.requests)
	return fmt.Sprintf("%s %8.0f created/s  p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms  (%d requests, %d errors, %.1f s)\n"+
		"%s CPU per request: %.0f µs (go server+client %.0f, postgres %.0f, redis %.0f)",
		pad(r.name, 26), r.rate(), ms(r.p50), ms(r.p99), ms(r.max), r.requests, r.errors, r.elapsed.Seconds(),
		pad("", 26), total, self, pg, rd)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchCreate measures POST /api/v1/tasks through the real server (auth,
// validation, PostgreSQL row, Asynq enqueue) and a bare Echo handler that only
// enqueues to Asynq, with the same client loop, body and connection count.
func benchCreate(ctx context.Context, dbURL, redisAddr string, n, conc int, profile string, secured bool, opts taskservice.Options) error {
	const dbName = "bench_api_create"
	u, err := freshDatabase(ctx, dbURL, dbName)
	if err != nil {
		return err
	}
	defer dropDatabase(dbURL, dbName)
	db, err := store.Open(store.Options{URL: u})
	if err != nil {
		return err
	}
	sqlDB, _ := db.DB()
	defer sqlDB.Close()
	for _, d := range []int{benchRedisAPI, benchRedisBare} {
		rc := redis.NewClient(&redis.Options{Addr: redisAddr, DB: d})
		err := rc.FlushDB(ctx).Err()
		_ = rc.Close()
		if err != nil {
			return err
		}
	}

	// The API as the service wires it, logging JSON request lines (discarded).
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
	apiOpt := asynq.RedisClientOpt{Addr: redisAddr, DB: benchRedisAPI}
	ac, insp := asynq.NewClient(apiOpt), asynq.NewInspector(apiOpt)
	defer ac.Close()
	defer insp.Close()
	svc, err := taskservice.New(db, ac, insp, log, opts)
	if err != nil {
		return err
	}
	defer svc.Close()
	reg := prometheus.NewRegistry()
	srvOpts := server.Options{
		Tasks: svc, Auth: auth.StaticTokens{"bench-token": {ID: "key_bench", Role: auth.Operator}},
		Checker: health.NewChecker(map[string]health.Check{}, reg), Registry: reg, Log: log, OpenAPI: []byte("openapi: 3.0.3"),
	}
	if secured {
		// The production chain: an audit row per created task and the Redis
		// rate limiters (per address, then per caller), with limits high
		// enough never to refuse, so that their cost is measured.
		auditLog, err := audit.New(db)
		if err != nil {
			return err
		}
		defer auditLog.Close()
		srvOpts.Audit = auditLog
		rlClient := redis.NewClient(&redis.Options{Addr: redisAddr, DB: benchRedisAPI})
		defer rlClient.Close()
		if srvOpts.Limiter, err = ratelimit.New(rlClient); err != nil {
			return err
		}
		unlimited := config.RateLimit{RPS: 1e6, Burst: 1e6}
		srvOpts.PerAddress = unlimited
		srvOpts.RateLimit = config.RateLimitConfig{Enabled: true, PerRole: map[string]config.RateLimit{"operator": unlimited}}
	}
	api, err := server.New(srvOpts)
	if err != nil {
		return err
	}
	apiURL, stopAPI, err := listen(api)
	if err != nil {
		return err
	}
	defer stopAPI()

	// The bare baseline: decode the same body, enqueue, answer 201.
	bareOpt := asynq.RedisClientOpt{Addr: redisAddr, DB: benchRedisBare}
	bc := asynq.NewClient(bareOpt)
	defer bc.Close()
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/enqueue", func(c echo.Context) error {
		var body struct {
			Type   string          `json:"type"`
			Params json.RawMessage `json:"params"`
		}
		if err := json.NewDecoder(c.Request().Body).Decode(&body); err != nil {
			return echo.ErrBadRequest
		}
		id := newID()
		if _, err := bc.EnqueueContext(c.Request().Context(), asynq.NewTask(body.Type, body.Params), asynq.TaskID(id), asynq.Queue("normal")); err != nil {
			return echo.ErrServiceUnavailable
		}
		return c.JSON(http.StatusCreated, map[string]string{"task_id": id})
	})
	bareURL, stopBare, err := listen(e)
	if err != nil {
		return err
	}
	defer stopBare()

	fmt.Printf("POST /api/v1/tasks: %d requests per run, %d concurrent clients on loopback, GOMAXPROCS %d\n", n, conc, runtime.GOMAXPROCS(0))
	hdr := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer bench-token"}}
	_, redisPort, _ := net.SplitHostPort(redisAddr)
	measure := func(name, target string) (result, error) {
		before := sampleCPU(dbName, redisPort)
		r, err := load(ctx, name, target, hdr, n, conc)
		r.cpu = sampleCPU(dbName, redisPort).sub(before)
		return r, err
	}
	// Warm up both (connections, prepared statements, estimator cache).
	if _, err := load(ctx, "warm-up", bareURL+"/enqueue", hdr, 2000, conc); err != nil {
		return err
	}
	if _, err := load(ctx, "warm-up", apiURL+"/api/v1/tasks", hdr, 2000, conc); err != nil {
		return err
	}
	var bare, full []result
	for round := range 2 {
		b, err := measure(fmt.Sprintf("bare echo→asynq #%d", round+1), bareURL+"/enqueue")
		if err != nil {
			return err
		}
		fmt.Println(b)
		stopProfile, err := startProfile(profile, round)
		if err != nil {
			return err
		}
		a, err := measure(fmt.Sprintf("taskforge api #%d", round+1), apiURL+"/api/v1/tasks")
		stopProfile()
		if err != nil {
			return err
		}
		fmt.Println(a)
		bare, full = append(bare, b), append(full, a)
	}
	best := func(rs []result) result {
		return slices.MaxFunc(rs, func(a, b result) int { return int(a.rate() - b.rate()) })
	}
	b, a := best(bare), best(full)
	var rows int64
	if err := db.WithContext(ctx).Raw(`SELECT count(*) FROM tasks`).Scan(&rows).Error; err != nil {
		return err
	}
	var commits int64
	if err := db.WithContext(ctx).Raw(`SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&commits).Error; err != nil {
		return err
	}
	fmt.Printf("postgres: %d commits for %d rows (about %.1f rows per batched insert)\n", commits, rows, float64(rows)/float64(max(commits, 1)))
	fmt.Printf("best: api %.0f created/s (p99 %.2f ms), bare %.0f enqueued/s (p99 %.2f ms), ratio api/bare %.2f; %d task rows written\n",
		a.rate(), ms(a.p99), b.rate(), ms(b.p99), a.rate()/b.rate(), rows)
	fmt.Printf("targets: >= 5000 created/s: %v; p99 < 25 ms: %v; ratio >= 0.5: %v\n",
		a.rate() >= 5000, a.p99 < 25*time.Millisecond, a.rate()/b.rate() >= 0.5)
	return nil
}

func listen(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// load sends n POSTs of createBody from conc goroutines over keep-alive
// connections (drive) and measures each request's latency; refused requests
// are counted, not fatal.
func load(ctx context.Context, name, target string, hdr http.Header, n, conc int) (result, error) {
	l, err := drive(ctx, n, conc, http.StatusCreated, func(ctx context.Context, _ int) *http.Request {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader([]byte(createBody)))
		req.Header = hdr.Clone()
		return req
	})
	if len(l.all) == 0 {
		return result{}, fmt.Errorf("%s: no request completed: %v", name, err)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	}
	return result{name: name, requests: len(l.all), errors: int64(l.errors), elapsed: l.elapsed,
		p50: l.p(0.50), p99: l.p(0.99), max: l.p(1)}, nil
}

// startProfile profiles the CPU into path during the first round, if path is
// set.
func startProfile(path string, round int) (func(), error) {
	if path == "" || round > 0 {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "bare_" + hex.EncodeToString(b)
}

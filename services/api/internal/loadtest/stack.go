package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// systemStack is the four Taskforge binaries started by the system
// benchmark with the production configuration, one of each, on a fresh
// database and Redis database of the benchmark's servers.
type systemStack struct {
	dir       string
	bin       string
	env       []string
	baseURL   string // the benchmark server's database, to drop dbName from
	dbName    string
	dbURL     string
	redisAddr string
	redisDB   int
	db        *sql.DB // the benchmark's own connection, for counts

	apiURL, workerURL, schedURL, monitorURL string
	// adminKey is the bootstrap admin key; operatorKey and listKey are API
	// keys created through POST /api/v1/api-keys with it.
	adminKey, operatorKey, listKey string

	api, worker, scheduler, monitor *service
}

// stackOptions are what a phase changes in the production configuration.
type stackOptions struct {
	dbName  string
	redisDB int
	// workerServers and workerConcurrency set worker.servers and
	// worker.concurrency (0: the defaults, 1 and 50).
	workerServers, workerConcurrency int
	// workerTaskCheck sets worker.task_check_interval ("": the default,
	// 100ms).
	workerTaskCheck string
	// workerBurstPoll sets worker.burst_poll ("": the default, 5ms; "0":
	// no burst server).
	workerBurstPoll string
	// before runs on the migrated database before any binary starts (the
	// list phase loads its rows).
	before func(ctx context.Context, dbURL string) error
	// noScheduler leaves the scheduler out.
	noScheduler bool
}

// productionYAML raises the rate limits out of the way (every client of the
// benchmark comes from 127.0.0.1) while keeping them on: each request still
// takes its Redis and in-process checks.
const productionYAML = `ratelimit:
  enabled: true
  per_address: {rps: 1000000, burst: 1000000}
  per_role:
    viewer: {rps: 1000000, burst: 1000000}
    operator: {rps: 1000000, burst: 1000000}
    admin: {rps: 1000000, burst: 1000000}
`

// startSystem creates the database, writes the configuration and starts
// api, worker, scheduler and monitor from bin, then creates the API keys the
// phases use through the API.
func startSystem(ctx context.Context, baseURL, redisAddr, bin string, o stackOptions) (*systemStack, error) {
	u, err := freshDatabase(ctx, baseURL, o.dbName)
	if err != nil {
		return nil, err
	}
	st := &systemStack{bin: bin, baseURL: baseURL, dbName: o.dbName, dbURL: u, redisAddr: redisAddr, redisDB: o.redisDB}
	ok := false
	defer func() {
		if !ok {
			st.stop()
		}
	}()
	if st.db, err = sql.Open("pgx", u); err != nil {
		return nil, err
	}
	rc := redis.NewClient(&redis.Options{Addr: redisAddr, DB: o.redisDB})
	err = rc.FlushDB(ctx).Err()
	_ = rc.Close()
	if err != nil {
		return nil, err
	}
	if o.before != nil {
		if err := o.before(ctx, u); err != nil {
			return nil, err
		}
	}
	if st.dir, err = os.MkdirTemp("", "taskforge-bench-system"); err != nil {
		return nil, err
	}
	cfgFile := filepath.Join(st.dir, "taskforge.yaml")
	if err := os.WriteFile(cfgFile, []byte(productionYAML), 0o600); err != nil {
		return nil, err
	}
	addrs := make([]string, 4)
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			return nil, err
		}
	}
	st.apiURL, st.workerURL, st.schedURL, st.monitorURL = "http://"+addrs[0], "http://"+addrs[1], "http://"+addrs[2], "http://"+addrs[3]
	st.adminKey = "tfbench_admin_" + randHex(16)
	cryptoKey := make([]byte, 32)
	_, _ = rand.Read(cryptoKey)
	st.env = []string{
		"TASKFORGE_ENV=production",
		"TASKFORGE_CONFIG=" + cfgFile,
		"TASKFORGE_LOG_LEVEL=info",
		"TASKFORGE_LOG_FORMAT=json",
		"TASKFORGE_DATABASE_URL=" + u,
		"TASKFORGE_REDIS_ADDR=" + redisAddr,
		"TASKFORGE_REDIS_DB=" + strconv.Itoa(o.redisDB),
		"TASKFORGE_AUTH_BOOTSTRAP_ADMIN_KEY=" + st.adminKey,
		"TASKFORGE_AUTH_JWT_SECRET=" + randHex(32),
		"TASKFORGE_AUTH_JWT_ISSUER=https://issuer.bench.invalid",
		"TASKFORGE_AUTH_JWT_AUDIENCE=taskforge-bench",
		"TASKFORGE_CRYPTO_KEYS=bench=" + base64.StdEncoding.EncodeToString(cryptoKey),
		"TASKFORGE_CRYPTO_ACTIVE_KEY=bench",
		"TASKFORGE_STORAGE_BACKEND=local",
		"TASKFORGE_STORAGE_LOCAL_DIR=" + filepath.Join(st.dir, "results"),
		"TASKFORGE_STORAGE_SIGNING_KEY=" + randHex(16),
		"TASKFORGE_API_ADDR=" + addrs[0],
		"TASKFORGE_API_PUBLIC_URL=" + st.apiURL,
		"TASKFORGE_WORKER_ADMIN_ADDR=" + addrs[1],
		"TASKFORGE_WORKER_CALLBACK_SECRET=" + randHex(32),
		"TASKFORGE_SCHEDULER_ADMIN_ADDR=" + addrs[2],
		// The specification's four schedules would fire tasks of their own
		// into the measurements.
		"TASKFORGE_SCHEDULER_SEED_SCHEDULES=false",
		"TASKFORGE_MONITOR_ADDR=" + addrs[3],
		"TASKFORGE_EGRESS_ALLOW_CIDRS=127.0.0.0/8",
		"TASKFORGE_PRICES_PROVIDER=simulated",
	}
	if o.workerServers > 0 {
		st.env = append(st.env, "TASKFORGE_WORKER_SERVERS="+strconv.Itoa(o.workerServers))
	}
	if o.workerConcurrency > 0 {
		st.env = append(st.env, "TASKFORGE_WORKER_CONCURRENCY="+strconv.Itoa(o.workerConcurrency))
	}
	if o.workerTaskCheck != "" {
		st.env = append(st.env, "TASKFORGE_WORKER_TASK_CHECK_INTERVAL="+o.workerTaskCheck)
	}
	if o.workerBurstPoll != "" {
		st.env = append(st.env, "TASKFORGE_WORKER_BURST_POLL="+o.workerBurstPoll)
	}
	start := func(name, ready string) (*service, error) {
		s, err := startService(st.dir, name, filepath.Join(bin, "taskforge-"+name), st.env)
		if err != nil {
			return nil, err
		}
		return s, s.waitReady(ctx, ready, 60*time.Second)
	}
	if st.api, err = start("api", st.apiURL+"/readyz"); err != nil {
		return nil, err
	}
	if st.worker, err = start("worker", st.workerURL+"/readyz"); err != nil {
		return nil, err
	}
	if !o.noScheduler {
		if st.scheduler, err = start("scheduler", st.schedURL+"/readyz"); err != nil {
			return nil, err
		}
	}
	if st.monitor, err = start("monitor", st.monitorURL+"/readyz"); err != nil {
		return nil, err
	}
	if st.operatorKey, err = createRoleKey(ctx, st.apiURL, st.adminKey, "bench-operator", "operator"); err != nil {
		return nil, err
	}
	if st.listKey, err = createRoleKey(ctx, st.apiURL, st.adminKey, "bench-admin", "admin"); err != nil {
		return nil, err
	}
	ok = true
	return st, nil
}

// stop stops the binaries (SIGTERM), drops the database and removes the
// directory with their logs, unless TASKFORGE_BENCH_KEEP_LOGS is set (then
// it says where they are).
func (st *systemStack) stop() {
	for _, s := range []*service{st.monitor, st.scheduler, st.worker, st.api} {
		if s == nil {
			continue
		}
		if err := s.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n%s\n", s.name, err, s.tail())
		}
	}
	if st.db != nil {
		_ = st.db.Close()
	}
	if st.dbName != "" && os.Getenv("TASKFORGE_BENCH_KEEP_DB") == "" {
		dropDatabase(st.baseURL, st.dbName)
	}
	if st.dir != "" {
		if os.Getenv("TASKFORGE_BENCH_KEEP_LOGS") != "" {
			fmt.Fprintf(os.Stderr, "logs of the binaries kept in %s\n", st.dir)
		} else {
			_ = os.RemoveAll(st.dir)
		}
	}
}

// restartWorker stops the worker and starts it again with extra settings.
func (st *systemStack) restartWorker(ctx context.Context, extra ...string) error {
	if err := st.worker.stop(); err != nil {
		return err
	}
	env := append(append([]string{}, st.env...), extra...)
	s, err := startService(st.dir, "worker", filepath.Join(st.bin, "taskforge-worker"), env)
	if err != nil {
		return err
	}
	st.worker = s
	return s.waitReady(ctx, st.workerURL+"/readyz", 60*time.Second)
}

// pauseQueue pauses or resumes a queue through the API.
func (st *systemStack) pauseQueue(ctx context.Context, q string, pause bool) error {
	action := "resume"
	if pause {
		action = "pause"
	}
	var out map[string]any
	return postJSON(ctx, http.DefaultClient, st.apiURL+"/api/v1/queues/"+q+"/"+action, st.adminKey, map[string]any{}, &out)
}

// countStatus counts the task rows of type typ with status.
func (st *systemStack) countStatus(ctx context.Context, typ, status string) (int, error) {
	var n int
	err := st.db.QueryRowContext(ctx, `SELECT count(*) FROM tasks WHERE type = $1 AND status = $2`, typ, status).Scan(&n)
	return n, err
}

// waitCompleted polls PostgreSQL every 250 ms until want tasks of typ read
// completed, and returns when the last of them completed: the newest
// completed_at (the worker's outcome time, up to one flush before its
// commit). The poll is a count over the table, milliseconds of PostgreSQL's
// CPU each time: often enough to end the wait soon, rarely enough not to
// take CPU from what it measures.
func (st *systemStack) waitCompleted(ctx context.Context, typ string, want int, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	for {
		var n int
		var last sql.NullTime
		if err := st.db.QueryRowContext(ctx, `SELECT count(*), max(completed_at) FROM tasks WHERE type = $1 AND status = 'completed'`,
			typ).Scan(&n, &last); err != nil {
			return time.Time{}, err
		}
		if n >= want {
			return last.Time, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("only %d of %d %s tasks completed within %s:\n%s", n, want, typ, within, st.worker.tail())
		}
		for _, s := range []*service{st.api, st.worker} {
			select {
			case <-s.done:
				return time.Time{}, fmt.Errorf("%s exited (%v):\n%s", s.name, s.err, s.tail())
			default:
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// createRoleKey makes an API key of role through POST /api/v1/api-keys.
func createRoleKey(ctx context.Context, apiURL, adminKey, name, role string) (string, error) {
	var out struct {
		Key string `json:"key"`
	}
	if err := postJSON(ctx, http.DefaultClient, apiURL+"/api/v1/api-keys", adminKey, map[string]string{"name": name, "role": role}, &out); err != nil {
		return "", err
	}
	return out.Key, nil
}

// --- CPU by process, from /proc.

// cpuProcs are the processes whose CPU a phase reports, by name; postgres and
// redis are found by their servers' addresses.
type cpuProcs struct {
	named     []namedPID
	postgres  int // the postmaster
	redisPort string
}

type namedPID struct {
	name string
	pid  int
}

// cpuByName is CPU time by process name.
type cpuByName map[string]time.Duration

// newCPUProcs finds the PostgreSQL postmaster (the parent of a backend of db)
// and the Redis server listening on redisAddr.
func newCPUProcs(ctx context.Context, db *sql.DB, redisAddr string, named ...namedPID) (*cpuProcs, error) {
	var backend int
	if err := db.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&backend); err != nil {
		return nil, err
	}
	f, err := procStat(fmt.Sprintf("/proc/%d", backend))
	if err != nil {
		return nil, fmt.Errorf("postgres backend %d: %w (the benchmark reads /proc of the servers: run them on this machine)", backend, err)
	}
	ppid, _ := strconv.Atoi(f[1])
	_, port, _ := net.SplitHostPort(redisAddr)
	return &cpuProcs{named: named, postgres: ppid, redisPort: port}, nil
}

// sample reads the CPU used so far by each process: for PostgreSQL the
// postmaster, its children and the children it has reaped (cutime and
// cstime), so that a backend that exits keeps counting; for this process
// "load generator".
func (c *cpuProcs) sample() cpuByName {
	out := cpuByName{}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		out["load generator"] = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for _, p := range c.named {
		out[p.name] += procCPU(fmt.Sprintf("/proc/%d", p.pid))
	}
	if f, err := procStat(fmt.Sprintf("/proc/%d", c.postgres)); err == nil {
		out["postgres"] += ticks(f, 11) + ticks(f, 12) + ticks(f, 13) + ticks(f, 14)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		f, err := procStat(p)
		if err != nil {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == c.postgres {
			out["postgres"] += ticks(f, 11) + ticks(f, 12)
			continue
		}
		if cmd, err := os.ReadFile(p + "/cmdline"); err == nil && strings.Contains(string(cmd), "redis-server") && strings.Contains(string(cmd), ":"+c.redisPort) {
			out["redis"] += ticks(f, 11) + ticks(f, 12)
		}
	}
	return out
}

// procStat is the fields of /proc/<pid>/stat after the command name: f[0] is
// the state, f[1] the parent pid, f[11] utime, f[12] stime, f[13] cutime,
// f[14] cstime.
func procStat(dir string) ([]string, error) {
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return nil, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, fmt.Errorf("%s/stat: no command name", dir)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("%s/stat: short", dir)
	}
	return f, nil
}

func ticks(f []string, i int) time.Duration {
	n, _ := strconv.ParseInt(f[i], 10, 64)
	return time.Duration(n) * clockTick
}

func (a cpuByName) sub(b cpuByName) cpuByName {
	out := cpuByName{}
	for k, v := range a {
		out[k] = v - b[k]
	}
	return out
}

// perTask formats CPU ms per task for each process in order, and the total.
func (a cpuByName) perTask(n int, order ...string) string {
	var b strings.Builder
	var total time.Duration
	for _, k := range order {
		total += a[k]
		fmt.Fprintf(&b, "%s %.3f, ", k, float64(a[k].Microseconds())/1e3/float64(max(n, 1)))
	}
	fmt.Fprintf(&b, "total %.3f", float64(total.Microseconds())/1e3/float64(max(n, 1)))
	return b.String()
}

func (a cpuByName) total(order ...string) time.Duration {
	var t time.Duration
	for _, k := range order {
		t += a[k]
	}
	return t
}

// cpuWindow samples before and after fn.
func (c *cpuProcs) window(fn func() error) (cpuByName, error) {
	before := c.sample()
	err := fn()
	return c.sample().sub(before), err
}

// pid of a service.
func (s *service) pid() int { return s.cmd.Process.Pid }

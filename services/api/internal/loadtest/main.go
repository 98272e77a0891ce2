// Command loadtest measures the API on this machine and prints figures (no
// assertions). It needs the servers that scripts/bench/run.sh starts, found
// through TASKFORGE_TEST_DATABASE_URL and TASKFORGE_TEST_REDIS_ADDR.
//
//	loadtest create [-n 40000] [-c 96]   POST /api/v1/tasks rate and latency, and
//	                                     a bare Echo → Asynq enqueue for comparison
//	loadtest list [-rows 1000000]        page timings of GET /api/v1/tasks filters
//	loadtest events -bin DIR [-streams 1000] [-task-streams 10] [-rate 1000] [-duration 60s]
//	                                     live events through the api and worker
//	                                     binaries in DIR: publish-to-deliver
//	                                     latency and memory per open stream
//	loadtest system -bin DIR [-phases create,drain,e2e,workflow,list] [...]
//	                                     the four binaries in DIR with the
//	                                     production configuration, driven over
//	                                     HTTP, each figure next to an anchor
//	                                     (bare Echo → Asynq, raw Asynq servers)
//	                                     run by this program as another process
//	                                     ("loadtest anchor", internal)
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: loadtest create|list|events|system [flags]")
	}
	if args[0] == "anchor" {
		return anchorMain(args[1:])
	}
	dbURL, redisAddr := os.Getenv("TASKFORGE_TEST_DATABASE_URL"), os.Getenv("TASKFORGE_TEST_REDIS_ADDR")
	if dbURL == "" || redisAddr == "" {
		return errors.New("TASKFORGE_TEST_DATABASE_URL and TASKFORGE_TEST_REDIS_ADDR must be set (run through scripts/bench/run.sh)")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "create":
		n := fs.Int("n", 40000, "requests per measured run")
		c := fs.Int("c", 96, "concurrent clients")
		prof := fs.String("cpuprofile", "", "write a CPU profile of the API runs to this file")
		secured := fs.Bool("secured", false, "add the production chain around the task path: an audit row per task and the Redis rate limiters")
		var opts taskservice.Options
		fs.IntVar(&opts.Inserters, "inserters", 0, "taskservice batch inserters (0: its default)")
		fs.IntVar(&opts.MaxBatch, "batch", 0, "taskservice rows per insert at most (0: its default)")
		fs.DurationVar(&opts.BatchLinger, "linger", 0, "taskservice batch linger (0: its default, negative: none)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return benchCreate(ctx, dbURL, redisAddr, *n, *c, *prof, *secured, opts)
	case "list":
		rows := fs.Int("rows", 1000000, "tasks to load")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return benchList(ctx, dbURL, redisAddr, *rows)
	case "events":
		var cfg eventsConfig
		fs.StringVar(&cfg.bin, "bin", "", "directory of taskforge-api and taskforge-worker (scripts/lib.sh build_services)")
		fs.IntVar(&cfg.streams, "streams", 1000, "GET /api/v1/events streams open on the API")
		fs.IntVar(&cfg.taskStreams, "task-streams", 10, "GET /api/v1/tasks/{id}/events streams (admin key, at most 20)")
		fs.IntVar(&cfg.callers, "callers", 0, "operator keys the streams and tasks are spread over (0: streams/20, the default per-caller cap)")
		fs.Float64Var(&cfg.rate, "rate", 1000, "task completions per second (the webhook receiver's pace)")
		fs.DurationVar(&cfg.duration, "duration", time.Minute, "length of the run: rate x duration tasks")
		fs.IntVar(&cfg.workerServers, "worker-servers", 0, "the worker's worker.servers (0: its default)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if cfg.bin == "" {
			return errors.New("events: -bin is required")
		}
		return benchEvents(ctx, dbURL, redisAddr, cfg)
	case "system":
		var cfg systemConfig
		fs.StringVar(&cfg.bin, "bin", "", "directory of the taskforge-api, -worker, -scheduler and -monitor binaries (scripts/lib.sh build_services)")
		phases := fs.String("phases", "create,drain,e2e", "phases to run: create, drain, e2e, workflow, list")
		clients := fs.String("clients", "16,64", "create: concurrent clients of each measurement")
		fs.IntVar(&cfg.creates, "creates", 10000, "create: requests per measurement")
		fs.IntVar(&cfg.rounds, "rounds", 2, "create: measurements per client count")
		fs.IntVar(&cfg.drain, "drain", 5000, "drain: tasks due at once")
		runs := fs.String("runs", "1x50 4x50", "drain: worker servers x total concurrency of each measurement")
		fs.IntVar(&cfg.e2e, "e2e", 5000, "end to end: tasks")
		fs.IntVar(&cfg.flows, "workflows", 300, "workflow: two-step workflows")
		fs.IntVar(&cfg.flowRate, "workflow-rate", 20, "workflow: workflows (and anchor tasks) created a second")
		fs.StringVar(&cfg.workerBurstPoll, "worker-burst-poll", "", "the worker's worker.burst_poll (default: the configuration's, 5ms; 0: no burst server)")
		fs.StringVar(&cfg.workerTaskCheck, "worker-task-check", "", "the worker's worker.task_check_interval (default: the configuration's, 100ms)")
		fs.IntVar(&cfg.rows, "rows", 1000000, "list: task rows loaded")
		fs.IntVar(&cfg.lists, "lists", 5000, "list: requests per measurement")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if cfg.bin == "" {
			return errors.New("system: -bin is required")
		}
		cfg.phases = strings.Split(*phases, ",")
		for _, c := range strings.Split(*clients, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(c))
			if err != nil || n < 1 {
				return fmt.Errorf("system: -clients: %q is not a positive number", c)
			}
			cfg.clients = append(cfg.clients, n)
		}
		var err error
		if cfg.runs, err = parseRuns(*runs); err != nil {
			return err
		}
		if cfg.creates < 10 || cfg.drain < 1 || cfg.e2e < 1 || cfg.rows < 1 || cfg.lists < 10 || cfg.rounds < 1 || cfg.flows < 1 || cfg.flowRate < 0 {
			return errors.New("system: -creates and -lists at least 10, -drain, -e2e, -rows, -rounds and -workflows at least 1, -workflow-rate at least 0")
		}
		return benchSystem(ctx, dbURL, redisAddr, cfg)
	}
	return fmt.Errorf("unknown benchmark %q", args[0])
}

// freshDatabase creates a migrated database named name (dropped first if it
// exists) on the server of base and returns its URL.
func freshDatabase(ctx context.Context, base, name string) (string, error) {
	admin, err := sql.Open("pgx", base)
	if err != nil {
		return "", err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name)); err != nil {
		return "", err
	}
	if _, err := admin.ExecContext(ctx, fmt.Sprintf(`CREATE DATABASE %q`, name)); err != nil {
		return "", err
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		return "", err
	}
	defer db.Close()
	if err := store.Migrate(ctx, db); err != nil {
		return "", err
	}
	return u.String(), nil
}

func dropDatabase(base, name string) {
	admin, err := sql.Open("pgx", base)
	if err != nil {
		return
	}
	defer admin.Close()
	_, _ = admin.Exec(fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name))
}

func pad(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return s + strings.Repeat(" ", n-len(s))
}

package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/pkg/worker"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

var weights = map[string]int{"critical": 8, "high": 4, "normal": 2, "low": 1}

// BenchmarkWorkerThroughput measures no-op tasks through a bare Asynq server
// and through the same servers (concurrency, queues, strict priority) with the
// full lifecycle bookkeeping, in the same run, and prints both and their
// ratio. TASKFORGE_BENCH_TASKS (default 20000), TASKFORGE_BENCH_CONCURRENCY
// (default 50, per server, as worker.concurrency), TASKFORGE_BENCH_SERVERS (default 1) and
// TASKFORGE_BENCH_WRITERS (state writers, default 1) size it.
// Run it through scripts/bench/worker-throughput.sh.
func BenchmarkWorkerThroughput(b *testing.B) {
	n := envInt("TASKFORGE_BENCH_TASKS", 20000)
	conc := envInt("TASKFORGE_BENCH_CONCURRENCY", 50)
	servers := envInt("TASKFORGE_BENCH_SERVERS", 1)
	for i := 0; i < b.N; i++ {
		bare := benchBare(b, n, conc, servers)
		life := benchLifecycle(b, n, conc, servers)
		fmt.Printf("worker throughput: %d no-op tasks, %d server(s) x concurrency %d, queues critical/high/normal/low strict\n", n, servers, conc)
		fmt.Printf("  bare asynq:          %8.0f tasks/s\n", bare)
		fmt.Printf("  with lifecycle:      %8.0f tasks/s\n", life)
		fmt.Printf("  ratio:               %8.2f\n", life/bare)
		b.ReportMetric(bare, "bare_tasks/s")
		b.ReportMetric(life, "lifecycle_tasks/s")
		b.ReportMetric(life/bare, "ratio")
	}
}

func benchServerConfig(conc int) asynq.Config {
	return asynq.Config{
		Concurrency: conc, Queues: weights, StrictPriority: true, LogLevel: asynq.ErrorLevel,
		TaskCheckInterval: 100 * time.Millisecond,
	}
}

// enqueue hands the tasks to Asynq from 16 goroutines.
func enqueue(b *testing.B, rd testenv.Redis, tasks []*asynq.Task, opts func(i int) []asynq.Option) {
	cli := asynq.NewClient(rd.Opt())
	defer cli.Close()
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(tasks) {
					return
				}
				if _, err := cli.Enqueue(tasks[i], opts(i)...); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func benchBare(b *testing.B, n, conc, servers int) float64 {
	rd := testenv.NewRedis(b)
	payload, _ := tasks.EncodeEnvelope("x", tasks.TypeRefreshPortfolio, &taskpb.RefreshPortfolioParams{All: true}, tasks.DefaultRetry, 60, "", 0)
	ts := make([]*asynq.Task, n)
	for i := range ts {
		ts[i] = asynq.NewTask(tasks.TypeRefreshPortfolio, payload)
	}
	enqueue(b, rd, ts, func(int) []asynq.Option {
		return []asynq.Option{asynq.Queue("normal"), asynq.MaxRetry(3), asynq.Timeout(time.Minute)}
	})
	var done atomic.Int64
	all := make(chan struct{})
	h := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if done.Add(1) == int64(n) {
			close(all)
		}
		return nil
	})
	start := time.Now()
	srvs := make([]*asynq.Server, servers)
	for i := range srvs {
		srvs[i] = asynq.NewServer(rd.Opt(), benchServerConfig(conc))
		if err := srvs[i].Start(h); err != nil {
			b.Fatal(err)
		}
	}
	<-all
	rate := float64(n) / time.Since(start).Seconds()
	for _, s := range srvs {
		s.Shutdown()
	}
	return rate
}

func benchLifecycle(b *testing.B, n, conc, servers int) float64 {
	pg := testenv.NewPostgres(b)
	rd := testenv.NewRedis(b)
	ctx := context.Background()
	// Bulk-insert the rows as the task service would write them.
	ids := make([]string, n)
	for i := range ids {
		ids[i] = taskservice.NewID()
	}
	policy, _ := json.Marshal(tasks.DefaultRetry)
	if _, err := pg.SQL.ExecContext(ctx, `
INSERT INTO tasks (id, type, status, priority, params, max_retries, retry_policy, timeout_seconds)
SELECT id, 'refresh_portfolio', 'pending', 'normal', '{"all":true}', 3, $1::jsonb, 60 FROM unnest($2::text[]) AS id`,
		string(policy), ids); err != nil {
		b.Fatal(err)
	}
	ts := make([]*asynq.Task, n)
	for i := range ts {
		payload, err := tasks.EncodeEnvelope(ids[i], tasks.TypeRefreshPortfolio, &taskpb.RefreshPortfolioParams{All: true}, tasks.DefaultRetry, 60, "", 0)
		if err != nil {
			b.Fatal(err)
		}
		ts[i] = asynq.NewTask(tasks.TypeRefreshPortfolio, payload)
	}
	enqueue(b, rd, ts, func(i int) []asynq.Option {
		return []asynq.Option{asynq.TaskID(ids[i]), asynq.Queue("normal"), asynq.MaxRetry(3), asynq.Timeout(time.Minute)}
	})

	reg := prometheus.NewRegistry()
	insp := asynq.NewInspector(rd.Opt())
	defer insp.Close()
	rt, err := worker.New(pg.DB, rd.Client, insp, zap.NewNop(), worker.Options{
		WorkerID: "bench", Registerer: reg, Writers: envInt("TASKFORGE_BENCH_WRITERS", 1),
		Handlers: map[string]job.Handler{
			tasks.TypeRefreshPortfolio: func(context.Context, job.Reporter, proto.Message) error { return nil },
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	srvs := make([]*asynq.Server, servers)
	for i := range srvs {
		cfg := rt.Configure(benchServerConfig(conc))
		srvs[i] = asynq.NewServer(rd.Opt(), cfg)
		if err := srvs[i].Start(rt); err != nil {
			b.Fatal(err)
		}
	}
	for completed(b, reg) < float64(n) {
		time.Sleep(5 * time.Millisecond)
	}
	rate := float64(n) / time.Since(start).Seconds()
	for _, s := range srvs {
		s.Shutdown()
	}
	if mfs, err := reg.Gather(); err == nil {
		for _, mf := range mfs {
			if mf.GetName() == "taskforge_worker_state_flush_seconds" {
				h := mf.GetMetric()[0].GetHistogram()
				fmt.Printf("  state flushes:       %8d, mean %.2f ms, %.1f tasks per flush\n", h.GetSampleCount(),
					1000*h.GetSampleSum()/float64(h.GetSampleCount()), float64(n)/float64(h.GetSampleCount()))
			}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = rt.Close(cctx)
	var stats struct{ Completed, Attempts int64 }
	pg.DB.Raw(`SELECT (SELECT count(*) FROM tasks WHERE status = 'completed' AND attempt = 1) AS completed,
	                  (SELECT count(*) FROM task_attempts WHERE outcome = 'completed') AS attempts`).Scan(&stats)
	if stats.Completed != int64(n) || stats.Attempts != int64(n) {
		b.Fatalf("bookkeeping incomplete: %d completed rows, %d completed attempts of %d", stats.Completed, stats.Attempts, n)
	}
	return rate
}

func completed(b *testing.B, reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "taskforge_tasks_processed_total" {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

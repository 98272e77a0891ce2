package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// workflowSteps measures what a workflow step adds to a task: n two-step
// workflows (webhook_callback a → webhook_callback b, each POSTing to the
// loopback receiver) created through the API by one client, and for each the
// time from a's completion to b's start (the step's overhead: the commit's
// wakeup and NOTIFY, the scheduler's advance, the creation and the
// enqueue, the worker's pick-up). The first 30 workflows after the start are
// reported apart (cold connections and caches). Anchor in the same run and
// stack: n plain webhook_callback tasks created the same way, from the row's
// creation to its start (the pick-up alone). Both from the rows' timestamps.
// Also the CPU of the stack idle, and per workflow while they run.
func (b *systemBench) workflowSteps(ctx context.Context) error {
	n := b.cfg.flows
	poll := b.cfg.workerTaskCheck
	if poll == "" {
		poll = "the default, 100ms"
	}
	burst := b.cfg.workerBurstPoll
	if burst == "" {
		burst = "the default, 5ms"
	}
	fmt.Printf("\nworker.task_check_interval: %s, worker.burst_poll: %s\n", poll, burst)
	fmt.Printf("workflow step overhead: one client creates %d two-step workflows, one after another, %d a second, (webhook_callback a → b) through the API (operator key); "+
		"per workflow, b's start − a's completion (the advance by the scheduler, b's creation and enqueue, the worker's pick-up); "+
		"anchor: %d plain webhook_callback tasks created the same way, their start − their row's creation\n", n, b.cfg.flowRate, n)
	// What the poll interval costs: the stack idle (nothing queued, nothing
	// running) for 10 s, CPU by process as a share of one core.
	const idleFor = 10 * time.Second
	idle, _ := b.procs.window(func() error { time.Sleep(idleFor); return nil })
	fmt.Printf("idle for %s: %% of one core  worker %.2f  redis %.2f  scheduler %.2f  api %.2f  postgres %.2f  (target: an idle worker below 2)\n",
		idleFor, share(idle["worker"], idleFor), share(idle["redis"], idleFor), share(idle["scheduler"], idleFor),
		share(idle["api"], idleFor), share(idle["postgres"], idleFor))
	done0, err := b.st.countStatus(ctx, "webhook_callback", "completed")
	if err != nil {
		return err
	}
	since := time.Now().UTC()
	rate := b.cfg.flowRate
	if _, err := drive(ctx, n, 1, http.StatusCreated, paced(rate, postRequests(b.st.apiURL+"/api/v1/tasks", b.st.operatorKey, webhookBody(b.sinkURL+"/wf-plain")))); err != nil {
		return err
	}
	if _, err := b.st.waitCompleted(ctx, "webhook_callback", done0+n, time.Minute); err != nil {
		return err
	}
	plain, err := b.durations(ctx, `SELECT extract(epoch FROM started_at - created_at) FROM tasks
		WHERE type = 'webhook_callback' AND workflow_id IS NULL AND created_at >= $1 AND started_at IS NOT NULL`, since)
	if err != nil {
		return err
	}
	if len(plain) != n {
		return fmt.Errorf("workflow anchor: %d of %d plain tasks started", len(plain), n)
	}

	// The first workflows after the start meet cold connections and caches
	// (each new PostgreSQL backend of the scheduler's advances reads the
	// catalog of every table it touches): measured apart, then the steady
	// state.
	const cold = 30
	coldGaps, coldRows, _, err := b.flows(ctx, "cold", cold, rate)
	if err != nil {
		return err
	}
	fmt.Printf("workflow: the first %d after the start, %d/s: dependency completed → next step started  p50 %s  p99 %s  (of which → the row p50 %s  p99 %s)\n",
		cold, rate, pct(coldGaps, 0.5).Round(10*time.Microsecond), pct(coldGaps, 0.99).Round(10*time.Microsecond),
		pct(coldRows, 0.5).Round(10*time.Microsecond), pct(coldRows, 0.99).Round(10*time.Microsecond))
	a50, a99 := pct(plain, 0.5), pct(plain, 0.99)
	// At the stated pace (the figure against the target), then as fast as
	// the one client goes (the machine near saturation: the tail grows with
	// the queueing for its two CPUs).
	for _, r := range []int{rate, 0} {
		var gaps, created []time.Duration
		var lat latencies
		t0 := time.Now()
		busy, err := b.procs.window(func() error {
			var err error
			gaps, created, lat, err = b.flows(ctx, "bench", n, r)
			return err
		})
		if err != nil {
			return err
		}
		wall := time.Since(t0)
		pace := fmt.Sprintf("%d/s", r)
		if r == 0 {
			pace = "as fast as one client goes"
		}
		p50, p99 := pct(gaps, 0.5), pct(gaps, 0.99)
		fmt.Printf("workflow: the next %d, %s: dependency completed → next step started  p50 %s  p99 %s  max %s  (workflow creates %s)\n",
			n, pace, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), pct(gaps, 1).Round(10*time.Microsecond), lat)
		fmt.Printf("          of which completed → next step's row created  p50 %s  p99 %s\n", pct(created, 0.5).Round(10*time.Microsecond), pct(created, 0.99).Round(10*time.Microsecond))
		fmt.Printf("          CPU ms per workflow: %s; %% of the 2 CPUs busy: %.0f\n", busy.perTask(n, "api", "worker", "scheduler", "postgres", "redis"),
			100*busy.total("api", "worker", "scheduler", "monitor", "postgres", "redis", "load generator").Seconds()/wall.Seconds()/2)
		if r == rate {
			fmt.Printf("          anchor (%d/s): plain task created → started  p50 %s  p99 %s\n", rate, a50.Round(10*time.Microsecond), a99.Round(10*time.Microsecond))
			fmt.Printf("          ratio p50 %.2f×, p99 %.2f× the anchor; target p99 <= 50ms: %v\n", ratio(p50, a50), ratio(p99, a99), p99 <= 50*time.Millisecond)
		}
	}
	if got := b.sink.count("/wf-b"); got != cold+2*n {
		return fmt.Errorf("workflow: the receiver got %d second-step requests for %d workflows", got, cold+2*n)
	}
	return nil
}

// paced makes request i wait until i/rate after the first (rate 0: no
// wait); for one client, whose requests go one after another.
func paced(rate int, mk requestFunc) requestFunc {
	if rate <= 0 {
		return mk
	}
	var start time.Time
	return func(ctx context.Context, i int) *http.Request {
		if start.IsZero() {
			start = time.Now()
		}
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
		return mk(ctx, i)
	}
}

// flows creates n two-step workflows named prefix-i, one after another (rate
// a second, 0: as fast as they are answered),
// waits until all completed, and returns per workflow b's start − a's
// completion and b's row creation − a's completion.
func (b *systemBench) flows(ctx context.Context, prefix string, n, rate int) (gaps, created []time.Duration, lat latencies, err error) {
	since := time.Now().UTC()
	body := func(i int) []byte {
		hook := func(step string) string {
			return `{"id":"` + step + `","type":"webhook_callback","params":{"url":"` + b.sinkURL + `/wf-` + step + `","payload":{"n":` + strconv.Itoa(i) + `}}`
		}
		return []byte(`{"name":"` + prefix + `-` + strconv.Itoa(i) + `","steps":[` + hook("a") + `},` + hook("b") + `,"depends_on":["a"]}]}`)
	}
	lat, err = drive(ctx, n, 1, http.StatusCreated, paced(rate, postRequests(b.st.apiURL+"/api/v1/workflows", b.st.operatorKey, body)))
	if err != nil {
		return nil, nil, lat, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var ended int
		if err := b.st.db.QueryRowContext(ctx, `SELECT count(*) FROM workflows WHERE created_at >= $1 AND status = 'completed'`, since).Scan(&ended); err != nil {
			return nil, nil, lat, err
		}
		if ended == n {
			break
		}
		if time.Now().After(deadline) {
			return nil, nil, lat, fmt.Errorf("workflow: only %d of %d workflows completed within 2 minutes:\n%s", ended, n, b.st.scheduler.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	const pair = ` FROM tasks d JOIN tasks s ON s.workflow_id = d.workflow_id AND s.step_id = 'b'
		WHERE d.step_id = 'a' AND d.created_at >= $1`
	if gaps, err = b.durations(ctx, `SELECT extract(epoch FROM s.started_at - d.completed_at)`+pair, since); err != nil {
		return nil, nil, lat, err
	}
	if created, err = b.durations(ctx, `SELECT extract(epoch FROM s.created_at - d.completed_at)`+pair, since); err != nil {
		return nil, nil, lat, err
	}
	if len(gaps) != n || len(created) != n {
		return nil, nil, lat, fmt.Errorf("workflow: %d of %d second steps found", len(gaps), n)
	}
	return gaps, created, lat, nil
}

// durations reads one column of seconds as durations.
func (b *systemBench) durations(ctx context.Context, query string, args ...any) ([]time.Duration, error) {
	rows, err := b.st.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []time.Duration
	for rows.Next() {
		var s float64
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, time.Duration(s*float64(time.Second)))
	}
	return out, rows.Err()
}

// share is d as a percentage of one core over window.
func share(d, window time.Duration) float64 { return 100 * d.Seconds() / window.Seconds() }

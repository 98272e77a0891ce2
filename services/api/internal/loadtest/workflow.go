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
// loopback receiver) created through the API by 4 clients, and for each the
// time from a's completion to b's start (the step's overhead: the commit's
// wakeup and NOTIFY, the scheduler's advance, the creation and the
// enqueue, the worker's pick-up). Anchor in the same run and stack: n plain
// webhook_callback tasks created the same way, from the row's creation to its
// start (the pick-up alone). Both from the rows' timestamps.
func (b *systemBench) workflowSteps(ctx context.Context) error {
	n := b.cfg.flows
	poll := b.cfg.workerTaskCheck
	if poll == "" {
		poll = "the default, 100ms"
	}
	fmt.Printf("\nworker.task_check_interval: %s\n", poll)
	fmt.Printf("workflow step overhead: one client creates %d two-step workflows, one after another, (webhook_callback a → b) through the API (operator key); "+
		"per workflow, b's start − a's completion (the advance by the scheduler, b's creation and enqueue, the worker's pick-up); "+
		"anchor: %d plain webhook_callback tasks created the same way, their start − their row's creation\n", n, n)
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
	if _, err := drive(ctx, n, 1, http.StatusCreated, postRequests(b.st.apiURL+"/api/v1/tasks", b.st.operatorKey, webhookBody(b.sinkURL+"/wf-plain"))); err != nil {
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

	since = time.Now().UTC()
	body := func(i int) []byte {
		hook := func(step string) string {
			return `{"id":"` + step + `","type":"webhook_callback","params":{"url":"` + b.sinkURL + `/wf-` + step + `","payload":{"n":` + strconv.Itoa(i) + `}}`
		}
		return []byte(`{"name":"bench-` + strconv.Itoa(i) + `","steps":[` + hook("a") + `},` + hook("b") + `,"depends_on":["a"]}]}`)
	}
	lat, err := drive(ctx, n, 1, http.StatusCreated, postRequests(b.st.apiURL+"/api/v1/workflows", b.st.operatorKey, body))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var ended int
		if err := b.st.db.QueryRowContext(ctx, `SELECT count(*) FROM workflows WHERE created_at >= $1 AND status = 'completed'`, since).Scan(&ended); err != nil {
			return err
		}
		if ended == n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("workflow: only %d of %d workflows completed within 2 minutes:\n%s", ended, n, b.st.scheduler.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	gaps, err := b.durations(ctx, `SELECT extract(epoch FROM s.started_at - d.completed_at) FROM tasks d
		JOIN tasks s ON s.workflow_id = d.workflow_id AND s.step_id = 'b'
		WHERE d.step_id = 'a' AND d.created_at >= $1`, since)
	if err != nil {
		return err
	}
	if len(gaps) != n {
		return fmt.Errorf("workflow: %d of %d second steps found", len(gaps), n)
	}
	created, err := b.durations(ctx, `SELECT extract(epoch FROM s.created_at - d.completed_at) FROM tasks d
		JOIN tasks s ON s.workflow_id = d.workflow_id AND s.step_id = 'b'
		WHERE d.step_id = 'a' AND d.created_at >= $1`, since)
	if err != nil {
		return err
	}
	if got := b.sink.count("/wf-b"); got != n {
		return fmt.Errorf("workflow: the receiver got %d second-step requests for %d workflows", got, n)
	}
	p50, p99 := pct(gaps, 0.5), pct(gaps, 0.99)
	a50, a99 := pct(plain, 0.5), pct(plain, 0.99)
	fmt.Printf("workflow: dependency completed → next step started  p50 %s  p99 %s  max %s  (workflow creates %s)\n",
		p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), pct(gaps, 1).Round(10*time.Microsecond), lat)
	fmt.Printf("          of which completed → next step's row created  p50 %s  p99 %s\n", pct(created, 0.5).Round(10*time.Microsecond), pct(created, 0.99).Round(10*time.Microsecond))
	fmt.Printf("          anchor: plain task created → started        p50 %s  p99 %s\n", a50.Round(10*time.Microsecond), a99.Round(10*time.Microsecond))
	fmt.Printf("          ratio p50 %.2f×, p99 %.2f× the anchor; target p99 <= 50ms: %v\n", ratio(p50, a50), ratio(p99, a99), p99 <= 50*time.Millisecond)
	return nil
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

package worker

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskforge/taskforge/pkg/lifecycle"
	"github.com/taskforge/taskforge/pkg/lifecycle/lifecycletest"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/testenv"
)

func newTestWriter(t *testing.T) (*writer, testenv.Postgres) {
	t.Helper()
	pg := testenv.NewPostgres(t)
	w := newWriter(pg.SQL, testLifecycle(t, pg), zaptest.NewLogger(t), 20*time.Millisecond, 0, 3, newMetrics(prometheus.NewRegistry()), nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w.close(ctx)
	})
	return w, pg
}

func testLifecycle(t *testing.T, pg testenv.Postgres) *lifecycle.Lifecycle {
	t.Helper()
	lc, err := lifecycle.New(pg.DB, nil)
	require.NoError(t, err)
	return lc
}

func insertTask(t *testing.T, pg testenv.Postgres, id, status string, callback *string) {
	t.Helper()
	require.NoError(t, pg.DB.Exec(`INSERT INTO tasks (id, type, status, priority, max_retries, retry_policy, timeout_seconds, callback_url)
VALUES (?, 'refresh_portfolio', ?, 'normal', 3, '{}', 60, ?)`, id, status, callback).Error)
}

func (w *writer) finishWait(op *finishOp) finishResult {
	w.finish(op)
	return <-op.done
}

func TestStateMachineHoldsAgainstLateAndDuplicateMessages(t *testing.T) {
	t.Parallel()
	w, pg := newTestWriter(t)
	ctx := context.Background()
	row := func(id string) store.Task {
		var r store.Task
		require.NoError(t, pg.DB.Where("id = ?", id).Take(&r).Error)
		return r
	}
	for _, s := range []string{"completed", "failed", "cancelled"} {
		insertTask(t, pg, "task_"+s, s, nil)
		res := w.start(ctx, "task_"+s, "w1", 1)
		require.NoError(t, res.err)
		require.False(t, res.started, "a %s task never starts again", s)
		require.Equal(t, s, row("task_"+s).Status)
	}

	insertTask(t, pg, "task_a", "pending", nil)
	first := w.start(ctx, "task_a", "w1", 1)
	require.True(t, first.started)
	require.Equal(t, 1, first.attempt)
	// The worker died; Asynq delivers again: running → running, attempt 2,
	// and attempt 1 is closed as lost.
	stale := w.start(ctx, "task_a", "w2", 1)
	require.False(t, stale.started, "a start must follow the attempt it read")
	second := w.start(ctx, "task_a", "w2", 2)
	require.True(t, second.started)
	require.Equal(t, 2, second.attempt)
	var att []store.TaskAttempt
	require.NoError(t, pg.DB.Where("task_id = ?", "task_a").Order("attempt").Find(&att).Error)
	require.Len(t, att, 2)
	require.Equal(t, "lost", att[0].Outcome)
	require.Equal(t, "running", att[1].Outcome)

	// The dead attempt's late outcome does not touch the task.
	late := w.finishWait(&finishOp{key: attemptKey{"task_a", 1}, status: "completed", ts: time.Now(), outcome: "completed", result: []byte(`{"stale":true}`)})
	require.NoError(t, late.err)
	require.False(t, late.applied)
	require.Equal(t, "running", row("task_a").Status)

	errJSON, _ := json.Marshal(taskError{Message: "x", Kind: KindError, Attempt: 2})
	done := w.finishWait(&finishOp{key: attemptKey{"task_a", 2}, status: "failed", ts: time.Now(), outcome: "failed", errJSON: errJSON, errorKind: KindError, errorMsg: "x"})
	require.True(t, done.applied)
	// A duplicate outcome changes nothing.
	dup := w.finishWait(&finishOp{key: attemptKey{"task_a", 2}, status: "completed", ts: time.Now(), outcome: "completed"})
	require.False(t, dup.applied)
	r := row("task_a")
	require.Equal(t, "failed", r.Status)
	require.Nil(t, r.Result)

	// A running task whose cancel was requested while its worker was gone is
	// cancelled by the next delivery instead of run.
	cb := "https://example.com/hook"
	insertTask(t, pg, "task_c", "pending", &cb)
	require.True(t, w.start(ctx, "task_c", "w1", 1).started)
	require.NoError(t, lifecycletest.Force(pg.DB, "task_c", `cancel_requested = true`))
	res := w.start(ctx, "task_c", "w2", 2)
	require.False(t, res.started)
	require.True(t, res.cancelled)
	require.Equal(t, "cancelled", row("task_c").Status)
	var cbs []store.TaskCallback
	require.NoError(t, pg.DB.Where("task_id = 'task_c'").Find(&cbs).Error)
	require.Len(t, cbs, 1, "a terminal state queues its callback")

	res = w.start(ctx, "task_missing", "w1", 1)
	require.NoError(t, res.err)
	require.False(t, res.started)
}

func TestProgressMessagesAreBoundedAndFlushedBeforeOutcome(t *testing.T) {
	t.Parallel()
	w, pg := newTestWriter(t)
	insertTask(t, pg, "task_p", "pending", nil)
	st := w.start(context.Background(), "task_p", "w1", 1)
	require.True(t, st.started)
	rep := newReporter(w, attemptKey{"task_p", st.attempt}, 2, 100)
	for _, m := range []string{"one", "two", "three", "four"} {
		rep.Progress(0.25, "s", m)
		// Each message in its own flush: they append across flushes.
		require.Eventually(t, func() bool {
			var r store.Task
			require.NoError(t, pg.DB.Where("id = ?", "task_p").Take(&r).Error)
			return strings.Contains(string(r.Messages), `"`+m+`"`)
		}, 5*time.Second, 5*time.Millisecond)
	}
	rep.Progress(0.9, "last\x00step", "five")
	for i := 0; i < 4; i++ {
		rep.Log("weird", "bad \xff utf8 \x00", map[string]any{"ch": make(chan int)})
	}
	require.ErrorIs(t, rep.SetResult(make([]byte, 200)), ErrResultTooLarge)
	rep.close()
	rep.Progress(1, "after close", "ignored")
	res := w.finishWait(&finishOp{key: attemptKey{"task_p", st.attempt}, status: "retrying", ts: time.Now(), outcome: "retrying", errJSON: []byte(`{"message":"m","kind":"error","attempt":1}`)})
	require.True(t, res.applied)
	var r store.Task
	require.NoError(t, pg.DB.Where("id = ?", "task_p").Take(&r).Error)
	require.JSONEq(t, `["three","four","five"]`, string(r.Messages), "max_messages (3) newest kept")
	require.InDelta(t, 0.9, r.Progress, 1e-9)
	require.Equal(t, "laststep", r.CurrentStep)
	var logs []store.TaskLog
	require.NoError(t, pg.DB.Where("task_id = ?", "task_p").Order("id").Find(&logs).Error)
	require.Len(t, logs, 3, "two lines and the note on dropped lines")
	require.Equal(t, "info", logs[0].Level)
	require.Equal(t, "bad \uFFFD utf8 ", logs[0].Message)
	require.Contains(t, logs[2].Message, "2 more log lines were dropped")
}

func TestLazyStartAndOutcomeCombine(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	// A long interval: nothing is flushed before the outcome is queued.
	w := newWriter(pg.SQL, testLifecycle(t, pg), zaptest.NewLogger(t), time.Hour, 0, 3, newMetrics(prometheus.NewRegistry()), nil)
	t.Cleanup(func() { w.close(context.Background()) })
	cb := "https://example.com/hook"
	insertTask(t, pg, "task_q", "pending", &cb)
	chk := w.check(context.Background(), "task_q")
	require.True(t, chk.found)
	require.Equal(t, 0, chk.attempt)
	var lazy []startResult
	w.lazyStart("task_q", "w1", 1, func(r startResult) { lazy = append(lazy, r) })
	rep := newReporter(w, attemptKey{"task_q", 1}, 10, 100)
	rep.Progress(0.5, "half", "m1")
	rep.Log("info", "line", nil)
	require.NoError(t, rep.SetResult(map[string]int{"x": 1}))
	res := w.finishWait(&finishOp{key: attemptKey{"task_q", 1}, status: "completed", ts: time.Now().Add(time.Second), outcome: "completed",
		result: rep.close(), durationMs: 1000})
	require.NoError(t, res.err)
	require.True(t, res.applied)
	require.Empty(t, lazy, "the start was absorbed by the outcome")
	var r store.Task
	require.NoError(t, pg.DB.Where("id = ?", "task_q").Take(&r).Error)
	require.Equal(t, "completed", r.Status)
	require.Equal(t, 1, r.Attempt)
	require.Equal(t, "w1", r.WorkerID)
	require.NotNil(t, r.StartedAt)
	require.NotNil(t, r.QueueWaitMs)
	require.InDelta(t, 1.0, r.Progress, 1e-9)
	require.Equal(t, "half", r.CurrentStep)
	require.JSONEq(t, `["m1"]`, string(r.Messages))
	require.JSONEq(t, `{"x":1}`, string(r.Result))
	var att []store.TaskAttempt
	require.NoError(t, pg.DB.Where("task_id = ?", "task_q").Find(&att).Error)
	require.Len(t, att, 1)
	require.Equal(t, "completed", att[0].Outcome)
	require.EqualValues(t, 1000, *att[0].DurationMs)
	var logs int64
	require.NoError(t, pg.DB.Model(&store.TaskLog{}).Where("task_id = ?", "task_q").Count(&logs).Error)
	require.EqualValues(t, 1, logs)
	var cbs int64
	require.NoError(t, pg.DB.Model(&store.TaskCallback{}).Where("task_id = ?", "task_q").Count(&cbs).Error)
	require.EqualValues(t, 1, cbs)

	// A lazy start whose row moved meanwhile is refused and says so, once
	// it is an interval old.
	short := newWriter(pg.SQL, testLifecycle(t, pg), zaptest.NewLogger(t), 20*time.Millisecond, 0, 3, newMetrics(prometheus.NewRegistry()), nil)
	t.Cleanup(func() { short.close(context.Background()) })
	insertTask(t, pg, "task_r", "pending", nil)
	got := make(chan startResult, 1)
	short.lazyStart("task_r", "w1", 1, func(r startResult) { got <- r })
	require.NoError(t, lifecycletest.Force(pg.DB, "task_r", `status = 'cancelled', cancel_requested = true`))
	select {
	case r := <-got:
		require.NoError(t, r.err)
		require.False(t, r.started)
	case <-time.After(5 * time.Second):
		t.Fatal("lazy start never answered")
	}
}

// TestLazyStartWaitsAnInterval: a lazy start, with its attempt's progress and
// log lines, stays out of flushes other operations wake until it is one
// interval old; then it is written on its own, and the attempt's later
// progress again waits an interval.
func TestLazyStartWaitsAnInterval(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	const interval = 400 * time.Millisecond
	w := newWriter(pg.SQL, testLifecycle(t, pg), zaptest.NewLogger(t), interval, 0, 3, newMetrics(prometheus.NewRegistry()), nil)
	t.Cleanup(func() { w.close(context.Background()) })
	insertTask(t, pg, "task_h", "pending", nil)
	insertTask(t, pg, "task_o", "pending", nil)
	row := func(id string) store.Task {
		var r store.Task
		require.NoError(t, pg.DB.Where("id = ?", id).Take(&r).Error)
		return r
	}
	logs := func(id string) int64 {
		var n int64
		require.NoError(t, pg.DB.Model(&store.TaskLog{}).Where("task_id = ?", id).Count(&n).Error)
		return n
	}

	queued := time.Now()
	started := make(chan startResult, 1)
	w.lazyStart("task_h", "w1", 1, func(r startResult) { started <- r })
	rep := newReporter(w, attemptKey{"task_h", 1}, 10, 100)
	rep.Progress(0.25, "first", "m1")
	rep.Log("info", "line one", nil)
	// Another task's check wakes a flush at once: it does not carry the start.
	require.True(t, w.check(context.Background(), "task_o").found)
	if time.Since(queued) < interval/2 {
		require.Equal(t, "pending", row("task_h").Status, "the start waits for its interval")
		require.Zero(t, logs("task_h"), "log lines wait with their attempt's start")
	}

	select {
	case r := <-started:
		require.NoError(t, r.err)
		require.True(t, r.started)
	case <-time.After(5 * time.Second):
		t.Fatal("lazy start never written")
	}
	require.GreaterOrEqual(t, time.Since(queued), interval, "written no sooner than an interval")
	r := row("task_h")
	require.Equal(t, "running", r.Status)
	require.Equal(t, "first", r.CurrentStep, "the progress rode with its start")
	require.EqualValues(t, 1, logs("task_h"))

	// Progress of a running attempt waits an interval too.
	changed := time.Now()
	rep.Progress(0.5, "second", "")
	require.True(t, w.check(context.Background(), "task_o").found)
	if time.Since(changed) < interval/2 {
		require.Equal(t, "first", row("task_h").CurrentStep)
	}
	require.Eventually(t, func() bool { return row("task_h").CurrentStep == "second" }, 5*time.Second, 10*time.Millisecond)
	require.GreaterOrEqual(t, time.Since(changed), interval)
}

// flushes is how many non-empty flushes the writer's metrics have seen.
func flushes(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "taskforge_worker_state_flush_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// TestFlushGapGathersWaitedWrites: a writer that has not flushed for a gap
// flushes a waited read at once; reads that arrive within a gap of that flush
// wait for the gap and share one flush; closing the writer during the wait
// flushes at once.
func TestFlushGapGathersWaitedWrites(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	const gap = 2 * time.Second
	reg := prometheus.NewRegistry()
	w := newWriter(pg.SQL, testLifecycle(t, pg), zaptest.NewLogger(t), time.Hour, gap, 3, newMetrics(reg), nil)
	closed := false
	t.Cleanup(func() {
		if !closed {
			w.close(context.Background())
		}
	})
	ids := []string{"task_g0", "task_g1", "task_g2", "task_g3", "task_g4", "task_g5", "task_g6"}
	for _, id := range ids {
		insertTask(t, pg, id, "pending", nil)
	}

	began := time.Now()
	require.True(t, w.check(context.Background(), ids[0]).found)
	require.Less(t, time.Since(began), gap/2, "an idle writer flushes at once")
	require.EqualValues(t, 1, flushes(t, reg))

	// Five reads, one every 30 ms, all within the gap: one flush, after it.
	var wg sync.WaitGroup
	found := make([]bool, 5)
	for i := range found {
		wg.Add(1)
		go func() { defer wg.Done(); found[i] = w.check(context.Background(), ids[1+i]).found }()
		time.Sleep(30 * time.Millisecond)
	}
	wg.Wait()
	require.Equal(t, []bool{true, true, true, true, true}, found)
	require.GreaterOrEqual(t, time.Since(began), gap, "the reads waited for the gap")
	require.EqualValues(t, 2, flushes(t, reg), "the reads shared one flush")

	// A read waiting for the gap is flushed when the writer closes.
	answered := make(chan bool, 1)
	waiting := time.Now()
	go func() { answered <- w.check(context.Background(), ids[6]).found }()
	time.Sleep(50 * time.Millisecond)
	w.close(context.Background())
	closed = true
	select {
	case ok := <-answered:
		require.True(t, ok)
		require.Less(t, time.Since(waiting), gap/2, "close does not wait out the gap")
	case <-time.After(gap):
		t.Fatal("close left the read unanswered")
	}
	require.EqualValues(t, 3, flushes(t, reg))
}

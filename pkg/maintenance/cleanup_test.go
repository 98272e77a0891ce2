package maintenance_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/maintenance"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

var retention = config.Defaults().Retention

const day = 24 * time.Hour

// seedCleanup makes old and new tasks in every status, logs, results, prices
// and audit rows. It returns the old expired result, whose file must go.
func seedCleanup(t *testing.T, b bundle) result.Result {
	t.Helper()
	statuses := []string{"pending", "running", "retrying", "completed", "failed", "cancelled"}
	n := 0
	for _, st := range statuses {
		for i := 0; i < 4; i++ {
			n++
			old := id("task_old_"+st, i)
			b.task(t, old, "refresh_portfolio", st, 40*day)
			b.logLine(t, old, 40*day)
			b.logLine(t, old, 20*day)
			recent := id("task_new_"+st, i)
			b.task(t, recent, "refresh_portfolio", st, 2*day)
			b.logLine(t, recent, 1*day)
		}
	}
	// Results: one expired on an old task, one live on a recent task.
	expired, err := b.results.Put(b.ctx, "task_old_completed_000", "old.csv", "text/csv", strings.NewReader("a\n"))
	require.NoError(t, err)
	b.exec(t, `UPDATE results SET expires_at = now() - interval '1 hour', created_at = now() - interval '10 days' WHERE id = ?`, expired.ID)
	_, err = b.results.Put(b.ctx, "task_new_completed_000", "new.csv", "text/csv", strings.NewReader("b\n"))
	require.NoError(t, err)
	// A live result on an old task goes with its task.
	_, err = b.results.Put(b.ctx, "task_old_failed_000", "kept-until-task-goes.csv", "text/csv", strings.NewReader("c\n"))
	require.NoError(t, err)

	b.exec(t, `INSERT INTO assets (symbol, kind) VALUES ('AAA', 'equity')`)
	b.exec(t, `INSERT INTO prices (asset_symbol, date, open, high, low, close)
		SELECT 'AAA', d::date, 1, 1, 1, 1 FROM generate_series(now() - interval '4000 days', now(), interval '1 day') d`)
	b.exec(t, `INSERT INTO audit_log (ts, action, outcome) SELECT now() - (g || ' days')::interval, 'test', 'success' FROM generate_series(1, 400) g`)
	b.exec(t, `UPDATE audit_log SET ts = ts + interval '12 hours'`)
	return expired
}

func TestCleanupDeletesOldTerminalRowsOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	expired := seedCleanup(t, b)

	// A tiny batch size makes every target take several batches.
	h := maintenance.NewCleanup(b.db, b.results, maintenance.CleanupOptions{Retention: retention, BatchSize: 3})

	// A dry run counts and deletes nothing.
	before := b.count(t, `SELECT count(*) FROM tasks`) + b.count(t, `SELECT count(*) FROM task_logs`) +
		b.count(t, `SELECT count(*) FROM prices`) + b.count(t, `SELECT count(*) FROM audit_log`) + b.count(t, `SELECT count(*) FROM results`)
	dry := &job.Recorder{ID: "task_cleanup"}
	require.NoError(t, h(b.ctx, dry, &taskpb.CleanupOldDataParams{DryRun: true}))
	dr := decode[maintenance.CleanupResult](t, dry)
	require.True(t, dr.DryRun)
	after := b.count(t, `SELECT count(*) FROM tasks`) + b.count(t, `SELECT count(*) FROM task_logs`) +
		b.count(t, `SELECT count(*) FROM prices`) + b.count(t, `SELECT count(*) FROM audit_log`) + b.count(t, `SELECT count(*) FROM results`)
	require.Equal(t, before, after)

	// The expected counts, from the data itself.
	priceCutoff := time.Now().UTC().AddDate(0, 0, -3650).Format(time.DateOnly)
	wantPrices := b.count(t, `SELECT count(*) FROM prices WHERE date < $1::date`, priceCutoff)
	wantAudit := b.count(t, `SELECT count(*) FROM audit_log WHERE ts < now() - interval '365 days'`)
	require.Positive(t, wantPrices)
	require.Positive(t, wantAudit)

	rec := &job.Recorder{ID: "task_cleanup"}
	require.NoError(t, h(b.ctx, rec, &taskpb.CleanupOldDataParams{}))
	res := decode[maintenance.CleanupResult](t, rec)
	require.Equal(t, dr.Targets["tasks"].Rows, res.Targets["tasks"].Rows)

	// 12 old terminal tasks (3 statuses × 4) are gone; every non-terminal task
	// and every recent one stays.
	require.EqualValues(t, 12, res.Targets["tasks"].Rows)
	require.Zero(t, b.count(t, `SELECT count(*) FROM tasks WHERE id LIKE 'task_old_%' AND status IN ('completed', 'failed', 'cancelled')`))
	require.EqualValues(t, 12, b.count(t, `SELECT count(*) FROM tasks WHERE id LIKE 'task_old_%' AND status IN ('pending', 'running', 'retrying')`))
	require.EqualValues(t, 24, b.count(t, `SELECT count(*) FROM tasks WHERE id LIKE 'task_new_%'`))
	// The logs older than 14 days of terminal tasks (two per old terminal task)
	// went in the task_logs target; non-terminal tasks keep all their logs.
	require.EqualValues(t, 24, res.Targets["task_logs"].Rows)
	require.EqualValues(t, 24, b.count(t, `SELECT count(*) FROM task_logs WHERE task_id LIKE 'task_old_%'`))
	require.EqualValues(t, 24, b.count(t, `SELECT count(*) FROM task_logs WHERE task_id LIKE 'task_new_%'`))

	require.Equal(t, wantPrices, res.Targets["prices"].Rows)
	require.Equal(t, wantPrices, dr.Targets["prices"].Rows)
	require.Zero(t, b.count(t, `SELECT count(*) FROM prices WHERE date < $1::date`, priceCutoff))
	require.Positive(t, b.count(t, `SELECT count(*) FROM prices`))
	require.Equal(t, wantAudit, res.Targets["audit"].Rows)
	require.EqualValues(t, 365, b.count(t, `SELECT count(*) FROM audit_log`))

	// The expired result went in the results target, the old failed task's
	// result with its task; the recent one stays. Files went with rows.
	require.EqualValues(t, 1, res.Targets["results"].Rows)
	require.EqualValues(t, 1, res.Targets["results"].Files)
	require.EqualValues(t, 1, res.Targets["tasks"].Files)
	require.EqualValues(t, 1, b.count(t, `SELECT count(*) FROM results`))
	_, err := b.results.Backend().Open(b.ctx, expired.Key)
	require.ErrorIs(t, err, result.ErrNotFound)
	require.Equal(t, 1.0, rec.Fraction())

	// Idempotent: a second run deletes nothing more.
	again := &job.Recorder{ID: "task_cleanup"}
	require.NoError(t, h(b.ctx, again, &taskpb.CleanupOldDataParams{}))
	for target, r := range decode[maintenance.CleanupResult](t, again).Targets {
		require.Zero(t, r.Rows, target)
	}
}

func TestCleanupParams(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.task(t, "task_a", "x", "completed", 5*day)
	b.task(t, "task_b", "x", "completed", 1*day)
	h := maintenance.NewCleanup(b.db, b.results, maintenance.CleanupOptions{Retention: retention})

	// older_than_days overrides the retention; targets limit the work.
	rec := &job.Recorder{}
	require.NoError(t, h(b.ctx, rec, &taskpb.CleanupOldDataParams{OlderThanDays: 3, Targets: []string{"tasks"}}))
	res := decode[maintenance.CleanupResult](t, rec)
	require.Len(t, res.Targets, 1)
	require.EqualValues(t, 1, res.Targets["tasks"].Rows)
	require.Equal(t, 3, res.Targets["tasks"].OlderThanDays)
	require.EqualValues(t, 1, b.count(t, `SELECT count(*) FROM tasks WHERE id = 'task_b'`))

	err := h(b.ctx, &job.Recorder{}, &taskpb.CleanupOldDataParams{Targets: []string{"users"}})
	require.True(t, job.IsPermanent(err))
	err = h(b.ctx, &job.Recorder{}, &taskpb.CleanupOldDataParams{OlderThanDays: -1})
	require.True(t, job.IsPermanent(err))

	// The audit log is never pruned below retention.audit_min (finding 7:
	// an admin could purge it with older_than_days 1), named or implied.
	b.exec(t, `INSERT INTO audit_log (ts, action, outcome) VALUES (now() - interval '2 days', 'test', 'success')`)
	for _, p := range []*taskpb.CleanupOldDataParams{
		{OlderThanDays: 1, Targets: []string{"audit"}},
		{OlderThanDays: 1},
		{OlderThanDays: 364, Targets: []string{"tasks", "audit"}},
	} {
		err = h(b.ctx, &job.Recorder{}, p)
		require.True(t, job.IsPermanent(err), "%v", p)
		require.ErrorContains(t, err, "retention.audit_min")
	}
	require.EqualValues(t, 1, b.count(t, `SELECT count(*) FROM audit_log WHERE action = 'test'`))
	require.NoError(t, h(b.ctx, &job.Recorder{}, &taskpb.CleanupOldDataParams{OlderThanDays: 365, Targets: []string{"audit"}}))

	// A target whose table is missing is skipped with a log line.
	b.exec(t, `DROP TABLE audit_log`)
	rec = &job.Recorder{}
	require.NoError(t, h(b.ctx, rec, &taskpb.CleanupOldDataParams{Targets: []string{"audit"}}))
	require.Contains(t, decode[maintenance.CleanupResult](t, rec).Targets["audit"].Skipped, "does not exist")
	var logged bool
	for _, l := range rec.Logs() {
		logged = logged || (l.Level == job.Warn && l.Fields["table"] == "audit_log")
	}
	require.True(t, logged)
}

func TestCleanupStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := 0; i < 20; i++ {
		b.task(t, id("task_old", i), "x", "completed", 40*day)
	}
	ctx, cancel := context.WithCancel(b.ctx)
	rec := &cancelAfter{Recorder: &job.Recorder{}, n: 2, cancel: cancel}
	h := maintenance.NewCleanup(b.db, b.results, maintenance.CleanupOptions{Retention: retention, BatchSize: 2})
	err := h(ctx, rec, &taskpb.CleanupOldDataParams{Targets: []string{"tasks"}})
	require.ErrorIs(t, err, context.Canceled)
	left := b.count(t, `SELECT count(*) FROM tasks`)
	require.Positive(t, left)
	require.Less(t, left, int64(20))
	require.Zero(t, left%2, "batches are whole")
}

// cancelAfter cancels the context after n debug log lines (one per batch).
type cancelAfter struct {
	*job.Recorder
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Log(level, msg string, fields map[string]any) {
	c.Recorder.Log(level, msg, fields)
	if msg == "cleanup batch deleted" {
		c.n--
		if c.n == 0 {
			c.cancel()
		}
	}
}

package maintenance_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/maintenance"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// tableSums returns each public table's row count and a checksum of its
// rows (the migrations' version table aside).
func (b bundle) tableSums(t *testing.T) map[string]string {
	t.Helper()
	rows, err := b.pg.SQL.Query(`SELECT quote_ident(tablename) FROM pg_tables
		WHERE schemaname = 'public' AND tablename <> 'goose_db_version' ORDER BY 1`)
	require.NoError(t, err)
	var tables []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		tables = append(tables, s)
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	out := map[string]string{}
	for _, tb := range tables {
		var sum string
		require.NoError(t, b.pg.SQL.QueryRow(`SELECT count(*) || ' ' || COALESCE(md5(string_agg(r::text, '|' ORDER BY r::text)), '-') FROM `+tb+` r`).Scan(&sum), tb)
		out[tb] = sum
	}
	return out
}

// seedCascades gives every old task an attempt, and old completed tasks a
// callback, so that deleting them cascades.
func seedCascades(t *testing.T, b bundle) {
	t.Helper()
	b.exec(t, `INSERT INTO task_attempts (task_id, attempt, started_at, outcome)
		SELECT id, 1, created_at, 'completed' FROM tasks WHERE id LIKE 'task_old_%'`)
	b.exec(t, `INSERT INTO task_callbacks (task_id, url) SELECT id, 'https://example.test/cb' FROM tasks WHERE id LIKE 'task_old_completed_%'`)
}

// TestCleanupDryRunIsExact: a dry run changes nothing (every table's row
// count and checksum, and the result files, are as before) and its report
// is what a real run with the same parameters then does: rows, files and
// cascaded rows per target, with and without result storage, for every
// target and for subsets in which earlier targets do not take rows from
// later ones.
func TestCleanupDryRunIsExact(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		targets   []string
		noResults bool
	}{
		"all targets":           {},
		"all without storage":   {noResults: true},
		"tasks only":            {targets: []string{"tasks"}},
		"tasks and task_logs":   {targets: []string{"task_logs", "tasks"}},
		"results and tasks":     {targets: []string{"tasks", "results"}},
		"prices and audit":      {targets: []string{"prices", "audit"}},
		"tasks without storage": {targets: []string{"tasks"}, noResults: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			expired := seedCleanup(t, b)
			seedCascades(t, b)
			var results *result.Store
			if !tc.noResults {
				results = b.results
			}
			now := time.Now()
			h := maintenance.NewCleanup(b.db, results, maintenance.CleanupOptions{
				Retention: retention, BatchSize: 4, Now: func() time.Time { return now },
			})

			before := b.tableSums(t)
			dry := &job.Recorder{ID: "task_cleanup_dry"}
			require.NoError(t, h(b.ctx, dry, &taskpb.CleanupOldDataParams{Targets: tc.targets, DryRun: true}))
			require.Equal(t, before, b.tableSums(t), "a dry run writes nothing")
			_, err := b.results.Backend().Open(b.ctx, expired.Key)
			require.NoError(t, err, "a dry run removes no file")
			dr := decode[maintenance.CleanupResult](t, dry)
			require.True(t, dr.DryRun)
			require.Empty(t, dr.Refused)

			real := &job.Recorder{ID: "task_cleanup"}
			require.NoError(t, h(b.ctx, real, &taskpb.CleanupOldDataParams{Targets: tc.targets}))
			rr := decode[maintenance.CleanupResult](t, real)
			require.False(t, rr.DryRun)
			require.Equal(t, rr.Targets, dr.Targets, "the dry run's report is what the real run did")
			require.NotEqual(t, before, b.tableSums(t), "the real run deleted something")

			var rows int64
			for _, r := range rr.Targets {
				rows += r.Rows
			}
			require.Positive(t, rows)
			if tr, ok := rr.Targets["tasks"]; ok {
				require.Positive(t, tr.Cascaded["task_attempts"], "cascades are counted")
				require.Positive(t, tr.Cascaded["task_callbacks"])
			}
		})
	}
}

// TestCleanupDryRunSaysWhenARealRunIsRefused: a dry run below the audit
// log's minimum retention is allowed and says that the real run would be
// refused.
func TestCleanupDryRunSaysWhenARealRunIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := maintenance.NewCleanup(b.db, b.results, maintenance.CleanupOptions{Retention: retention})
	dry := &job.Recorder{}
	require.NoError(t, h(b.ctx, dry, &taskpb.CleanupOldDataParams{OlderThanDays: 1, DryRun: true}))
	require.Contains(t, decode[maintenance.CleanupResult](t, dry).Refused, "retention.audit_min")
	err := h(b.ctx, &job.Recorder{}, &taskpb.CleanupOldDataParams{OlderThanDays: 1})
	require.True(t, job.IsPermanent(err))
}

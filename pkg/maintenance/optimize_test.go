package maintenance_test

import (
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/maintenance"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// lastStats reads a table's last manual vacuum and analyze times.
func lastStats(t *testing.T, b bundle, table string) (vacuum, analyze sql.NullTime) {
	t.Helper()
	require.NoError(t, b.pg.SQL.QueryRow(`SELECT last_vacuum, last_analyze FROM pg_stat_user_tables
		WHERE schemaname = 'public' AND relname = $1`, table).Scan(&vacuum, &analyze))
	return
}

func TestOptimizeVacuumsAnalysesAndReindexes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := 0; i < 300; i++ {
		b.task(t, id("task", i), "x", "completed", time.Hour)
	}
	// Dead rows for VACUUM to reclaim.
	b.exec(t, `DELETE FROM tasks WHERE id > 'task_100'`)
	v0, a0 := lastStats(t, b, "tasks")
	require.False(t, v0.Valid)
	require.False(t, a0.Valid)

	rec := &job.Recorder{}
	h := maintenance.NewOptimize(b.db)
	require.NoError(t, h(b.ctx, rec, &taskpb.OptimizeDatabaseParams{Tables: []string{"tasks", "task_logs"}}))
	res := decode[maintenance.OptimizeResult](t, rec)
	require.Len(t, res.Tables, 2)
	tr := res.Tables["tasks"]
	require.True(t, tr.Vacuumed && tr.Analyzed && tr.Reindexed, "%+v", tr)
	require.Positive(t, tr.SizeBefore)
	require.Positive(t, tr.SizeAfter)
	require.NotNil(t, tr.LastAnalyze)
	require.NotNil(t, tr.LastVacuum)

	v1, a1 := lastStats(t, b, "tasks")
	require.True(t, v1.Valid, "tasks was vacuumed")
	require.True(t, a1.Valid, "tasks was analysed")
	var reltuples float64
	require.NoError(t, b.pg.SQL.QueryRow(`SELECT reltuples FROM pg_class WHERE oid = 'public.tasks'::regclass`).Scan(&reltuples))
	require.EqualValues(t, 101, reltuples, "statistics reflect the live rows")
	vl, _ := lastStats(t, b, "task_logs")
	require.True(t, vl.Valid)
	require.Equal(t, 1.0, rec.Fraction())

	// analyze_only analyses again without vacuuming.
	rec = &job.Recorder{}
	require.NoError(t, h(b.ctx, rec, &taskpb.OptimizeDatabaseParams{Tables: []string{"tasks"}, AnalyzeOnly: true}))
	tr = decode[maintenance.OptimizeResult](t, rec).Tables["tasks"]
	require.True(t, tr.Analyzed)
	require.False(t, tr.Vacuumed || tr.Reindexed)
	v2, a2 := lastStats(t, b, "tasks")
	require.Equal(t, v1.Time, v2.Time)
	require.True(t, a2.Time.After(a1.Time) || a2.Time.Equal(a1.Time))
}

func TestOptimizeDefaultsToProjectTables(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := &job.Recorder{}
	require.NoError(t, maintenance.NewOptimize(b.db)(b.ctx, rec, &taskpb.OptimizeDatabaseParams{AnalyzeOnly: true}))
	res := decode[maintenance.OptimizeResult](t, rec)
	want, err := maintenance.ProjectTables(b.db)
	require.NoError(t, err)
	require.Len(t, res.Tables, len(want))
	for _, table := range want {
		require.Contains(t, res.Tables, table)
		_, a := lastStats(t, b, table)
		require.True(t, a.Valid, table)
	}
	require.NotContains(t, res.Tables, "goose_db_version")
}

func TestOptimizeRefusesUnknownTables(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := maintenance.NewOptimize(b.db)
	for _, table := range []string{"no_such_table", `tasks"; DROP TABLE tasks; --`, "pg_class"} {
		err := h(b.ctx, &job.Recorder{}, &taskpb.OptimizeDatabaseParams{Tables: []string{table}})
		require.ErrorIs(t, err, maintenance.ErrUnknownTable, table)
		require.True(t, job.IsPermanent(err))
	}
	require.EqualValues(t, 0, b.count(t, `SELECT count(*) FROM tasks`))
}

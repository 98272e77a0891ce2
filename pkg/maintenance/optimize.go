package maintenance

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// TableReport is one table's outcome in optimize_database's result.
type TableReport struct {
	// SizeBefore and SizeAfter are pg_total_relation_size in bytes (table,
	// indexes and TOAST).
	SizeBefore int64 `json:"size_before"`
	SizeAfter  int64 `json:"size_after"`
	Vacuumed   bool  `json:"vacuumed"`
	Analyzed   bool  `json:"analyzed"`
	Reindexed  bool  `json:"reindexed"`
	// ReindexError says why REINDEX CONCURRENTLY did not run or failed; the
	// table is still vacuumed and analysed.
	ReindexError string     `json:"reindex_error,omitempty"`
	LastVacuum   *time.Time `json:"last_vacuum,omitempty"`
	LastAnalyze  *time.Time `json:"last_analyze,omitempty"`
	DurationMs   int64      `json:"duration_ms"`
}

// OptimizeResult is optimize_database's result.
type OptimizeResult struct {
	AnalyzeOnly bool                   `json:"analyze_only"`
	Tables      map[string]TableReport `json:"tables"`
	SizeBefore  int64                  `json:"size_before"`
	SizeAfter   int64                  `json:"size_after"`
}

// NewOptimize returns the optimize_database handler: per table, VACUUM (ANALYZE)
// then REINDEX TABLE CONCURRENTLY (neither blocks reads or writes), or ANALYZE
// alone when analyze_only. Statements run outside any transaction, one table at
// a time; table names are checked against the catalog and quoted.
func NewOptimize(db *gorm.DB) func(context.Context, job.Reporter, *taskpb.OptimizeDatabaseParams) error {
	return func(ctx context.Context, r job.Reporter, p *taskpb.OptimizeDatabaseParams) error {
		sdb, err := sqlDB(db)
		if err != nil {
			return err
		}
		tables, err := resolveTables(ctx, db, sdb, p.GetTables())
		if err != nil {
			return err
		}
		out := OptimizeResult{AnalyzeOnly: p.GetAnalyzeOnly(), Tables: map[string]TableReport{}}
		for i, t := range tables {
			if err := ctx.Err(); err != nil {
				return err
			}
			r.Progress(float64(i)/float64(len(tables)), "optimize "+t, "")
			rep, err := optimizeTable(ctx, sdb, t, p.GetAnalyzeOnly())
			if err != nil {
				return err
			}
			if rep.ReindexError != "" {
				r.Log(job.Warn, "reindex skipped", map[string]any{"table": t, "reason": rep.ReindexError})
			}
			r.Log(job.Info, "table optimized", map[string]any{
				"table": t, "size_before": rep.SizeBefore, "size_after": rep.SizeAfter, "duration_ms": rep.DurationMs,
			})
			out.Tables[t] = rep
			out.SizeBefore += rep.SizeBefore
			out.SizeAfter += rep.SizeAfter
			r.Progress(float64(i+1)/float64(len(tables)), "optimize "+t,
				fmt.Sprintf("%s: %d → %d bytes", t, rep.SizeBefore, rep.SizeAfter))
		}
		r.Progress(1, "done", "")
		return r.SetResult(out)
	}
}

func optimizeTable(ctx context.Context, db *sql.DB, table string, analyzeOnly bool) (TableReport, error) {
	start := time.Now()
	var rep TableReport
	size := func() (int64, error) {
		var n int64
		err := db.QueryRowContext(ctx, `SELECT pg_total_relation_size($1::regclass)`, quote(table)).Scan(&n)
		return n, err
	}
	var err error
	if rep.SizeBefore, err = size(); err != nil {
		return rep, fmt.Errorf("maintenance: size of %s: %w", table, store.Translate(err))
	}
	if analyzeOnly {
		if _, err := db.ExecContext(ctx, `ANALYZE `+quote(table)); err != nil {
			return rep, fmt.Errorf("maintenance: analyze %s: %w", table, store.Translate(err))
		}
		rep.Analyzed = true
	} else {
		if _, err := db.ExecContext(ctx, `VACUUM (ANALYZE) `+quote(table)); err != nil {
			return rep, fmt.Errorf("maintenance: vacuum %s: %w", table, store.Translate(err))
		}
		rep.Vacuumed, rep.Analyzed = true, true
		// REINDEX CONCURRENTLY builds new indexes beside the old ones and swaps
		// them, so reads and writes go on; a failure (e.g. an invalid index left
		// by an earlier interrupted run) is reported, not fatal.
		if _, err := db.ExecContext(ctx, `REINDEX TABLE CONCURRENTLY `+quote(table)); err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			rep.ReindexError = err.Error()
		} else {
			rep.Reindexed = true
		}
	}
	if rep.SizeAfter, err = size(); err != nil {
		return rep, fmt.Errorf("maintenance: size of %s: %w", table, store.Translate(err))
	}
	var lastVacuum, lastAnalyze sql.NullTime
	err = db.QueryRowContext(ctx, `SELECT GREATEST(last_vacuum, last_autovacuum), GREATEST(last_analyze, last_autoanalyze)
		FROM pg_stat_user_tables WHERE schemaname = 'public' AND relname = $1`, table).Scan(&lastVacuum, &lastAnalyze)
	if err != nil && err != sql.ErrNoRows {
		return rep, fmt.Errorf("maintenance: statistics of %s: %w", table, store.Translate(err))
	}
	if lastVacuum.Valid {
		rep.LastVacuum = &lastVacuum.Time
	}
	if lastAnalyze.Valid {
		rep.LastAnalyze = &lastAnalyze.Time
	}
	rep.DurationMs = time.Since(start).Milliseconds()
	return rep, nil
}

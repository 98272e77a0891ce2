// Package maintenance implements the four maintenance task types:
// cleanup_old_data, optimize_database, backup_data and generate_reports, and the
// restore path of backups. Handlers are plain job.Handler functions built from
// their dependencies; the worker registers them (see Handlers).
package maintenance

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// ErrUnknownTable is returned for a table name that is not a table of the
// database's public schema.
var ErrUnknownTable = errors.New("unknown table")

// Deps are what the maintenance handlers need.
type Deps struct {
	// DB is the application database.
	DB *gorm.DB
	// DatabaseURL reaches the same database for pg_dump and pg_restore; its
	// password is handed to them through PGPASSWORD, never on a command line.
	DatabaseURL string
	// Results stores backups and reports.
	Results *result.Store
	// Retention gives cleanup_old_data's default ages.
	Retention config.RetentionConfig
	// PublicURL is the API's public base URL, used in results' download_url.
	PublicURL string
}

// Handlers returns the four maintenance handlers by task type.
func Handlers(d Deps) map[string]job.Handler {
	return map[string]job.Handler{
		tasks.TypeCleanupOldData:   job.Typed(NewCleanup(d.DB, d.Results, CleanupOptions{Retention: d.Retention})),
		tasks.TypeOptimizeDatabase: job.Typed(NewOptimize(d.DB)),
		tasks.TypeBackupData:       job.Typed(NewBackup(d.DB, d.DatabaseURL, d.Results, d.PublicURL)),
		tasks.TypeGenerateReports:  job.Typed(NewReports(d.DB, d.Results, d.PublicURL)),
	}
}

// sqlDB returns the database/sql handle under db. Maintenance statements go
// through it rather than GORM: VACUUM and REINDEX CONCURRENTLY must not be
// prepared or wrapped in a transaction.
func sqlDB(db *gorm.DB) (*sql.DB, error) {
	s, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("maintenance: %w", err)
	}
	return s, nil
}

// ProjectTables lists the tables of the project's models (store.Models), in
// model order.
func ProjectTables(db *gorm.DB) ([]string, error) {
	var out []string
	for _, m := range store.Models() {
		stmt := &gorm.Statement{DB: db}
		if err := stmt.Parse(m); err != nil {
			return nil, fmt.Errorf("maintenance: parse model %T: %w", m, err)
		}
		if !slices.Contains(out, stmt.Schema.Table) {
			out = append(out, stmt.Schema.Table)
		}
	}
	return out, nil
}

// existingTables returns which of names are ordinary or partitioned tables of
// the public schema.
func existingTables(ctx context.Context, db *sql.DB, names []string) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname = ANY($1)`, names)
	if err != nil {
		return nil, fmt.Errorf("maintenance: catalog: %w", store.Translate(err))
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out[n] = true
	}
	return out, rows.Err()
}

// resolveTables validates requested table names against the catalog (every one
// must exist: a permanent error names the first that does not) or, when none
// are requested, returns the project's tables that exist.
func resolveTables(ctx context.Context, gdb *gorm.DB, db *sql.DB, requested []string) ([]string, error) {
	names := requested
	if len(names) == 0 {
		var err error
		if names, err = ProjectTables(gdb); err != nil {
			return nil, err
		}
	}
	exist, err := existingTables(ctx, db, names)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if !exist[n] {
			if len(requested) > 0 {
				return nil, job.Permanent(fmt.Errorf("maintenance: table %q: %w", n, ErrUnknownTable))
			}
			continue
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// quote returns the schema-qualified, quoted name of a public table. Names are
// validated against the catalog before they get here.
func quote(table string) string { return pgx.Identifier{"public", table}.Sanitize() }

// fkOrder sorts tables so that every table comes after the tables it references
// (among those given), keeping the given order otherwise. Cycles keep their
// given order.
func fkOrder(ctx context.Context, db *sql.DB, tables []string) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT c.relname, r.relname
		FROM pg_constraint k
		JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_class r ON r.oid = k.confrelid
		WHERE k.contype = 'f' AND n.nspname = 'public' AND c.relname = ANY($1) AND r.relname = ANY($1)`, tables)
	if err != nil {
		return nil, fmt.Errorf("maintenance: foreign keys: %w", store.Translate(err))
	}
	defer rows.Close()
	deps := map[string][]string{}
	for rows.Next() {
		var child, parent string
		if err := rows.Scan(&child, &parent); err != nil {
			return nil, err
		}
		if child != parent {
			deps[child] = append(deps[child], parent)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	pos := map[string]int{}
	for i, t := range tables {
		pos[t] = i
	}
	var out []string
	state := map[string]int{} // 0 new, 1 visiting, 2 done
	var visit func(t string)
	visit = func(t string) {
		if state[t] != 0 {
			return
		}
		state[t] = 1
		ps := deps[t]
		sort.Slice(ps, func(i, j int) bool { return pos[ps[i]] < pos[ps[j]] })
		for _, p := range ps {
			visit(p)
		}
		state[t] = 2
		out = append(out, t)
	}
	for _, t := range tables {
		visit(t)
	}
	return out, nil
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
)

// ErrTooManyDown is returned by MigrateDown when asked to roll back more
// migrations than are applied.
var ErrTooManyDown = errors.New("more migrations to roll back than are applied")

// MigrationState is one migration as "migrate status" shows it.
type MigrationState struct {
	// Version is the migration's number (the file's prefix).
	Version int64
	// Name is the migration's file name; empty when the database records a
	// version this binary does not contain (applied by a newer release).
	Name string
	// Applied says whether the database records the migration as applied,
	// and AppliedAt when.
	Applied   bool
	AppliedAt time.Time
	// Destructive says that the migration's down section drops a table or a
	// column (or deletes rows): rolling it back loses that data.
	Destructive bool
}

// destructiveDown matches the statements of a down section that lose data.
var destructiveDown = regexp.MustCompile(`(?i)\b(DROP\s+TABLE|DROP\s+COLUMN|DELETE\s+FROM|TRUNCATE)\b`)

// downSection returns the text of a migration file after "-- +goose Down".
func downSection(text string) string {
	i := strings.Index(text, "-- +goose Down")
	if i < 0 {
		return ""
	}
	return text[i:]
}

// Migrations lists every migration this binary holds, in version order, with
// its state in the database, followed by any version the database records as
// applied that this binary does not hold (a newer release's: roll it back
// with that release's binary).
func Migrations(ctx context.Context, db *sql.DB) ([]MigrationState, error) {
	p, err := newProvider(db)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	known := map[int64]bool{}
	out := make([]MigrationState, 0, len(st))
	for _, s := range st {
		name := path.Base(s.Source.Path)
		text, err := fs.ReadFile(migrations, "migrations/"+name)
		if err != nil {
			return nil, fmt.Errorf("store: migrations: %w", err)
		}
		known[s.Source.Version] = true
		out = append(out, MigrationState{
			Version:     s.Source.Version,
			Name:        name,
			Applied:     s.State == goose.StateApplied,
			AppliedAt:   s.AppliedAt,
			Destructive: destructiveDown.MatchString(downSection(string(text))),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	// Status lists only the binary's own migrations; the version table may
	// hold more.
	rows, err := db.QueryContext(ctx, `SELECT version_id, max(tstamp) FROM `+goose.DefaultTablename+`
		WHERE version_id > 0 AND is_applied GROUP BY version_id ORDER BY version_id`)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", Translate(err))
	}
	defer rows.Close()
	for rows.Next() {
		var m MigrationState
		if err := rows.Scan(&m.Version, &m.AppliedAt); err != nil {
			return nil, fmt.Errorf("store: migrations: %w", err)
		}
		if !known[m.Version] {
			m.Applied = true
			out = append(out, m)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	return out, nil
}

// MigrateDown rolls back the n most recently applied migrations, newest
// first (in the order they were applied, which differs from the version
// order only when a migration landed out of order), each in its own
// transaction except those marked NO TRANSACTION. It refuses, before
// touching anything, an n larger than the number of applied migrations and
// an applied migration this binary does not hold. It returns the rolled back
// migrations' file names. A down section that drops a table or column loses
// its data: a following "migrate up" recreates it empty.
func MigrateDown(ctx context.Context, db *sql.DB, n int) ([]string, error) {
	if n < 1 {
		return nil, fmt.Errorf("store: migrate down: the number of migrations must be at least 1, not %d", n)
	}
	mdb, err := unbounded(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("store: migrate down: %w", err)
	}
	defer mdb.Close()
	p, err := newProvider(mdb)
	if err != nil {
		return nil, fmt.Errorf("store: migrate down: %w", err)
	}
	applied, err := appliedOrder(ctx, mdb)
	if err != nil {
		return nil, fmt.Errorf("store: migrate down: %w", err)
	}
	if n > len(applied) {
		return nil, fmt.Errorf("store: migrate down %d: %w (%d applied)", n, ErrTooManyDown, len(applied))
	}
	known := map[int64]bool{}
	for _, s := range p.ListSources() {
		known[s.Version] = true
	}
	for _, v := range applied[:n] {
		if !known[v] {
			return nil, fmt.Errorf("store: migrate down %d: migration %05d is applied but not part of this binary: roll it back with the release that brought it", n, v)
		}
	}
	var done []string
	for range n {
		var res *goose.MigrationResult
		err := RetryLockConflicts(ctx, func() error {
			var err error
			res, err = p.Down(ctx)
			return err
		})
		if err != nil {
			return done, fmt.Errorf("store: migrate down: %w", err)
		}
		done = append(done, path.Base(res.Source.Path))
	}
	return done, nil
}

// appliedOrder lists the applied versions, most recently applied first (the
// order in which Down rolls them back).
func appliedOrder(ctx context.Context, db *sql.DB) ([]int64, error) {
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, goose.DefaultTablename).Scan(&exists); err != nil {
		return nil, Translate(err)
	}
	if !exists {
		return nil, nil
	}
	rows, err := db.QueryContext(ctx, `SELECT version_id FROM `+goose.DefaultTablename+`
		WHERE version_id > 0 AND is_applied ORDER BY id DESC`)
	if err != nil {
		return nil, Translate(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

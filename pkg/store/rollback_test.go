package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// schemaQueries describe the public schema, one sorted line per object, so
// that two dumps compare as text. The version table of the migrations is
// left out: it is the one thing a round trip changes. Column positions are
// relative (a column dropped and added again at the end of its table keeps
// its place among the others; PostgreSQL's attnum does not).
var schemaQueries = []struct{ kind, q string }{
	{"table", `SELECT c.relname || ' kind=' || c.relkind::text || ' persistence=' || c.relpersistence::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`},
	{"column", `SELECT table_name || '.' || column_name
		|| ' #' || row_number() OVER (PARTITION BY table_name ORDER BY ordinal_position)
		|| ' ' || data_type || ' ' || udt_name
		|| ' null=' || is_nullable
		|| ' default=' || COALESCE(column_default, '-')
		|| ' len=' || COALESCE(character_maximum_length::text, '-')
		|| ' prec=' || COALESCE(numeric_precision::text, '-') || ',' || COALESCE(numeric_scale::text, '-')
		|| ' identity=' || is_identity || ' generated=' || is_generated || ':' || COALESCE(generation_expression, '-')
		|| ' collation=' || COALESCE(collation_name, '-')
		FROM information_schema.columns WHERE table_schema = 'public'`},
	{"index", `SELECT indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'public'`},
	{"constraint", `SELECT c.conrelid::regclass || ' ' || c.conname || ' ' || c.contype::text || ' ' || pg_get_constraintdef(c.oid)
		|| ' deferrable=' || c.condeferrable || ',' || c.condeferred
		FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public'`},
	{"trigger", `SELECT c.relname || ' ' || t.tgname || ' ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
		FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND NOT t.tgisinternal`},
	{"function", `SELECT p.proname || ' ' || pg_get_functiondef(p.oid)
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'`},
	{"sequence", `SELECT s.sequencename || ' ' || s.data_type || ' start=' || s.start_value || ' inc=' || s.increment_by
		|| ' min=' || s.min_value || ' max=' || s.max_value || ' cycle=' || s.cycle
		|| ' owned=' || COALESCE((SELECT d.refobjid::regclass || '.' || a.attname FROM pg_depend d
			JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
			WHERE d.objid = (quote_ident(s.schemaname) || '.' || quote_ident(s.sequencename))::regclass
			AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')), '-')
		FROM pg_sequences s WHERE s.schemaname = 'public'`},
	{"view", `SELECT viewname || ' ' || definition FROM pg_views WHERE schemaname = 'public'`},
	{"type", `SELECT t.typname || ' ' || t.typtype::text || ' ' || COALESCE((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
			FROM pg_enum e WHERE e.enumtypid = t.oid), '')
		FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'c', 'r')
		AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')`},
	{"extension", `SELECT extname || ' ' || extversion FROM pg_extension`},
	{"comment", `SELECT d.classoid::regclass || ' ' || d.objoid::regclass || ' ' || d.objsubid || ' ' || d.description
		FROM pg_description d JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'`},
}

// schemaDump renders the public schema as sorted text, without the
// migrations' version table.
func schemaDump(t *testing.T, db *sql.DB) string {
	t.Helper()
	var lines []string
	for _, sq := range schemaQueries {
		rows, err := db.Query(sq.q)
		require.NoError(t, err, sq.kind)
		for rows.Next() {
			var s string
			require.NoError(t, rows.Scan(&s))
			if strings.Contains(s, "goose_db_version") {
				continue
			}
			lines = append(lines, sq.kind+" "+s)
		}
		require.NoError(t, rows.Err())
		require.NoError(t, rows.Close())
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestMigrationsRoundTrip holds every migration's down section to its up: on
// a fresh database the migrations are applied one at a time, recording the
// schema after each; then, from the newest, each is rolled back (the schema
// must be the one before it, exactly), applied again (the one after it) and
// rolled back again; at zero the schema is empty, and up all, down all, up
// all give the same schema again. It covers whatever migrations exist.
func TestMigrationsRoundTrip(t *testing.T) {
	t.Parallel()
	pg := testenv.NewEmptyPostgres(t)
	ctx := context.Background()
	db := pg.SQL

	empty := schemaDump(t, db)
	require.NotContains(t, empty, "table ", "a fresh database has no table of its own")
	// A database without migrations has nothing to roll back.
	_, err := store.MigrateDown(ctx, db, 1)
	require.ErrorIs(t, err, store.ErrTooManyDown)

	all, err := store.Migrations(ctx, db)
	require.NoError(t, err)
	require.NotEmpty(t, all)
	versions := make([]int64, len(all))
	names := make([]string, len(all))
	after := make([]string, len(all)) // after[i]: the schema once migrations 0..i are applied
	for i, m := range all {
		require.NotEmpty(t, m.Name, "version %d", m.Version)
		require.False(t, m.Applied, m.Name)
		versions[i], names[i] = m.Version, m.Name
		require.NoError(t, store.MigrateUpTo(ctx, db, m.Version), m.Name)
		after[i] = schemaDump(t, db)
	}
	before := func(i int) string {
		if i == 0 {
			return empty
		}
		return after[i-1]
	}
	st, err := store.Migrations(ctx, db)
	require.NoError(t, err)
	for _, m := range st {
		require.True(t, m.Applied, m.Name)
	}

	for i := len(versions) - 1; i >= 0; i-- {
		done, err := store.MigrateDown(ctx, db, 1)
		require.NoError(t, err, names[i])
		require.Equal(t, []string{names[i]}, done)
		requireSameSchema(t, before(i), schemaDump(t, db), "down %s", names[i])

		require.NoError(t, store.MigrateUpTo(ctx, db, versions[i]), names[i])
		requireSameSchema(t, after[i], schemaDump(t, db), "down then up %s", names[i])

		_, err = store.MigrateDown(ctx, db, 1)
		require.NoError(t, err, names[i])
		requireSameSchema(t, before(i), schemaDump(t, db), "down, up, down %s", names[i])
	}
	_, err = store.MigrateDown(ctx, db, 1)
	require.ErrorIs(t, err, store.ErrTooManyDown)

	// Up all, down all, up all.
	require.NoError(t, store.Migrate(ctx, db))
	full := after[len(after)-1]
	requireSameSchema(t, full, schemaDump(t, db), "up all after down to zero")
	_, err = store.MigrateDown(ctx, db, len(versions)+1)
	require.ErrorIs(t, err, store.ErrTooManyDown, "refused before touching anything")
	requireSameSchema(t, full, schemaDump(t, db), "a refused down changes nothing")
	done, err := store.MigrateDown(ctx, db, len(versions))
	require.NoError(t, err)
	require.Len(t, done, len(versions))
	require.Equal(t, names[len(names)-1], done[0], "newest first")
	requireSameSchema(t, empty, schemaDump(t, db), "down to zero")
	require.NoError(t, store.Migrate(ctx, db))
	requireSameSchema(t, full, schemaDump(t, db), "up all again")
}

// requireSameSchema fails with the lines that differ.
func requireSameSchema(t *testing.T, want, got string, msg string, args ...any) {
	t.Helper()
	if want == got {
		return
	}
	w, g := map[string]bool{}, map[string]bool{}
	for _, l := range strings.Split(want, "\n") {
		w[l] = true
	}
	for _, l := range strings.Split(got, "\n") {
		g[l] = true
	}
	var diff []string
	for l := range w {
		if !g[l] {
			diff = append(diff, "- "+l)
		}
	}
	for l := range g {
		if !w[l] {
			diff = append(diff, "+ "+l)
		}
	}
	sort.Strings(diff)
	t.Fatalf("%s: schema differs (- expected, + got):\n%s", fmt.Sprintf(msg, args...), strings.Join(diff, "\n"))
}

// TestMigrationsStatusMarksDestructiveDowns: the status lists every
// migration, and those whose down drops a table or a column are marked.
func TestMigrationsStatusMarksDestructiveDowns(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	st, err := store.Migrations(context.Background(), pg.SQL)
	require.NoError(t, err)
	byName := map[string]store.MigrationState{}
	for _, m := range st {
		require.True(t, m.Applied, m.Name)
		require.False(t, m.AppliedAt.IsZero(), m.Name)
		byName[m.Name] = m
	}
	require.True(t, byName["00001_tasks.sql"].Destructive)
	require.True(t, byName["00010_audit_aggregate.sql"].Destructive)
	require.False(t, byName["00002_task_indexes.sql"].Destructive, "an index is rebuilt, no data is lost")
	require.False(t, byName["00008_weekly_report_seed.sql"].Destructive)

	// A version applied by a newer release is listed, and down refuses it.
	_, err = pg.SQL.Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (99999, true)`)
	require.NoError(t, err)
	st, err = store.Migrations(context.Background(), pg.SQL)
	require.NoError(t, err)
	last := st[len(st)-1]
	require.EqualValues(t, 99999, last.Version)
	require.True(t, last.Applied)
	require.Empty(t, last.Name)
	_, err = store.MigrateDown(context.Background(), pg.SQL, 1)
	require.ErrorContains(t, err, "not part of this binary")
}

// TestMigrateConcurrently: processes migrating one database at once (a Helm
// hook retried, an operator's migrate down) take turns on the migrations'
// lock: every run succeeds and each migration is recorded once.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	pg := testenv.NewEmptyPostgres(t)
	ctx := context.Background()
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- store.Migrate(ctx, pg.SQL) }()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}
	var dup int
	require.NoError(t, pg.SQL.QueryRow(`SELECT count(*) FROM (SELECT version_id FROM goose_db_version
		GROUP BY version_id HAVING count(*) > 1) d`).Scan(&dup))
	require.Zero(t, dup)

	// A down and an up at once: both succeed, one after the other.
	go func() {
		_, err := store.MigrateDown(ctx, pg.SQL, 1)
		errs <- err
	}()
	go func() { errs <- store.Migrate(ctx, pg.SQL) }()
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
}

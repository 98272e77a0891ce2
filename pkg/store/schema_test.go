package store_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm/schema"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestModelsMatchSchema holds every GORM model to the migrated schema: each field
// must be a column of the model's table, and each column a field.
func TestModelsMatchSchema(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	for _, m := range store.Models() {
		s, err := schema.Parse(m, &syncMap{}, pg.DB.NamingStrategy)
		require.NoError(t, err)
		rows, err := pg.SQL.Query(`SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1`, s.Table)
		require.NoError(t, err)
		cols := map[string]bool{}
		for rows.Next() {
			var c string
			require.NoError(t, rows.Scan(&c))
			cols[c] = true
		}
		require.NoError(t, rows.Err())
		require.NotEmpty(t, cols, "table %s is missing from the migrations", s.Table)
		fields := map[string]bool{}
		for _, f := range s.Fields {
			if f.DBName == "" {
				continue
			}
			fields[f.DBName] = true
			require.Truef(t, cols[f.DBName], "model %s: field %s has no column %s.%s", s.Name, f.Name, s.Table, f.DBName)
		}
		for c := range cols {
			require.Truef(t, fields[c], "table %s: column %s has no field in model %s", s.Table, c, s.Name)
		}
	}
}

// TestMigrateIdempotent applies the migrations to an already migrated database.
func TestMigrateIdempotent(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := context.Background()
	require.NoError(t, store.Migrate(ctx, pg.SQL))
	require.NoError(t, store.Migrate(ctx, pg.SQL))
	st, err := store.MigrationStatus(ctx, pg.SQL)
	require.NoError(t, err)
	require.NotEmpty(t, st)
	for v, applied := range st {
		require.Truef(t, applied, "migration %d not applied", v)
	}
}

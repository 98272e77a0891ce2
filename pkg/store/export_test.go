package store

import (
	"context"
	"database/sql"
)

// MigrateUpTo applies the pending migrations up to and including version:
// the migration tests build each version's schema from zero with it.
func MigrateUpTo(ctx context.Context, db *sql.DB, version int64) error {
	p, err := newProvider(db)
	if err != nil {
		return err
	}
	_, err = p.UpTo(ctx, version)
	return err
}

package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestConnectionsWaitForLocksWithinBounds: every connection of a pool has
// the configured lock_timeout and statement_timeout; a statement that waits
// past the lock timeout fails as a lock conflict (a 503 to an API caller,
// not a stalled pool), and RetryLockConflicts runs it again once the lock is
// free.
func TestConnectionsWaitForLocksWithinBounds(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	db, err := store.Open(store.Options{URL: pg.URL, LockTimeout: 150 * time.Millisecond, StatementTimeout: 3 * time.Second})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sqlDB.Close() })
	ctx := context.Background()

	var lockTimeout, stmtTimeout string
	require.NoError(t, sqlDB.QueryRowContext(ctx, `SHOW lock_timeout`).Scan(&lockTimeout))
	require.NoError(t, sqlDB.QueryRowContext(ctx, `SHOW statement_timeout`).Scan(&stmtTimeout))
	require.Equal(t, "150ms", lockTimeout)
	require.Equal(t, "3s", stmtTimeout)

	defaults, err := store.Open(store.Options{URL: pg.URL})
	require.NoError(t, err)
	dsql, _ := defaults.DB()
	t.Cleanup(func() { _ = dsql.Close() })
	require.NoError(t, dsql.QueryRowContext(ctx, `SHOW lock_timeout`).Scan(&lockTimeout))
	require.Equal(t, "5s", lockTimeout)

	// The configuration's 0 is no limit.
	none, err := store.Open(store.FromConfig(config.DatabaseConfig{URL: pg.URL}))
	require.NoError(t, err)
	nsql, _ := none.DB()
	t.Cleanup(func() { _ = nsql.Close() })
	require.NoError(t, nsql.QueryRowContext(ctx, `SHOW lock_timeout`).Scan(&lockTimeout))
	require.NoError(t, nsql.QueryRowContext(ctx, `SHOW statement_timeout`).Scan(&stmtTimeout))
	require.Equal(t, []string{"0", "0"}, []string{lockTimeout, stmtTimeout})

	require.NoError(t, pg.DB.Exec(`INSERT INTO audit_log (action, outcome, details) VALUES ('lock.test', 'success', '{}')`).Error)
	holder, err := pg.SQL.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = holder.ExecContext(ctx, `SELECT id FROM audit_log WHERE action = 'lock.test' FOR UPDATE`)
	require.NoError(t, err)

	update := func() error {
		return db.WithContext(ctx).Exec(`UPDATE audit_log SET outcome = 'failure' WHERE action = 'lock.test'`).Error
	}
	err = update()
	require.True(t, store.IsLockConflict(err), "%v", err)
	require.True(t, errors.Is(store.Translate(err), store.ErrUnavailable))

	runs := 0
	err = store.RetryLockConflicts(ctx, func() error {
		runs++
		if runs == 2 {
			require.NoError(t, holder.Rollback()) // the lock is free for the second run
		}
		return update()
	})
	require.NoError(t, err)
	require.GreaterOrEqual(t, runs, 2)

	// The migrations run without the statement timeout.
	require.NoError(t, store.Migrate(ctx, sqlDB))
}

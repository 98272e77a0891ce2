package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/pkg/worker"
)

func TestSemaphoreLimitsHoldersAndFreesExpiredLeases(t *testing.T) {
	t.Parallel()
	rd := testenv.NewRedis(t)
	ctx := context.Background()
	sem := worker.NewSemaphore(rd.Client, "test:sem:", 600*time.Millisecond)
	for _, h := range []string{"a", "b"} {
		ok, err := sem.Acquire(ctx, "backup_data", h, 2)
		require.NoError(t, err)
		require.True(t, ok, h)
	}
	ok, err := sem.Acquire(ctx, "backup_data", "c", 2)
	require.NoError(t, err)
	require.False(t, ok, "a third holder waits")
	ok, err = sem.Acquire(ctx, "backup_data", "a", 2)
	require.NoError(t, err)
	require.True(t, ok, "a holder re-acquiring keeps its slot")
	ok, err = sem.Acquire(ctx, "other_type", "c", 1)
	require.NoError(t, err)
	require.True(t, ok, "types are independent")

	require.NoError(t, sem.Release(ctx, "backup_data", "b"))
	ok, err = sem.Acquire(ctx, "backup_data", "c", 2)
	require.NoError(t, err)
	require.True(t, ok)

	// "a" keeps renewing, "c" crashes: its slot frees itself while a's stays.
	var renewErr error
	require.Eventually(t, func() bool {
		held, err := sem.Renew(ctx, "backup_data", "a")
		if err == nil && !held {
			err = errors.New("a lost its slot while renewing")
		}
		if err != nil {
			renewErr = err
			return true
		}
		n, err := sem.Count(ctx, "backup_data")
		return err == nil && n == 1
	}, 5*time.Second, 150*time.Millisecond)
	require.NoError(t, renewErr)
	n, err := sem.Count(ctx, "backup_data")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	held, err := sem.Renew(ctx, "backup_data", "c")
	require.NoError(t, err)
	require.False(t, held, "an ended lease cannot be renewed")
	ok, err = sem.Acquire(ctx, "backup_data", "d", 2)
	require.NoError(t, err)
	require.True(t, ok)
}

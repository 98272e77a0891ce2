package taskservice_test

import (
	"context"
	"errors"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/lifecycle/lifecycletest"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

type failingForgetter struct{}

func (failingForgetter) Forget(context.Context, ...string) error { return errors.New("redis away") }

// TestRetryDropsTheCachedResult: a manual retry drops the task's cached
// result in its transaction, and a retry whose drop fails does not happen
// (503, the row keeps its state), so an old result is never served for a
// retried task.
func TestRetryDropsTheCachedResult(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	cache, err := result.NewCache(b.rd.Client, result.CacheOptions{})
	require.NoError(t, err)
	client := asynq.NewClient(b.rd.Opt())
	t.Cleanup(func() { _ = client.Close() })
	svc, err := taskservice.New(b.pg.DB, client, b.inspector, zap.NewNop(), taskservice.Options{Results: cache, Events: cache})
	require.NoError(t, err)
	t.Cleanup(svc.Close)

	c, err := svc.Create(ctx, taskservice.CreateRequest{Type: "refresh_all_prices", CreatedBy: owner.ID})
	require.NoError(t, err)
	id := c.Task.ID
	require.NoError(t, lifecycletest.Force(b.pg.DB, id, `status = 'failed', attempt = 4, error = '{"message":"x"}'`))
	cache.Put(ctx, result.Cached{ID: id, Status: tasks.StatusFailed, CreatedBy: owner.ID})
	_, ok := cache.Get(ctx, id)
	require.True(t, ok)

	broken, err := taskservice.New(b.pg.DB, client, b.inspector, zap.NewNop(), taskservice.Options{Results: failingForgetter{}})
	require.NoError(t, err)
	t.Cleanup(broken.Close)
	_, err = broken.Retry(ctx, owner, id)
	require.ErrorIs(t, err, taskservice.ErrUnavailable)
	var row store.Task
	require.NoError(t, b.pg.DB.Take(&row, "id = ?", id).Error)
	require.Equal(t, tasks.StatusFailed, row.Status, "no retry without the cache's drop")

	_, err = svc.Retry(ctx, owner, id)
	require.NoError(t, err)
	_, ok = cache.Get(ctx, id)
	require.False(t, ok, "the retry dropped the entry before it answered")
}

package worker_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/worker"
)

// bigResult sets a JSON result of about n bytes.
func bigResult(n int) job.Handler {
	return job.Typed(func(ctx context.Context, r job.Reporter, _ *taskpb.RefreshPortfolioParams) error {
		return r.SetResult(map[string]any{"rows": strings.Repeat("x", n)})
	})
}

func TestLargeResultGoesToResultStorage(t *testing.T) {
	t.Parallel()
	// The harness's database is known only once it is built: the store is set
	// behind the worker's back before any task runs.
	lazy := &lazyStore{}
	h := newHarness(t, map[string]job.Handler{tasks.TypeRefreshPortfolio: bigResult(5000)}, func(o *worker.Options) {
		o.MaxResultBytes, o.Results = 1000, lazy
	})
	local, err := result.NewLocal(t.TempDir())
	require.NoError(t, err)
	signer, err := result.NewSigner([]byte("0123456789abcdef0123"), "http://api.example.test", time.Minute)
	require.NoError(t, err)
	store, err := result.New(h.pg.DB, local, result.Options{TTL: time.Hour, LinkTTL: time.Minute, Signer: signer})
	require.NoError(t, err)
	lazy.s.Store(store)

	task := h.create("", fastRetry, 0, "")
	row := h.waitStatus(task.ID, tasks.StatusCompleted, 15*time.Second)
	require.Empty(t, row.Result, "the row does not hold the large result")
	require.NotNil(t, row.ResultURL)
	require.Equal(t, "http://api.example.test/api/v1/tasks/"+task.ID+"/result?name=result.json", *row.ResultURL)

	files, err := store.ForTask(context.Background(), task.ID)
	require.NoError(t, err)
	require.Len(t, files, 1)
	require.Equal(t, "result.json", files[0].Name)
	require.Equal(t, "application/json", files[0].ContentType)
	rc, err := store.Open(context.Background(), files[0])
	require.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.JSONEq(t, `{"rows":"`+strings.Repeat("x", 5000)+`"}`, string(b))
}

// lazyStore is a result store set after the worker was built.
type lazyStore struct{ s atomic.Pointer[result.Store] }

func (l *lazyStore) SpillJSON(ctx context.Context, id string, b []byte) (string, error) {
	return l.s.Load().SpillJSON(ctx, id, b)
}

// failingStore refuses every result.
type failingStore struct{}

func (failingStore) SpillJSON(context.Context, string, []byte) (string, error) {
	return "", errors.New("bucket unreachable")
}

func TestLargeResultStorageFailureFailsTheAttempt(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]job.Handler{tasks.TypeRefreshPortfolio: bigResult(5000)}, func(o *worker.Options) {
		o.MaxResultBytes, o.Results = 1000, failingStore{}
	})
	task := h.create("", noRetry, 0, "")
	row := h.waitStatus(task.ID, tasks.StatusFailed, 15*time.Second)
	require.Contains(t, string(row.Error), "bucket unreachable")
	require.Nil(t, row.ResultURL)
	require.Empty(t, row.Result)
}

func TestLargeResultWithoutStorageFails(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]job.Handler{tasks.TypeRefreshPortfolio: bigResult(5000)}, func(o *worker.Options) {
		o.MaxResultBytes = 1000
	})
	task := h.create("", noRetry, 0, "")
	row := h.waitStatus(task.ID, tasks.StatusFailed, 15*time.Second)
	require.Contains(t, string(row.Error), "too large")
}

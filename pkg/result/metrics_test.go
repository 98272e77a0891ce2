package result_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestStorageErrorsCounted: every operation of the backend starts at 0; a
// missing file is not a storage error; once the backend fails, a
// put, an open and a delete each count one error.
func TestStorageErrorsCounted(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := context.Background()
	insertTask(t, pg.DB, "task_m")
	l, err := result.NewLocal(t.TempDir())
	require.NoError(t, err)
	b := &breakable{Backend: l}
	st, err := result.New(pg.DB, b, result.Options{Signer: newSigner(t)})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	require.NoError(t, st.RegisterMetrics(reg))
	want := func(put, open, del int) {
		t.Helper()
		require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP taskforge_result_storage_errors_total Failed operations on the result storage backend (put, open, delete, presign), by backend and operation; a missing file and a cancelled request are not counted.
# TYPE taskforge_result_storage_errors_total counter
taskforge_result_storage_errors_total{backend="local",op="delete"} `+itoa(del)+`
taskforge_result_storage_errors_total{backend="local",op="open"} `+itoa(open)+`
taskforge_result_storage_errors_total{backend="local",op="presign"} 0
taskforge_result_storage_errors_total{backend="local",op="put"} `+itoa(put)+`
`)))
	}
	want(0, 0, 0)

	res, err := st.Put(ctx, "task_m", "a.txt", "text/plain", strings.NewReader("hello"))
	require.NoError(t, err)
	gone, err := st.Put(ctx, "task_m", "b.txt", "text/plain", strings.NewReader("bye"))
	require.NoError(t, err)
	require.NoError(t, st.DeleteFile(ctx, gone))
	_, err = st.Open(ctx, gone)
	require.ErrorIs(t, err, result.ErrNotFound)
	want(0, 0, 0)

	b.broken.Store(true)
	_, err = st.Put(ctx, "task_m", "c.txt", "text/plain", strings.NewReader("x"))
	require.Error(t, err)
	_, err = st.Open(ctx, res)
	require.Error(t, err)
	require.Error(t, st.DeleteFile(ctx, res))
	want(1, 1, 1)
}

func itoa(n int) string { return string(rune('0' + n)) }

// breakable is a backend that fails every operation once broken.
type breakable struct {
	result.Backend
	broken atomic.Bool
}

var errBroken = errors.New("storage unavailable")

func (b *breakable) Put(ctx context.Context, key, contentType string, r io.Reader) error {
	if b.broken.Load() {
		return errBroken
	}
	return b.Backend.Put(ctx, key, contentType, r)
}

func (b *breakable) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if b.broken.Load() {
		return nil, errBroken
	}
	return b.Backend.Open(ctx, key)
}

func (b *breakable) Delete(ctx context.Context, key string) error {
	if b.broken.Load() {
		return errBroken
	}
	return b.Backend.Delete(ctx, key)
}

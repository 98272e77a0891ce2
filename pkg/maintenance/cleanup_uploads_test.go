package maintenance_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/maintenance"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/upload"
)

// TestCleanupRemovesExpiredUploads: the results target removes uploads past
// their expiry or older than retention.results, rows and files, in batches;
// a dry run counts them; fresh uploads stay.
func TestCleanupRemovesExpiredUploads(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ups, err := upload.New(b.db, b.results, upload.Options{})
	require.NoError(t, err)
	var old []upload.Upload
	for range 3 {
		u, err := ups.Put(b.ctx, "key_op", "old.csv", "text/csv", strings.NewReader("a,b\n"))
		require.NoError(t, err)
		old = append(old, u)
	}
	b.exec(t, `UPDATE uploads SET expires_at = now() - interval '1 minute' WHERE id = ?`, old[0].ID)
	b.exec(t, `UPDATE uploads SET created_at = now() - interval '30 days' WHERE id IN (?, ?)`, old[1].ID, old[2].ID)
	fresh, err := ups.Put(b.ctx, "key_op", "new.csv", "text/csv", strings.NewReader("c,d\n"))
	require.NoError(t, err)

	h := maintenance.NewCleanup(b.db, b.results, maintenance.CleanupOptions{Retention: retention, BatchSize: 2})
	dry := &job.Recorder{ID: "task_dry"}
	require.NoError(t, h(b.ctx, dry, &taskpb.CleanupOldDataParams{DryRun: true, Targets: []string{"results"}}))
	require.EqualValues(t, 3, decode[maintenance.CleanupResult](t, dry).Targets["results"].Uploads)
	require.EqualValues(t, 4, b.count(t, `SELECT count(*) FROM uploads`))

	rec := &job.Recorder{ID: "task_cleanup"}
	require.NoError(t, h(b.ctx, rec, &taskpb.CleanupOldDataParams{Targets: []string{"results"}}))
	got := decode[maintenance.CleanupResult](t, rec).Targets["results"]
	require.EqualValues(t, 3, got.Uploads)
	require.EqualValues(t, 3, got.Files)
	require.EqualValues(t, 1, b.count(t, `SELECT count(*) FROM uploads`))
	for _, u := range old {
		_, err := b.results.Backend().Open(b.ctx, u.Key)
		require.ErrorIs(t, err, result.ErrNotFound, "the file of %s is gone", u.ID)
	}
	_, err = ups.Get(b.ctx, fresh.ID)
	require.NoError(t, err)
}

package maintenance_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/maintenance"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// benchPrices is the number of price rows the benchmarks work on.
const benchPrices = 100_000

func seedPrices(b *testing.B, bb bundle) {
	b.Helper()
	require.NoError(b, bb.db.Exec(`INSERT INTO assets (symbol, kind) SELECT 'S' || g, 'equity' FROM generate_series(1, 100) g`).Error)
	require.NoError(b, bb.db.Exec(`INSERT INTO prices (asset_symbol, date, open, high, low, close, volume)
		SELECT 'S' || a, DATE '2000-01-01' + d, 10 + random(), 12, 9, 10.5 + random(), (random() * 1e6)::bigint
		FROM generate_series(1, 100) a, generate_series(1, $1 / 100) d`, benchPrices).Error)
}

// BenchmarkBackup reports the time and archive size of backing up 100k price
// rows in each format.
func BenchmarkBackup(b *testing.B) {
	for _, format := range []string{maintenance.FormatJSONL, maintenance.FormatPGDump} {
		b.Run(format, func(b *testing.B) {
			bb := setup(b)
			seedPrices(b, bb)
			require.NoError(b, bb.db.Exec(`INSERT INTO tasks (id, type, status, priority, max_retries, retry_policy, timeout_seconds)
				VALUES ('task_bench', 'backup_data', 'running', 'low', 3, '{}', 60)`).Error)
			h := maintenance.NewBackup(bb.db, bb.pg.URL, bb.results, "")
			var size int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rec := &job.Recorder{ID: "task_bench"}
				require.NoError(b, h(bb.ctx, rec, &taskpb.BackupDataParams{Tables: []string{"assets", "prices"}, Format: format}))
				size = decode[maintenance.BackupResult](b, rec).Size
			}
			b.ReportMetric(float64(size), "archive-bytes")
			b.ReportMetric(float64(benchPrices)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkCleanupPrices reports how fast cleanup_old_data deletes 100k price
// rows in batches of 5000.
func BenchmarkCleanupPrices(b *testing.B) {
	bb := setup(b)
	h := maintenance.NewCleanup(bb.db, bb.results, maintenance.CleanupOptions{Retention: retention})
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		require.NoError(b, bb.db.Exec(`DELETE FROM prices`).Error)
		require.NoError(b, bb.db.Exec(`DELETE FROM assets`).Error)
		seedPrices(b, bb)
		b.StartTimer()
		start := time.Now()
		rec := &job.Recorder{}
		require.NoError(b, h(bb.ctx, rec, &taskpb.CleanupOldDataParams{Targets: []string{"prices"}, OlderThanDays: 1}))
		elapsed += time.Since(start)
		require.EqualValues(b, benchPrices, decode[maintenance.CleanupResult](b, rec).Targets["prices"].Rows)
	}
	b.ReportMetric(float64(benchPrices)*float64(b.N)/elapsed.Seconds(), "rows/s")
}

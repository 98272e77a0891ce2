package portfolio_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/portfolio"
	"github.com/taskforge/taskforge/pkg/price"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// benchDay is the handlers' clock in the benchmarks, a Friday, so that the
// default lookback of 5 days fetches five bars per symbol.
var benchDay = time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)

// peakHeap samples the bytes of live and not yet collected heap objects every
// millisecond and keeps the highest figure above the level at its start.
type peakHeap struct {
	base, peak uint64
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startPeakHeap() *peakHeap {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	p := &peakHeap{base: s[0].Value.Uint64(), stop: make(chan struct{})}
	p.peak = p.base
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				metrics.Read(s)
				p.peak = max(p.peak, s[0].Value.Uint64())
			}
		}
	}()
	return p
}

// Stop ends the sampling and returns the peak above the start, in MiB.
func (p *peakHeap) Stop() float64 {
	close(p.stop)
	p.wg.Wait()
	return float64(p.peak-p.base) / (1 << 20)
}

// insertAssets adds n equities named S00001... .
func insertAssets(tb testing.TB, db *gorm.DB, n int) {
	tb.Helper()
	require.NoError(tb, db.Exec(`INSERT INTO assets (symbol, name, kind)
		SELECT format('S%s', lpad(i::text, 5, '0')), 'bench', 'equity' FROM generate_series(1, ?) i`, n).Error)
}

// BenchmarkRefreshAllPrices runs refresh_all_prices over every active asset with
// the simulated provider, 5 days each, into an empty prices table, and reports
// rows/s and the peak heap growth during a run. Batches of 100 symbols.
func BenchmarkRefreshAllPrices(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("symbols=%d", n), func(b *testing.B) {
			pg := testenv.NewPostgres(b)
			insertAssets(b, pg.DB, n)
			svc, err := portfolio.New(pg.DB, price.NewSimulated(), nil, portfolio.Options{Now: func() time.Time { return benchDay }})
			require.NoError(b, err)
			ctx := context.Background()
			b.ReportAllocs()
			var rows int
			var elapsed time.Duration
			var peak float64
			for b.Loop() {
				b.StopTimer()
				require.NoError(b, pg.DB.Exec("TRUNCATE prices").Error)
				heap := startPeakHeap()
				b.StartTimer()
				start := time.Now()
				r := &job.Recorder{}
				require.NoError(b, svc.RefreshAllPrices(ctx, r, &taskpb.RefreshAllPricesParams{}))
				elapsed += time.Since(start)
				b.StopTimer()
				peak = max(peak, heap.Stop())
				rows += n * 5
				b.StartTimer()
			}
			var stored int64
			require.NoError(b, pg.DB.Raw("SELECT count(*) FROM prices").Scan(&stored).Error)
			require.EqualValues(b, n*5, stored)
			b.ReportMetric(float64(rows)/elapsed.Seconds(), "rows/s")
			b.ReportMetric(peak, "peak-heap-MiB")
		})
	}
}

// BenchmarkCalculateMetrics runs calculate_metrics on a portfolio of 200
// holdings over 252 daily returns against a benchmark, and reports the holding
// closes valued per second (200 × 253) and the peak heap growth during a run.
func BenchmarkCalculateMetrics(b *testing.B) {
	const holdings, window = 200, 252
	pg := testenv.NewPostgres(b)
	db := pg.DB
	insertAssets(b, db, holdings)
	for _, q := range []string{
		`INSERT INTO assets (symbol, name, kind) VALUES ('^BENCH', 'Bench index', 'index')`,
		`INSERT INTO benchmarks (symbol, name) VALUES ('^BENCH', 'Bench')`,
		`INSERT INTO portfolios (id, name) VALUES ('pf_bench', 'Bench')`,
		`INSERT INTO holdings (portfolio_id, asset_symbol, quantity) SELECT 'pf_bench', symbol, 10 FROM assets WHERE kind = 'equity'`,
	} {
		require.NoError(b, db.Exec(q).Error)
	}
	svc, err := portfolio.New(db, price.NewSimulated(), nil, portfolio.Options{Now: func() time.Time { return benchDay }})
	require.NoError(b, err)
	ctx := context.Background()
	// About 300 weekdays of prices for every asset.
	require.NoError(b, svc.RefreshAllPrices(ctx, &job.Recorder{}, &taskpb.RefreshAllPricesParams{LookbackDays: 420}))

	b.ReportAllocs()
	var elapsed time.Duration
	var peak float64
	runs := 0
	for b.Loop() {
		b.StopTimer()
		heap := startPeakHeap()
		b.StartTimer()
		start := time.Now()
		r := &job.Recorder{}
		require.NoError(b, svc.CalculateMetrics(ctx, r, &taskpb.CalculateMetricsParams{PortfolioId: "pf_bench", WindowDays: window}))
		elapsed += time.Since(start)
		b.StopTimer()
		peak = max(peak, heap.Stop())
		require.Contains(b, string(r.Result()), `"returns":252`)
		runs++
		b.StartTimer()
	}
	b.ReportMetric(float64(runs*holdings*(window+1))/elapsed.Seconds(), "rows/s")
	b.ReportMetric(peak, "peak-heap-MiB")
}

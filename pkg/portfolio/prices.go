package portfolio

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/price"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// PriceResult is the result of refresh_all_prices and refresh_benchmark.
type PriceResult struct {
	// AssetsUpdated counts the symbols with at least one bar stored.
	AssetsUpdated int `json:"assets_updated"`
	// PricesUpserted counts the bars written (inserted, updated or confirmed).
	PricesUpserted int `json:"prices_upserted"`
	// FailedSymbols lists the first MaxFailedSymbols failing symbols.
	FailedSymbols []string `json:"failed_symbols"`
	// FailedCount counts every failing symbol.
	FailedCount int `json:"failed_count"`
}

// RefreshAllPrices is the refresh_all_prices handler: it fetches the last
// lookback_days of bars of the listed symbols (default: every active asset) and
// upserts them into prices, a batch of symbols per transaction.
func (s *Service) RefreshAllPrices(ctx context.Context, r job.Reporter, p *taskpb.RefreshAllPricesParams) error {
	filter := activeAssets()
	var unknown []string
	if len(p.GetSymbols()) > 0 {
		symbols := slices.Compact(slices.Sorted(slices.Values(p.GetSymbols())))
		known, err := knownSymbols(ctx, s.db, symbols)
		if err != nil {
			return fmt.Errorf("portfolio: refresh prices: %w", err)
		}
		for _, sym := range symbols {
			if !known[sym] {
				unknown = append(unknown, sym)
			}
		}
		filter = listedAssets(symbols)
	}
	return s.refreshPrices(ctx, r, "refresh prices", filter, unknown, p.GetLookbackDays())
}

// RefreshBenchmark is the refresh_benchmark handler: refresh_all_prices for the
// benchmark indices, or the one named.
func (s *Service) RefreshBenchmark(ctx context.Context, r job.Reporter, p *taskpb.RefreshBenchmarkParams) error {
	if b := p.GetBenchmark(); b != "" {
		var n int64
		if err := s.db.WithContext(ctx).Raw("SELECT count(*) FROM benchmarks WHERE symbol = ?", b).Scan(&n).Error; err != nil {
			return fmt.Errorf("portfolio: refresh benchmark: %w", err)
		}
		if n == 0 {
			return job.Permanent(fmt.Errorf("benchmark %q: %w", b, ErrUnknownBenchmark))
		}
	}
	return s.refreshPrices(ctx, r, "refresh benchmark", benchmarkAssets(p.GetBenchmark()), nil, p.GetLookbackDays())
}

// knownSymbols returns which of symbols are assets.
func knownSymbols(ctx context.Context, db *gorm.DB, symbols []string) (map[string]bool, error) {
	var found []string
	if err := db.WithContext(ctx).Raw("SELECT symbol FROM assets WHERE symbol = ANY(?)", pgArray[string](symbols)).
		Scan(&found).Error; err != nil {
		return nil, fmt.Errorf("look up assets: %w", err)
	}
	known := make(map[string]bool, len(found))
	for _, s := range found {
		known[s] = true
	}
	return known, nil
}

// priceRun accumulates the outcome of a price refresh.
type priceRun struct {
	res          PriceResult
	allPermanent bool
	firstErr     error
}

func (run *priceRun) fail(symbol string, err error) {
	run.res.FailedCount++
	if len(run.res.FailedSymbols) < MaxFailedSymbols {
		run.res.FailedSymbols = append(run.res.FailedSymbols, symbol)
	}
	if run.firstErr == nil {
		run.firstErr = fmt.Errorf("%s: %w", symbol, err)
	}
	if !price.IsPermanent(err) && !errors.Is(err, ErrUnknownAsset) && !errors.Is(err, ErrInvalidBar) {
		run.allPermanent = false
	}
}

// refreshPrices runs the batch loop shared by the two price refreshes.
func (s *Service) refreshPrices(ctx context.Context, r job.Reporter, op string, filter assetFilter, unknown []string, lookback int32) error {
	if lookback <= 0 {
		lookback = DefaultLookbackDays
	}
	to := s.today()
	from := to.AddDate(0, 0, -int(lookback))
	total, err := filter.count(ctx, s.db)
	if err != nil {
		return fmt.Errorf("portfolio: %s: %w", op, err)
	}
	run := priceRun{res: PriceResult{FailedSymbols: []string{}}, allPermanent: true}
	for _, sym := range unknown {
		run.fail(sym, ErrUnknownAsset)
		r.Log(job.Warn, "symbol is not an asset", map[string]any{"symbol": sym})
	}
	batches := (total + s.opts.BatchSize - 1) / s.opts.BatchSize
	r.Progress(0, progressStepPrices, fmt.Sprintf("Refreshing %d symbols from %s to %s in %d batches of up to %d",
		total, from.Format(time.DateOnly), to.Format(time.DateOnly), batches, s.opts.BatchSize))
	done, after := 0, ""
	for batch := 1; ; batch++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("portfolio: %s: cancelled after %d of %d batches: %w", op, batch-1, batches, err)
		}
		assets, err := filter.page(ctx, s.db, after, s.opts.BatchSize)
		if err != nil {
			return fmt.Errorf("portfolio: %s: %w", op, err)
		}
		if len(assets) == 0 {
			break
		}
		after = assets[len(assets)-1].Symbol
		stored, rows, err := s.refreshBatch(ctx, r, &run, assets, from, to)
		if err != nil {
			return fmt.Errorf("portfolio: %s: batch %d: %w", op, batch, err)
		}
		run.res.AssetsUpdated += stored
		run.res.PricesUpserted += rows
		done += len(assets)
		r.Progress(float64(done)/float64(max(total, done)), progressStepPrices,
			fmt.Sprintf("Fetched %d records for %d symbols (batch %d of %d)", rows, len(assets), batch, max(batches, batch)))
		s.log.Debug("price batch stored", zap.String("op", op), zap.Int("batch", batch), zap.Int("rows", rows))
	}
	attempted := done + len(unknown)
	r.Log(job.Info, "prices refreshed", map[string]any{
		"assets_updated": run.res.AssetsUpdated, "prices_upserted": run.res.PricesUpserted,
		"failed": run.res.FailedCount, "from": from.Format(time.DateOnly), "to": to.Format(time.DateOnly),
	})
	if attempted > 0 && run.res.AssetsUpdated == 0 {
		err := fmt.Errorf("portfolio: %s: %w: %d of %d, first %w", op, ErrAllSymbolsFailed, run.res.FailedCount, attempted, run.firstErr)
		if run.allPermanent {
			return job.Permanent(err)
		}
		return err
	}
	r.Progress(1, progressStepDone, fmt.Sprintf("Updated %d assets with %d prices; %d symbols failed",
		run.res.AssetsUpdated, run.res.PricesUpserted, run.res.FailedCount))
	if err := r.SetResult(run.res); err != nil {
		return fmt.Errorf("portfolio: %s: set result: %w", op, err)
	}
	return nil
}

// fetched is the outcome of one symbol's fetch.
type fetched struct {
	bars []price.Bar
	err  error
}

// refreshBatch fetches a batch's bars and upserts them in one transaction. It
// returns the number of symbols stored and of rows written. When ctx is done it
// writes nothing and returns ctx's error.
func (s *Service) refreshBatch(ctx context.Context, r job.Reporter, run *priceRun, assets []assetRef, from, to time.Time) (int, int, error) {
	results := fetchBars(ctx, s.provider, s.opts.Concurrency, assets, from, to)
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	var rows barRows
	stored := 0
	for i, a := range assets {
		if err := results[i].err; err != nil {
			run.fail(a.Symbol, err)
			r.Log(job.Warn, "symbol failed", map[string]any{"symbol": a.Symbol, "error": err.Error(), "permanent": price.IsPermanent(err)})
			continue
		}
		if err := checkBars(results[i].bars); err != nil {
			run.fail(a.Symbol, err)
			r.Log(job.Warn, "symbol failed", map[string]any{"symbol": a.Symbol, "error": err.Error(), "permanent": true})
			continue
		}
		rows.add(a.Symbol, results[i].bars)
		stored++
	}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		_, err := upsertBars(ctx, tx, &rows)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	return stored, rows.len(), nil
}

// checkBars refuses bars that must not reach the database, so that NaN never
// does and one bad symbol cannot fail its whole batch.
func checkBars(bars []price.Bar) error {
	for i, b := range bars {
		for _, v := range [...]float64{b.Open, b.High, b.Low, b.Close} {
			if !(v > 0 && v <= math.MaxFloat64) {
				return fmt.Errorf("bar %d (%s): price %g: %w", i, b.Date.Format(time.DateOnly), v, ErrInvalidBar)
			}
		}
		if b.Low > b.High || b.Volume < 0 || (i > 0 && !b.Date.After(bars[i-1].Date)) {
			return fmt.Errorf("bar %d (%s): %w", i, b.Date.Format(time.DateOnly), ErrInvalidBar)
		}
	}
	return nil
}

// fetchBars fetches the bars of every asset, concurrency at a time, and returns
// them in the assets' order.
func fetchBars(ctx context.Context, p price.Provider, concurrency int, assets []assetRef, from, to time.Time) []fetched {
	out := make([]fetched, len(assets))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(concurrency, len(assets)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(assets) || ctx.Err() != nil {
					return
				}
				bars, err := p.Bars(ctx, providerSymbol(p, assets[i]), from, to)
				out[i] = fetched{bars: bars, err: err}
			}
		}()
	}
	wg.Wait()
	return out
}

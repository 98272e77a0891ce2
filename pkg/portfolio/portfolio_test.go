package portfolio_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/portfolio"
	"github.com/taskforge/taskforge/pkg/price"
	"github.com/taskforge/taskforge/pkg/risk"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// seedEnd is the last day of the demo prices in the tests, a Friday; the
// handlers run a week later.
var (
	seedEnd = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	runDay  = time.Date(2026, 11, 27, 15, 4, 5, 0, time.UTC)
)

// demoAssetCount is the number of assets SeedDemo loads.
const demoAssetCount = 36

type testBundle struct {
	db  *gorm.DB
	svc *portfolio.Service
}

// setup gives a test a database with the demo set and a Service on the
// simulated provider whose clock reads runDay.
func setup(t *testing.T, opts portfolio.Options) testBundle {
	t.Helper()
	pg := testenv.NewPostgres(t)
	_, err := portfolio.SeedDemoUntil(context.Background(), pg.DB, price.NewSimulated(), seedEnd)
	require.NoError(t, err)
	return testBundle{db: pg.DB, svc: newService(t, pg.DB, price.NewSimulated(), opts)}
}

func newService(t *testing.T, db *gorm.DB, p price.Provider, opts portfolio.Options) *portfolio.Service {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return runDay }
	}
	svc, err := portfolio.New(db, p, nil, opts)
	require.NoError(t, err)
	return svc
}

func count(t *testing.T, db *gorm.DB, q string, args ...any) int {
	t.Helper()
	var n int64
	require.NoError(t, db.Raw(q, args...).Scan(&n).Error)
	return int(n)
}

func decode[T any](t *testing.T, r *job.Recorder) T {
	t.Helper()
	var v T
	require.NotNil(t, r.Result(), "no result")
	require.NoError(t, json.Unmarshal(r.Result(), &v))
	return v
}

func TestSeedDemo(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := context.Background()
	sum, err := portfolio.SeedDemoUntil(ctx, pg.DB, price.NewSimulated(), seedEnd)
	require.NoError(t, err)
	require.Equal(t, demoAssetCount, sum.Assets)
	require.Equal(t, 2, sum.Benchmarks)
	require.Equal(t, 3, sum.Portfolios)
	require.Equal(t, seedEnd.AddDate(-1, 0, 0), sum.From)
	require.Positive(t, sum.Changed)

	tables := map[string]int{}
	for _, table := range []string{"assets", "benchmarks", "portfolios", "holdings", "prices"} {
		tables[table] = count(t, pg.DB, "SELECT count(*) FROM "+table)
	}
	require.Equal(t, sum.Assets, tables["assets"])
	require.Equal(t, sum.Benchmarks, tables["benchmarks"])
	require.Equal(t, sum.Holdings, tables["holdings"])
	require.Equal(t, sum.Prices, tables["prices"])
	// A year of weekdays for every asset.
	weekdays := 0
	for d := sum.From; !d.After(sum.To); d = d.AddDate(0, 0, 1) {
		if d.Weekday() != time.Saturday && d.Weekday() != time.Sunday {
			weekdays++
		}
	}
	require.Equal(t, demoAssetCount*weekdays, sum.Prices)
	for _, id := range []string{portfolio.DemoBalanced, portfolio.DemoGrowth, portfolio.DemoIncome} {
		require.Positive(t, count(t, pg.DB, "SELECT count(*) FROM holdings WHERE portfolio_id = ?", id), id)
	}
	require.Equal(t, []string{"equity", "etf", "fund", "crypto", "index"}, kindsOf(t, pg.DB))

	// Again: nothing changes.
	again, err := portfolio.SeedDemoUntil(ctx, pg.DB, price.NewSimulated(), seedEnd)
	require.NoError(t, err)
	require.Zero(t, again.Changed)
	require.Equal(t, sum.Prices, again.Prices)
	for table, n := range tables {
		require.Equal(t, n, count(t, pg.DB, "SELECT count(*) FROM "+table), table)
	}
}

func kindsOf(t *testing.T, db *gorm.DB) []string {
	t.Helper()
	var kinds []string
	require.NoError(t, db.Raw(`SELECT kind FROM assets GROUP BY kind
		ORDER BY array_position(ARRAY['equity','etf','fund','crypto','index'], kind)`).Scan(&kinds).Error)
	return kinds
}

// pricesInRun counts the price rows the handlers' run week holds.
func pricesInRun(t *testing.T, db *gorm.DB) int {
	return count(t, db, "SELECT count(*) FROM prices WHERE date > ?", seedEnd)
}

func TestRefreshAllPrices(t *testing.T) {
	t.Parallel()
	b := setup(t, portfolio.Options{BatchSize: 10})
	ctx := context.Background()
	h := b.svc.Handlers()[tasks.TypeRefreshAllPrices]
	before := count(t, b.db, "SELECT count(*) FROM prices")

	for run := 1; run <= 2; run++ {
		r := &job.Recorder{ID: "task_1", N: run}
		require.NoError(t, h(ctx, r, &taskpb.RefreshAllPricesParams{}))
		res := decode[portfolio.PriceResult](t, r)
		// Monday 23 to Friday 27 November: five bars per asset.
		require.Equal(t, portfolio.PriceResult{AssetsUpdated: demoAssetCount, PricesUpserted: demoAssetCount * 5, FailedSymbols: []string{}}, res, "run %d", run)
		require.Equal(t, demoAssetCount*5, pricesInRun(t, b.db), "run %d", run)
		require.Equal(t, before+demoAssetCount*5, count(t, b.db, "SELECT count(*) FROM prices"), "run %d", run)
		msgs := r.Messages()
		require.Len(t, msgs, 1+4+1, "start, four batches, end: %q", msgs)
		require.Equal(t, "Fetched 50 records for 10 symbols (batch 1 of 4)", msgs[1])
		require.Equal(t, "Fetched 30 records for 6 symbols (batch 4 of 4)", msgs[4])
		require.InDelta(t, 1, r.Fraction(), 1e-12)
		require.Equal(t, "done", r.Step())
	}

	// The stored bars are the provider's.
	want, err := price.NewSimulated().Bars(ctx, "BRK.B", runDay.AddDate(0, 0, -5), runDay)
	require.NoError(t, err)
	var got []struct {
		Date                   time.Time
		Open, High, Low, Close float64
		Volume                 int64
	}
	require.NoError(t, b.db.Raw(`SELECT date, open, high, low, close, volume FROM prices
		WHERE asset_symbol = 'BRK.B' AND date > ? ORDER BY date`, seedEnd).Scan(&got).Error)
	require.Len(t, got, len(want))
	for i, w := range want {
		require.True(t, w.Date.Equal(got[i].Date), "date %d", i)
		require.Equal(t, []float64{w.Open, w.High, w.Low, w.Close}, []float64{got[i].Open, got[i].High, got[i].Low, got[i].Close})
		require.Equal(t, w.Volume, got[i].Volume)
	}
}

// nanBars answers a NaN close for every symbol in nan.
type nanBars struct {
	price.Provider
	nan map[string]bool
}

func (n nanBars) Bars(ctx context.Context, symbol string, from, to time.Time) ([]price.Bar, error) {
	bars, err := n.Provider.Bars(ctx, symbol, from, to)
	if err == nil && n.nan[symbol] {
		bars[len(bars)-1].Close = math.NaN()
	}
	return bars, err
}

func TestRefreshAllPricesRefusesNaN(t *testing.T) {
	t.Parallel()
	b := setup(t, portfolio.Options{})
	svc := newService(t, b.db, nanBars{price.NewSimulated(), map[string]bool{"KO": true}}, portfolio.Options{})
	r := &job.Recorder{}
	require.NoError(t, svc.RefreshAllPrices(context.Background(), r, &taskpb.RefreshAllPricesParams{Symbols: []string{"KO", "PEP"}}))
	require.Equal(t, portfolio.PriceResult{AssetsUpdated: 1, PricesUpserted: 5, FailedSymbols: []string{"KO"}, FailedCount: 1},
		decode[portfolio.PriceResult](t, r))
	require.Zero(t, count(t, b.db, "SELECT count(*) FROM prices WHERE asset_symbol = 'KO' AND date > ?", seedEnd))
	// The schema refuses NaN too.
	err := b.db.Exec(`INSERT INTO prices (asset_symbol, date, open, high, low, close) VALUES ('KO', '2026-11-23', 1, 1, 1, 'NaN')`).Error
	require.ErrorContains(t, err, "check constraint")
}

// flaky fails the symbols in fail with err and serves the rest from the
// simulated provider.
type flaky struct {
	price.Provider
	fail map[string]error
}

func (f flaky) Bars(ctx context.Context, symbol string, from, to time.Time) ([]price.Bar, error) {
	if err, ok := f.fail[symbol]; ok {
		return nil, err
	}
	return f.Provider.Bars(ctx, symbol, from, to)
}

func TestRefreshAllPricesFailures(t *testing.T) {
	t.Parallel()
	b := setup(t, portfolio.Options{})
	noData := fmt.Errorf("test: %w", price.ErrNoData)
	unavailable := &price.StatusError{StatusCode: http.StatusServiceUnavailable}
	tests := []struct {
		name          string
		symbols       []string
		fail          map[string]error
		want          portfolio.PriceResult
		wantErr       error
		wantPermanent bool
	}{
		{
			name: "one symbol fails", symbols: []string{"AAPL", "MSFT", "KO"}, fail: map[string]error{"MSFT": unavailable},
			want: portfolio.PriceResult{AssetsUpdated: 2, PricesUpserted: 10, FailedSymbols: []string{"MSFT"}, FailedCount: 1},
		},
		{
			name: "unknown symbol and duplicates", symbols: []string{"KO", "NOPE", "KO"},
			want: portfolio.PriceResult{AssetsUpdated: 1, PricesUpserted: 5, FailedSymbols: []string{"NOPE"}, FailedCount: 1},
		},
		{
			name: "all fail permanently", symbols: []string{"AAPL", "NOPE"}, fail: map[string]error{"AAPL": noData},
			wantErr: portfolio.ErrAllSymbolsFailed, wantPermanent: true,
		},
		{
			name: "all fail, one transiently", symbols: []string{"AAPL", "MSFT"}, fail: map[string]error{"AAPL": noData, "MSFT": unavailable},
			wantErr: portfolio.ErrAllSymbolsFailed, wantPermanent: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newService(t, b.db, flaky{price.NewSimulated(), tt.fail}, portfolio.Options{})
			r := &job.Recorder{}
			err := svc.RefreshAllPrices(context.Background(), r, &taskpb.RefreshAllPricesParams{Symbols: tt.symbols})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Equal(t, tt.wantPermanent, job.IsPermanent(err), "permanent: %v", err)
				require.Nil(t, r.Result())
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, decode[portfolio.PriceResult](t, r))
			var warned []string
			for _, l := range r.Logs() {
				if l.Level == job.Warn {
					warned = append(warned, l.Fields["symbol"].(string))
				}
			}
			require.Equal(t, tt.want.FailedSymbols, warned)
		})
	}
}

// cancelling cancels the context on the n-th call of Bars, and counts calls.
type cancelling struct {
	price.Provider
	n      int64
	calls  atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelling) Bars(ctx context.Context, symbol string, from, to time.Time) ([]price.Bar, error) {
	if c.calls.Add(1) == c.n {
		c.cancel()
	}
	return c.Provider.Bars(ctx, symbol, from, to)
}

// cancelOnMessage cancels the context when a progress message starts with
// prefix.
type cancelOnMessage struct {
	*job.Recorder
	prefix string
	cancel context.CancelFunc
}

func (c cancelOnMessage) Progress(fraction float64, step, message string) {
	c.Recorder.Progress(fraction, step, message)
	if strings.HasPrefix(message, c.prefix) {
		c.cancel()
	}
}

func TestRefreshAllPricesCancel(t *testing.T) {
	t.Parallel()
	const batch = 10
	tests := []struct {
		name string
		// run runs the handler with a context it arranges to cancel.
		run func(t *testing.T, db *gorm.DB) error
	}{
		{"after the first batch", func(t *testing.T, db *gorm.DB) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			svc := newService(t, db, price.NewSimulated(), portfolio.Options{BatchSize: batch})
			r := cancelOnMessage{Recorder: &job.Recorder{}, prefix: "Fetched", cancel: cancel}
			return svc.RefreshAllPrices(ctx, r, &taskpb.RefreshAllPricesParams{})
		}},
		{"while fetching the second batch", func(t *testing.T, db *gorm.DB) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p := &cancelling{Provider: price.NewSimulated(), n: batch + 3, cancel: cancel}
			svc := newService(t, db, p, portfolio.Options{BatchSize: batch, Concurrency: 2})
			return svc.RefreshAllPrices(ctx, &job.Recorder{}, &taskpb.RefreshAllPricesParams{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, portfolio.Options{})
			err := tt.run(t, b.db)
			require.ErrorIs(t, err, context.Canceled)
			// Exactly the first batch (the first ten symbols) was written, whole.
			var perSymbol []struct {
				AssetSymbol string
				N           int
			}
			require.NoError(t, b.db.Raw(`SELECT asset_symbol, count(*) AS n FROM prices WHERE date > ?
				GROUP BY asset_symbol ORDER BY asset_symbol`, seedEnd).Scan(&perSymbol).Error)
			var first []string
			require.NoError(t, b.db.Raw(`SELECT symbol FROM assets ORDER BY symbol LIMIT ?`, batch).Scan(&first).Error)
			require.Len(t, perSymbol, batch)
			for i, ps := range perSymbol {
				require.Equal(t, first[i], ps.AssetSymbol)
				require.Equal(t, 5, ps.N, ps.AssetSymbol)
			}
		})
	}
}

func TestRefreshBenchmark(t *testing.T) {
	t.Parallel()
	b := setup(t, portfolio.Options{})
	ctx := context.Background()
	h := b.svc.Handlers()[tasks.TypeRefreshBenchmark]

	r := &job.Recorder{}
	require.NoError(t, h(ctx, r, &taskpb.RefreshBenchmarkParams{Benchmark: "^NDX", LookbackDays: 3}))
	// Tuesday 24 to Friday 27 November.
	require.Equal(t, portfolio.PriceResult{AssetsUpdated: 1, PricesUpserted: 4, FailedSymbols: []string{}}, decode[portfolio.PriceResult](t, r))
	require.Equal(t, 4, pricesInRun(t, b.db))

	for run := 1; run <= 2; run++ {
		r = &job.Recorder{}
		require.NoError(t, h(ctx, r, &taskpb.RefreshBenchmarkParams{}))
		require.Equal(t, portfolio.PriceResult{AssetsUpdated: 2, PricesUpserted: 10, FailedSymbols: []string{}}, decode[portfolio.PriceResult](t, r))
		require.Equal(t, 10, pricesInRun(t, b.db))
		require.Equal(t, 10, count(t, b.db, "SELECT count(*) FROM prices WHERE date > ? AND asset_symbol IN ('^SPX', '^NDX')", seedEnd))
	}

	err := h(ctx, &job.Recorder{}, &taskpb.RefreshBenchmarkParams{Benchmark: "AAPL"})
	require.ErrorIs(t, err, portfolio.ErrUnknownBenchmark)
	require.True(t, job.IsPermanent(err))
}

// expectedValue values holdings at the simulated closes of day and of the
// weekday before.
func expectedValue(t *testing.T, db *gorm.DB, id string, day time.Time) (value, change float64, n int) {
	t.Helper()
	var hs []struct {
		AssetSymbol string
		Quantity    float64
	}
	require.NoError(t, db.Raw("SELECT asset_symbol, quantity FROM holdings WHERE portfolio_id = ?", id).Scan(&hs).Error)
	for _, h := range hs {
		bars, err := price.NewSimulated().Bars(context.Background(), h.AssetSymbol, day.AddDate(0, 0, -3), day)
		require.NoError(t, err)
		last, prev := bars[len(bars)-1], bars[len(bars)-2]
		require.True(t, last.Date.Equal(day))
		value += h.Quantity * last.Close
		change += h.Quantity * (last.Close - prev.Close)
	}
	return value, change, len(hs)
}

func TestRefreshPortfolio(t *testing.T) {
	t.Parallel()
	b := setup(t, portfolio.Options{})
	ctx := context.Background()
	h := b.svc.Handlers()[tasks.TypeRefreshPortfolio]

	for run := 1; run <= 2; run++ {
		r := &job.Recorder{}
		require.NoError(t, h(ctx, r, &taskpb.RefreshPortfolioParams{PortfolioId: portfolio.DemoGrowth}))
		v := decode[portfolio.Valuation](t, r)
		value, change, n := expectedValue(t, b.db, portfolio.DemoGrowth, seedEnd)
		require.Equal(t, portfolio.DemoGrowth, v.PortfolioID)
		require.Equal(t, "2026-11-20", *v.AsOf)
		require.InEpsilon(t, value, v.MarketValue, 1e-9)
		require.InDelta(t, change, *v.DayChange, 1e-6)
		require.Equal(t, n, v.HoldingsValued)
		require.Equal(t, 1, count(t, b.db, "SELECT count(*) FROM portfolio_values"))
		var stored float64
		require.NoError(t, b.db.Raw("SELECT market_value FROM portfolio_values WHERE portfolio_id = ? AND date = ?",
			portfolio.DemoGrowth, seedEnd).Scan(&stored).Error)
		require.InEpsilon(t, value, stored, 1e-9)
		require.Equal(t, []string{"Valuing pf_demo_growth", fmt.Sprintf("pf_demo_growth: %.2f on 2026-11-20 from %d holdings", v.MarketValue, n)}, r.Messages())
	}

	r := &job.Recorder{}
	require.NoError(t, h(ctx, r, &taskpb.RefreshPortfolioParams{All: true}))
	all := decode[portfolio.AllValuations](t, r)
	require.Len(t, all.Portfolios, 3)
	for i, id := range []string{portfolio.DemoBalanced, portfolio.DemoGrowth, portfolio.DemoIncome} {
		value, _, n := expectedValue(t, b.db, id, seedEnd)
		require.Equal(t, id, all.Portfolios[i].PortfolioID)
		require.InEpsilon(t, value, all.Portfolios[i].MarketValue, 1e-9)
		require.Equal(t, n, all.Portfolios[i].HoldingsValued)
	}
	require.Equal(t, 3, count(t, b.db, "SELECT count(*) FROM portfolio_values"))
	require.Len(t, r.Messages(), 1+3+1)

	err := h(ctx, &job.Recorder{}, &taskpb.RefreshPortfolioParams{PortfolioId: "pf_nope"})
	require.ErrorIs(t, err, portfolio.ErrUnknownPortfolio)
	require.True(t, job.IsPermanent(err))
	require.ErrorContains(t, err, `portfolio "pf_nope" does not exist`)
}

func TestRefreshPortfolioParamsRule(t *testing.T) {
	t.Parallel()
	spec, ok := tasks.Lookup(tasks.TypeRefreshPortfolio)
	require.True(t, ok)
	_, err := tasks.DecodeParams(spec, json.RawMessage(`{}`), "params")
	v, ok := tasks.AsValidation(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, "params.portfolio_id", v.Errors[0].Field)
}

// handWorked is a small portfolio with prices set by hand:
//
//	        A (2 units)  B (1 unit)  value
//	day 1   10           100         120
//	day 2   11           -           122 (B keeps 100)
//	day 3   12           90          114
func handWorked(t *testing.T) testBundle {
	t.Helper()
	pg := testenv.NewPostgres(t)
	db := pg.DB
	for _, q := range []string{
		`INSERT INTO assets (symbol, name, kind) VALUES ('A', 'A', 'equity'), ('B', 'B', 'fund')`,
		`INSERT INTO portfolios (id, name) VALUES ('pf_hand', 'Hand')`,
		`INSERT INTO holdings (portfolio_id, asset_symbol, quantity, cost_basis) VALUES ('pf_hand', 'A', 2, 15), ('pf_hand', 'B', 1, 80)`,
		`INSERT INTO prices (asset_symbol, date, open, high, low, close) VALUES
			('A', '2026-03-02', 10, 10, 10, 10), ('A', '2026-03-03', 11, 11, 11, 11), ('A', '2026-03-04', 12, 12, 12, 12),
			('B', '2026-03-02', 100, 100, 100, 100), ('B', '2026-03-04', 90, 90, 90, 90)`,
	} {
		require.NoError(t, db.Exec(q).Error)
	}
	return testBundle{db: db, svc: newService(t, db, price.NewSimulated(), portfolio.Options{})}
}

func TestHandWorked(t *testing.T) {
	t.Parallel()
	b := handWorked(t)
	ctx := context.Background()

	r := &job.Recorder{}
	require.NoError(t, b.svc.RefreshPortfolio(ctx, r, &taskpb.RefreshPortfolioParams{PortfolioId: "pf_hand"}))
	v := decode[portfolio.Valuation](t, r)
	require.Equal(t, "2026-03-04", *v.AsOf)
	require.InDelta(t, 114, v.MarketValue, 1e-12)
	// The previous date is day 2: A 2 × (12 - 11) + B 1 × (90 - 100).
	require.InDelta(t, -8, *v.DayChange, 1e-12)
	require.Equal(t, 2, v.HoldingsValued)

	r = &job.Recorder{}
	require.NoError(t, b.svc.CalculateMetrics(ctx, r, &taskpb.CalculateMetricsParams{PortfolioId: "pf_hand", WindowDays: 2}))
	m := decode[portfolio.MetricsResult](t, r)
	r1, r2 := 122.0/120-1, 114.0/122-1
	require.Equal(t, "2026-03-02", m.StartDate)
	require.Equal(t, "2026-03-04", m.AsOf)
	require.Equal(t, 2, m.Returns)
	require.Nil(t, m.Benchmark, "no benchmarks in this database")
	require.InDelta(t, math.Pow(114.0/120, 252.0/2)-1, m.AnnualisedReturn, 1e-9)
	mean := (r1 + r2) / 2
	require.InDelta(t, math.Sqrt(((r1-mean)*(r1-mean)+(r2-mean)*(r2-mean))/1)*math.Sqrt(252), m.AnnualisedVolatility, 1e-12)
	require.InDelta(t, (122.0-114)/122, m.MaxDrawdown, 1e-12)
	require.Equal(t, "2026-03-03", *m.MaxDrawdownPeak)
	require.Equal(t, "2026-03-04", *m.MaxDrawdownTrough)
	// k = ⌈2 × 0.05⌉ = 1: the worst return.
	require.InDelta(t, -r2, m.VaR95, 1e-12)
	require.InDelta(t, -r2, m.CVaR95, 1e-12)
	require.Nil(t, m.Beta)
	require.Nil(t, m.Alpha)
	require.Nil(t, m.TrackingError)

	var stored struct {
		Beta            *float64
		BenchmarkSymbol *string
		MaxDrawdown     float64
	}
	require.NoError(t, b.db.Raw("SELECT beta, benchmark_symbol, max_drawdown FROM risk_metrics WHERE portfolio_id = 'pf_hand'").Scan(&stored).Error)
	require.Nil(t, stored.Beta, "not available is NULL")
	require.Nil(t, stored.BenchmarkSymbol)
	require.InDelta(t, m.MaxDrawdown, stored.MaxDrawdown, 1e-15)

	// A window of one return is refused, as the registry refuses it.
	err := b.svc.CalculateMetrics(ctx, &job.Recorder{}, &taskpb.CalculateMetricsParams{PortfolioId: "pf_hand", WindowDays: 1})
	require.ErrorIs(t, err, portfolio.ErrInsufficientData)
	require.True(t, job.IsPermanent(err))
	require.Equal(t, 1, count(t, b.db, "SELECT count(*) FROM risk_metrics"))
}

func TestCalculateMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t, portfolio.Options{})
	ctx := context.Background()
	h := b.svc.Handlers()[tasks.TypeCalculateMetrics]
	const window = 20

	// The expected figures, from the provider's closes directly: the last 21
	// weekdays up to the seed's end.
	var hs []struct {
		AssetSymbol string
		Quantity    float64
	}
	require.NoError(t, b.db.Raw("SELECT asset_symbol, quantity FROM holdings WHERE portfolio_id = ?", portfolio.DemoIncome).Scan(&hs).Error)
	from := seedEnd.AddDate(0, 0, -28) // 21 weekdays: 23 October .. 20 November
	values := map[time.Time]float64{}
	for _, h := range hs {
		bars, err := price.NewSimulated().Bars(ctx, h.AssetSymbol, from, seedEnd)
		require.NoError(t, err)
		require.Len(t, bars, window+1)
		for _, bar := range bars {
			values[bar.Date] += h.Quantity * bar.Close
		}
	}
	bench, err := price.NewSimulated().Bars(ctx, "^SPX", from, seedEnd)
	require.NoError(t, err)
	var ps, bs risk.Series
	for _, bar := range bench {
		ps = append(ps, risk.Point{Date: bar.Date, Value: values[bar.Date]})
		bs = append(bs, risk.Point{Date: bar.Date, Value: bar.Close})
	}
	want, err := risk.Compute(ps, bs, 0.02)
	require.NoError(t, err)

	for run := 1; run <= 2; run++ {
		r := &job.Recorder{}
		require.NoError(t, h(ctx, r, &taskpb.CalculateMetricsParams{PortfolioId: portfolio.DemoIncome, WindowDays: window, RiskFreeRate: 0.02}))
		m := decode[portfolio.MetricsResult](t, r)
		require.Equal(t, "^SPX", *m.Benchmark, "the first benchmark")
		require.Equal(t, "2026-11-20", m.AsOf)
		require.Equal(t, ps[0].Date.Format(time.DateOnly), m.StartDate)
		require.Equal(t, window, m.Returns)
		require.InDelta(t, want.AnnualisedReturn, m.AnnualisedReturn, 1e-9)
		require.InDelta(t, want.AnnualisedVolatility, m.AnnualisedVolatility, 1e-9)
		require.InDelta(t, *want.Sharpe, *m.Sharpe, 1e-9)
		require.InDelta(t, want.MaxDrawdown.Depth, m.MaxDrawdown, 1e-9)
		require.InDelta(t, want.VaR95, m.VaR95, 1e-12)
		require.InDelta(t, want.CVaR95, m.CVaR95, 1e-12)
		require.InDelta(t, *want.Beta, *m.Beta, 1e-9)
		require.InDelta(t, *want.Alpha, *m.Alpha, 1e-9)
		require.InDelta(t, *want.TrackingError, *m.TrackingError, 1e-9)
		require.Equal(t, 1, count(t, b.db, "SELECT count(*) FROM risk_metrics"), "run %d replaces the row", run)
		require.Equal(t, []string{"Loading 21 days of prices for pf_demo_income", "Computing metrics on 21 daily values",
			"Storing metrics", "Computed metrics of pf_demo_income over 20 returns to 2026-11-20"}, r.Messages())
	}

	// The default window is a trading year; another benchmark is another row.
	r := &job.Recorder{}
	require.NoError(t, h(ctx, r, &taskpb.CalculateMetricsParams{PortfolioId: portfolio.DemoGrowth, Benchmark: "^NDX"}))
	m := decode[portfolio.MetricsResult](t, r)
	require.Equal(t, portfolio.DefaultWindowDays, m.Returns)
	require.Equal(t, portfolio.DefaultWindowDays, m.WindowDays)
	require.Equal(t, "^NDX", *m.Benchmark)
	require.Equal(t, 2, count(t, b.db, "SELECT count(*) FROM risk_metrics"))

	for _, tt := range []struct {
		name    string
		params  *taskpb.CalculateMetricsParams
		wantErr error
	}{
		{"unknown portfolio", &taskpb.CalculateMetricsParams{PortfolioId: "pf_nope"}, portfolio.ErrUnknownPortfolio},
		{"unknown benchmark", &taskpb.CalculateMetricsParams{PortfolioId: portfolio.DemoGrowth, Benchmark: "^NOPE"}, portfolio.ErrUnknownBenchmark},
	} {
		err := h(ctx, &job.Recorder{}, tt.params)
		require.ErrorIs(t, err, tt.wantErr, tt.name)
		require.True(t, job.IsPermanent(err), tt.name)
	}
}

func TestCalculateMetricsInsufficientData(t *testing.T) {
	t.Parallel()
	b := handWorked(t)
	ctx := context.Background()
	require.NoError(t, b.db.Exec(`INSERT INTO portfolios (id, name) VALUES ('pf_empty', 'Empty'), ('pf_unpriced', 'Unpriced')`).Error)
	require.NoError(t, b.db.Exec(`INSERT INTO assets (symbol, kind) VALUES ('C', 'equity')`).Error)
	require.NoError(t, b.db.Exec(`INSERT INTO holdings (portfolio_id, asset_symbol, quantity) VALUES ('pf_unpriced', 'C', 1)`).Error)
	for id, want := range map[string]error{"pf_empty": portfolio.ErrNoHoldings, "pf_unpriced": portfolio.ErrInsufficientData} {
		err := b.svc.CalculateMetrics(ctx, &job.Recorder{}, &taskpb.CalculateMetricsParams{PortfolioId: id})
		require.ErrorIs(t, err, want, id)
		require.True(t, job.IsPermanent(err), id)
	}
	// A portfolio nothing can value is reported, not written.
	r := &job.Recorder{}
	require.NoError(t, b.svc.RefreshPortfolio(ctx, r, &taskpb.RefreshPortfolioParams{PortfolioId: "pf_unpriced"}))
	v := decode[portfolio.Valuation](t, r)
	require.Nil(t, v.AsOf)
	require.Zero(t, v.HoldingsValued)
	require.Zero(t, count(t, b.db, "SELECT count(*) FROM portfolio_values"))
}

func TestStooqSymbol(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ symbol, kind, currency, want string }{
		{"AAPL", "equity", "USD", "aapl.us"},
		{"BRK.B", "equity", "USD", "brk-b.us"},
		{"SPY", "etf", "USD", "spy.us"},
		{"^SPX", "index", "USD", "^spx"},
		{"BTC-USD", "crypto", "USD", "btcusd"},
		{"SAP", "equity", "EUR", "sap"},
	} {
		require.Equal(t, tt.want, portfolio.StooqSymbol(tt.symbol, tt.kind, tt.currency), tt.symbol)
	}
}

// TestStooqProvider runs refresh_all_prices through the Stooq provider, wired
// through the egress guard, against a local server speaking Stooq's CSV.
func TestStooqProvider(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	asked := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		mu.Lock()
		asked[q.Get("s")] = q.Get("d1") + "-" + q.Get("d2")
		mu.Unlock()
		switch q.Get("s") {
		case "aapl.us":
			fmt.Fprint(w, "Date,Open,High,Low,Close,Volume\n2026-11-25,100,102,99,101,1000\n2026-11-26,101,103,100,102.5,1200\n")
		case "^spx":
			fmt.Fprint(w, "Date,Open,High,Low,Close\n2026-11-26,5000,5010,4990,5005\n")
		case "brk-b.us":
			fmt.Fprint(w, "Date,Open,High,Low,Close,Volume\n2026-11-26,oops,1,1,1,1\n")
		case "gold.custom":
			fmt.Fprint(w, "Date,Open,High,Low,Close,Volume\n2026-11-26,200,201,199,200.5,10\n")
		default:
			fmt.Fprint(w, "No data")
		}
	}))
	t.Cleanup(srv.Close)
	guard, err := egress.New(egress.Config{AllowCIDRs: []string{"127.0.0.0/8"}})
	require.NoError(t, err)
	p, err := portfolio.NewProvider("stooq", srv.URL, guard.Client())
	require.NoError(t, err)
	require.Equal(t, price.NameStooq, p.Name())

	b := setup(t, portfolio.Options{})
	require.NoError(t, b.db.Exec(`UPDATE assets SET stooq_symbol = 'gold.custom' WHERE symbol = 'GLD'`).Error)
	svc := newService(t, b.db, p, portfolio.Options{})
	r := &job.Recorder{}
	require.NoError(t, svc.RefreshAllPrices(context.Background(), r, &taskpb.RefreshAllPricesParams{
		Symbols: []string{"AAPL", "^SPX", "BRK.B", "GLD", "ETH-USD"},
	}))
	require.Equal(t, portfolio.PriceResult{AssetsUpdated: 3, PricesUpserted: 4, FailedSymbols: []string{"BRK.B", "ETH-USD"}, FailedCount: 2},
		decode[portfolio.PriceResult](t, r))
	require.Equal(t, map[string]string{
		"aapl.us": "20261122-20261127", "^spx": "20261122-20261127", "brk-b.us": "20261122-20261127",
		"gold.custom": "20261122-20261127", "ethusd": "20261122-20261127",
	}, asked)
	var closes []float64
	require.NoError(t, b.db.Raw(`SELECT close FROM prices WHERE date > ? ORDER BY asset_symbol, date`, seedEnd).Scan(&closes).Error)
	require.Equal(t, []float64{101, 102.5, 200.5, 5005}, closes) // AAPL, GLD, ^SPX
	var volume int64
	require.NoError(t, b.db.Raw(`SELECT volume FROM prices WHERE asset_symbol = '^SPX' AND date = '2026-11-26'`).Scan(&volume).Error)
	require.Zero(t, volume)
	// The malformed CSV is logged with its line and column.
	var logged string
	for _, l := range r.Logs() {
		if l.Fields["symbol"] == "BRK.B" {
			logged = l.Fields["error"].(string)
		}
	}
	require.Contains(t, logged, "csv line 2, column 2 (Open)")

	// Without the loopback range allowed the guard refuses the server: every
	// symbol fails, and the task's error says why.
	strict, err := egress.New(egress.Config{})
	require.NoError(t, err)
	p, err = portfolio.NewProvider("stooq", srv.URL, strict.Client())
	require.NoError(t, err)
	err = newService(t, b.db, p, portfolio.Options{}).RefreshAllPrices(context.Background(), &job.Recorder{},
		&taskpb.RefreshAllPricesParams{Symbols: []string{"AAPL"}})
	require.ErrorIs(t, err, portfolio.ErrAllSymbolsFailed)
	require.True(t, errors.Is(err, egress.ErrBlocked), "%v", err)
}

func TestProviderFromConfig(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprint(w, "Date,Open,High,Low,Close,Volume\n2026-11-26,1,2,1,1.5,10\n")
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	day := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

	p, err := portfolio.ProviderFromConfig(config.PricesConfig{Provider: "stooq", StooqBaseURL: srv.URL},
		config.EgressConfig{AllowCIDRs: []string{"127.0.0.1/32"}})
	require.NoError(t, err)
	bars, err := p.Bars(ctx, "aapl.us", day, day)
	require.NoError(t, err)
	require.Equal(t, []price.Bar{{Date: day, Open: 1, High: 2, Low: 1, Close: 1.5, Volume: 10}}, bars)

	// The egress guard is in the path: loopback is refused unless allowed.
	p, err = portfolio.ProviderFromConfig(config.PricesConfig{Provider: "Stooq", StooqBaseURL: srv.URL}, config.EgressConfig{})
	require.NoError(t, err)
	_, err = p.Bars(ctx, "aapl.us", day, day)
	require.ErrorIs(t, err, egress.ErrBlocked)

	p, err = portfolio.ProviderFromConfig(config.Defaults().Prices, config.Defaults().Egress)
	require.NoError(t, err)
	require.Equal(t, price.NameSimulated, p.Name())
}

func TestNewProviderUnknown(t *testing.T) {
	t.Parallel()
	_, err := portfolio.NewProvider("bloomberg", "", nil)
	require.ErrorIs(t, err, price.ErrUnknownProvider)
	p, err := portfolio.NewProvider("", "", nil)
	require.NoError(t, err)
	require.Equal(t, price.NameSimulated, p.Name())
}

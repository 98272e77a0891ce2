package portfolio

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/price"
)

// The demo portfolios' ids.
const (
	DemoBalanced = "pf_demo_balanced"
	DemoGrowth   = "pf_demo_growth"
	DemoIncome   = "pf_demo_income"
)

// demoOwner owns the demo portfolios.
const demoOwner = "demo"

type demoAsset struct{ symbol, name, kind string }

// demoAssets are the demo set's assets, all in US dollars.
var demoAssets = []demoAsset{
	{"AAPL", "Apple Inc.", "equity"},
	{"MSFT", "Microsoft Corporation", "equity"},
	{"GOOGL", "Alphabet Inc. Class A", "equity"},
	{"AMZN", "Amazon.com Inc.", "equity"},
	{"NVDA", "NVIDIA Corporation", "equity"},
	{"META", "Meta Platforms Inc.", "equity"},
	{"TSLA", "Tesla Inc.", "equity"},
	{"JPM", "JPMorgan Chase & Co.", "equity"},
	{"JNJ", "Johnson & Johnson", "equity"},
	{"PG", "Procter & Gamble Co.", "equity"},
	{"KO", "Coca-Cola Co.", "equity"},
	{"PEP", "PepsiCo Inc.", "equity"},
	{"XOM", "Exxon Mobil Corporation", "equity"},
	{"VZ", "Verizon Communications Inc.", "equity"},
	{"T", "AT&T Inc.", "equity"},
	{"O", "Realty Income Corporation", "equity"},
	{"DUK", "Duke Energy Corporation", "equity"},
	{"BRK.B", "Berkshire Hathaway Inc. Class B", "equity"},
	{"SPY", "SPDR S&P 500 ETF Trust", "etf"},
	{"QQQ", "Invesco QQQ Trust", "etf"},
	{"VTI", "Vanguard Total Stock Market ETF", "etf"},
	{"AGG", "iShares Core US Aggregate Bond ETF", "etf"},
	{"BND", "Vanguard Total Bond Market ETF", "etf"},
	{"TLT", "iShares 20+ Year Treasury Bond ETF", "etf"},
	{"VNQ", "Vanguard Real Estate ETF", "etf"},
	{"SCHD", "Schwab US Dividend Equity ETF", "etf"},
	{"GLD", "SPDR Gold Shares", "etf"},
	{"VFIAX", "Vanguard 500 Index Fund Admiral Shares", "fund"},
	{"FXAIX", "Fidelity 500 Index Fund", "fund"},
	{"VWELX", "Vanguard Wellington Fund Investor Shares", "fund"},
	{"VWINX", "Vanguard Wellesley Income Fund Investor Shares", "fund"},
	{"BTC-USD", "Bitcoin", "crypto"},
	{"ETH-USD", "Ether", "crypto"},
	{"SOL-USD", "Solana", "crypto"},
	{"^SPX", "S&P 500 Index", "index"},
	{"^NDX", "Nasdaq 100 Index", "index"},
}

// demoBenchmarks are the benchmark indices, first the default one.
var demoBenchmarks = []struct{ symbol, name string }{
	{"^SPX", "S&P 500"},
	{"^NDX", "Nasdaq 100"},
}

type demoHolding struct {
	symbol              string
	quantity, costBasis float64
}

// demoPortfolios are the demo portfolios and their holdings.
var demoPortfolios = []struct {
	id, name string
	holdings []demoHolding
}{
	{DemoBalanced, "Balanced 60/40", []demoHolding{
		{"VTI", 120, 26400}, {"SPY", 40, 19200}, {"AAPL", 50, 9000}, {"MSFT", 25, 9500},
		{"JNJ", 40, 6400}, {"AGG", 150, 14700}, {"BND", 180, 13200}, {"TLT", 60, 5700},
		{"GLD", 20, 4000}, {"VWELX", 200, 8400},
	}},
	{DemoGrowth, "Growth", []demoHolding{
		{"NVDA", 60, 7200}, {"AAPL", 40, 7200}, {"MSFT", 30, 11400}, {"GOOGL", 50, 8500},
		{"AMZN", 45, 8100}, {"META", 20, 9800}, {"TSLA", 25, 6000}, {"QQQ", 30, 14400},
		{"BTC-USD", 0.15, 9000}, {"ETH-USD", 2.5, 7500}, {"SOL-USD", 30, 4500},
	}},
	{DemoIncome, "Income", []demoHolding{
		{"KO", 150, 9300}, {"PEP", 50, 8500}, {"PG", 60, 9600}, {"VZ", 200, 8000},
		{"T", 400, 7200}, {"O", 150, 8700}, {"DUK", 80, 8400}, {"XOM", 70, 7700},
		{"JPM", 30, 5700}, {"SCHD", 250, 6750}, {"VNQ", 80, 6800}, {"VWINX", 300, 7500},
		{"BRK.B", 15, 6300}, {"FXAIX", 40, 7600}, {"VFIAX", 20, 9000},
	}},
}

// Summary describes a demo load.
type Summary struct {
	// Assets, Benchmarks, Portfolios and Holdings count the demo set's rows.
	Assets, Benchmarks, Portfolios, Holdings int
	// Prices counts the bars loaded, from From to To.
	Prices   int
	From, To time.Time
	// Changed counts the rows inserted, updated or deleted; 0 when the database
	// already held the demo set.
	Changed int64
}

// String describes the load in one line.
func (s Summary) String() string {
	return fmt.Sprintf("demo data: %d assets, %d benchmarks, %d portfolios, %d holdings, %d prices from %s to %s; %d rows changed",
		s.Assets, s.Benchmarks, s.Portfolios, s.Holdings, s.Prices, s.From.Format(time.DateOnly), s.To.Format(time.DateOnly), s.Changed)
}

// SeedDemo loads the demo data set with a year of daily prices up to today
// (UTC) from provider. Running it again changes nothing.
func SeedDemo(ctx context.Context, db *gorm.DB, provider price.Provider) (Summary, error) {
	return SeedDemoUntil(ctx, db, provider, time.Now())
}

// SeedDemoUntil is SeedDemo with a year of prices up to the UTC date of end.
func SeedDemoUntil(ctx context.Context, db *gorm.DB, provider price.Provider, end time.Time) (Summary, error) {
	to := civil(end.UTC())
	sum := Summary{From: to.AddDate(-1, 0, 0), To: to}
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return seedReference(tx, &sum)
	})
	if err != nil {
		return Summary{}, fmt.Errorf("portfolio: seed demo: %w", err)
	}
	// Prices, a batch of symbols per transaction.
	const batch = 12
	for i := 0; i < len(demoAssets); i += batch {
		if err := ctx.Err(); err != nil {
			return Summary{}, fmt.Errorf("portfolio: seed demo: %w", err)
		}
		refs := make([]assetRef, 0, batch)
		for _, a := range demoAssets[i:min(i+batch, len(demoAssets))] {
			refs = append(refs, assetRef{Symbol: a.symbol, Kind: a.kind, Currency: "USD"})
		}
		var rows barRows
		for j, f := range fetchBars(ctx, provider, DefaultConcurrency, refs, sum.From, sum.To) {
			if f.err != nil {
				return Summary{}, fmt.Errorf("portfolio: seed demo: prices of %s: %w", refs[j].Symbol, f.err)
			}
			rows.add(refs[j].Symbol, f.bars)
		}
		if err := ctx.Err(); err != nil {
			return Summary{}, fmt.Errorf("portfolio: seed demo: %w", err)
		}
		err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			n, err := upsertBars(ctx, tx, &rows)
			sum.Changed += n
			return err
		})
		if err != nil {
			return Summary{}, fmt.Errorf("portfolio: seed demo: %w", err)
		}
		sum.Prices += rows.len()
	}
	return sum, nil
}

// seedReference upserts the assets, benchmarks, portfolios and holdings,
// touching only rows that differ, and removes holdings of the demo portfolios
// that are not in the set.
func seedReference(tx *gorm.DB, sum *Summary) error {
	exec := func(what, q string, args ...any) error {
		res := tx.Exec(q, args...)
		if res.Error != nil {
			return fmt.Errorf("%s: %w", what, res.Error)
		}
		sum.Changed += res.RowsAffected
		return nil
	}
	var symbols, names, kinds []string
	for _, a := range demoAssets {
		symbols, names, kinds = append(symbols, a.symbol), append(names, a.name), append(kinds, a.kind)
	}
	sum.Assets = len(symbols)
	if err := exec("assets", `
		INSERT INTO assets (symbol, name, kind, currency, active)
		SELECT s, n, k, 'USD', true FROM unnest(?::text[], ?::text[], ?::text[]) AS x(s, n, k)
		ON CONFLICT (symbol) DO UPDATE
		SET name = excluded.name, kind = excluded.kind, currency = excluded.currency, active = true, updated_at = now()
		WHERE (assets.name, assets.kind, assets.currency, assets.active)
		   IS DISTINCT FROM (excluded.name, excluded.kind, excluded.currency, true)`,
		pgArray[string](symbols), pgArray[string](names), pgArray[string](kinds)); err != nil {
		return err
	}
	for i, b := range demoBenchmarks {
		if err := exec("benchmarks", `
			INSERT INTO benchmarks (symbol, name, position) VALUES (?, ?, ?)
			ON CONFLICT (symbol) DO UPDATE SET name = excluded.name, position = excluded.position
			WHERE (benchmarks.name, benchmarks.position) IS DISTINCT FROM (excluded.name, excluded.position)`,
			b.symbol, b.name, i+1); err != nil {
			return err
		}
	}
	sum.Benchmarks = len(demoBenchmarks)
	for _, p := range demoPortfolios {
		if err := exec("portfolios", `
			INSERT INTO portfolios (id, name, owner, base_currency) VALUES (?, ?, ?, 'USD')
			ON CONFLICT (id) DO UPDATE SET name = excluded.name, owner = excluded.owner,
				base_currency = excluded.base_currency, updated_at = now()
			WHERE (portfolios.name, portfolios.owner, portfolios.base_currency)
			   IS DISTINCT FROM (excluded.name, excluded.owner, excluded.base_currency)`,
			p.id, p.name, demoOwner); err != nil {
			return err
		}
		var hs []string
		var qty, cost []float64
		for _, h := range p.holdings {
			hs, qty, cost = append(hs, h.symbol), append(qty, h.quantity), append(cost, h.costBasis)
		}
		if err := exec("holdings", `
			INSERT INTO holdings (portfolio_id, asset_symbol, quantity, cost_basis)
			SELECT ?, s, q, c FROM unnest(?::text[], ?::float8[], ?::float8[]) AS x(s, q, c)
			ON CONFLICT (portfolio_id, asset_symbol) DO UPDATE
			SET quantity = excluded.quantity, cost_basis = excluded.cost_basis, updated_at = now()
			WHERE (holdings.quantity, holdings.cost_basis) IS DISTINCT FROM (excluded.quantity, excluded.cost_basis)`,
			p.id, pgArray[string](hs), pgArray[float64](qty), pgArray[float64](cost)); err != nil {
			return err
		}
		if err := exec("holdings", `DELETE FROM holdings WHERE portfolio_id = ? AND NOT asset_symbol = ANY(?)`,
			p.id, pgArray[string](hs)); err != nil {
			return err
		}
		sum.Holdings += len(hs)
	}
	sum.Portfolios = len(demoPortfolios)
	return nil
}

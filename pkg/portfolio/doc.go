// Package portfolio is the portfolio domain: the data-refresh task handlers
// (refresh_all_prices, refresh_portfolio, refresh_benchmark, calculate_metrics),
// the queries behind them and the demo data set.
//
// # Handlers
//
// A Service holds the database, the price provider and the batch size; its
// Handlers method returns the four job.Handler functions keyed by task type, for
// the worker to register. Each handler reports progress with a current step and
// messages, writes task log lines, stops between batches when its context is
// cancelled, and writes each batch in one transaction, so a cancel or a failure
// never leaves part of a batch behind. Running a handler twice gives the same end
// state: every write is an upsert, and an upsert that would not change a row
// leaves it alone.
//
// # Prices (refresh_all_prices, refresh_benchmark)
//
// Bars are fetched for the calendar days from today - lookback_days to today
// (UTC, both inclusive; lookback_days defaults to 5), so a Friday run with the
// default covers the five weekdays Monday to Friday. Symbols are read from the
// database BatchSize at a time in symbol order (keyset pagination), fetched
// concurrently within the batch, and the batch's bars are upserted with one
// INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE in one transaction;
// memory holds one batch, whatever the number of symbols. The default symbols of
// refresh_all_prices are every active asset (indices included); explicitly listed
// symbols are refreshed even when inactive, and a listed symbol that is not an
// asset counts as failed. refresh_benchmark does the same for the benchmark
// indices (one, or all by default).
//
// Their result is
//
//	{"assets_updated": 4998, "prices_upserted": 24990,
//	 "failed_symbols": ["XYZ", ...], "failed_count": 2}
//
// where assets_updated counts symbols with at least one bar stored,
// prices_upserted the bars written (inserted or confirmed), failed_symbols the
// first MaxFailedSymbols failing symbols in symbol order and failed_count all of
// them. A failing symbol is logged with its error and does not fail the task
// unless every symbol fails; the task error is then permanent (job.Permanent)
// only when every failure is (price.IsPermanent: unknown symbol, no data,
// malformed CSV, 4xx). A symbol whose bars are not fit to store (a price that is
// not finite and positive, low above high) fails the same way, so NaN never
// reaches the database; the schema's checks refuse it as well.
//
// # Provider symbols
//
// The simulated provider is asked for the asset's own symbol. The Stooq provider
// is asked for the asset's stooq_symbol when the column is set, and otherwise for
// the symbol given by StooqSymbol: indices and crypto lower-cased (^SPX → ^spx,
// BTC-USD → btcusd without the dash), US-dollar equities, ETFs and funds
// lower-cased with "." as "-" and the ".us" market suffix (AAPL → aapl.us,
// BRK.B → brk-b.us), anything else lower-cased as it is.
//
// # Valuation (refresh_portfolio)
//
// A portfolio is valued at its as-of date, the latest date on which any of its
// holdings has a close. Each holding is valued at its latest close on or before
// that date (a holding whose market did not trade that day keeps its previous
// close); holdings_valued counts the holdings that have a close at all. The day
// change is Σ quantity × (close at as-of - close at the previous date), over the
// holdings that have a close on or before both, where the previous date is the
// latest price date of the holdings before the as-of date; it is null when there
// is none. The value is upserted into portfolio_values for (portfolio, as-of);
// cash_flow is kept as it is (no transactions are modelled, so it stays 0).
// Amounts are in the assets' currencies, summed as they are: the demo data is all
// in US dollars.
//
// With portfolio_id the result is
//
//	{"portfolio_id": "pf_demo_growth", "as_of": "2026-11-27",
//	 "market_value": 152340.12, "day_change": -812.5, "holdings_valued": 9}
//
// and with all: true it is {"portfolios": [ ...one such object per portfolio,
// in id order... ]}. A portfolio none of whose holdings has a price has as_of and
// day_change null, market value 0 and no row written. An unknown portfolio is a
// permanent error.
//
// # Risk metrics (calculate_metrics)
//
// Metrics describe the portfolio's current holdings held unchanged over the
// window (no trades, no cash flows). The daily value on a date is
// Σ quantity × close, each holding at its latest close on or before the date. The
// dates are the price dates of the holdings' assets; the window is the last
// window_days + 1 of them (window_days daily returns; 252 by default, a trading
// year) up to the latest, looking back at most 1.5 × window_days + 30 calendar
// days. A date before every holding has a close is left out. The series is
// compared with the benchmark's closes (the named benchmark, or the first by
// position then symbol; none when there are no benchmarks) through risk.Compute,
// which keeps the dates both have. The figures are upserted into risk_metrics for
// (portfolio, as_of, window_days, benchmark), as_of being the window's last date;
// figures risk reports as not available are stored as NULL.
//
// The result is the metrics:
//
//	{"portfolio_id", "as_of", "start_date", "window_days", "returns",
//	 "benchmark", "risk_free_rate", "annualised_return", "annualised_volatility",
//	 "sharpe", "sortino", "max_drawdown", "max_drawdown_peak",
//	 "max_drawdown_trough", "var_95", "cvar_95", "beta", "alpha",
//	 "tracking_error"}
//
// with null for the figures that are not available. An unknown portfolio or
// benchmark, a portfolio without holdings, or too few prices to compute a return
// is a permanent error that says which.
//
// # Demo data
//
// SeedDemo loads the demo set: 36 assets of every kind, two benchmark indices,
// the portfolios pf_demo_balanced, pf_demo_growth and pf_demo_income with fixed
// holdings, and a year of daily prices up to today from the given provider.
// Running it again changes nothing: rows are upserted only when they differ, and
// the simulated provider's bars are the same for a symbol and date whatever the
// run (a run on a later day adds the newer days).
package portfolio

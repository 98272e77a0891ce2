-- +goose Up
-- The portfolio domain: assets and their daily prices, portfolios and their
-- holdings, benchmark indices, daily portfolio values and risk metrics.
--
-- Prices and figures are double precision. A finite-number check is written as
-- "x < 'Infinity'" together with a lower bound: in PostgreSQL NaN sorts above
-- Infinity, so the check refuses NaN and ±Infinity alike. Figures that may not
-- exist for the data (a Sharpe ratio on a flat series, a beta without a
-- benchmark) are nullable: NULL means "not available", never NaN.

CREATE TABLE assets (
    symbol       text PRIMARY KEY CHECK (symbol ~ '^[A-Za-z0-9^][A-Za-z0-9^._=-]{0,31}$'),
    name         text        NOT NULL DEFAULT '',
    kind         text        NOT NULL CHECK (kind IN ('equity', 'etf', 'fund', 'crypto', 'index')),
    currency     text        NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    active       boolean     NOT NULL DEFAULT true,
    -- stooq_symbol is the symbol the Stooq provider knows the asset by; NULL means
    -- the default rule (see the portfolio package).
    stooq_symbol text CHECK (stooq_symbol ~ '^[a-z0-9^][a-z0-9^._=-]{0,31}$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- Lets benchmarks require an index asset with a composite foreign key.
    UNIQUE (symbol, kind)
);
-- refresh_all_prices walks the active assets in symbol order, a batch at a time.
CREATE INDEX assets_active_symbol_idx ON assets (symbol) WHERE active;

CREATE TABLE prices (
    asset_symbol text   NOT NULL REFERENCES assets (symbol) ON UPDATE CASCADE ON DELETE CASCADE,
    date         date   NOT NULL,
    open         double precision NOT NULL CHECK (open > 0 AND open < 'Infinity'),
    high         double precision NOT NULL CHECK (high > 0 AND high < 'Infinity'),
    low          double precision NOT NULL CHECK (low > 0 AND low < 'Infinity'),
    close        double precision NOT NULL CHECK (close > 0 AND close < 'Infinity'),
    volume       bigint NOT NULL DEFAULT 0 CHECK (volume >= 0),
    PRIMARY KEY (asset_symbol, date),
    CHECK (low <= high)
);
-- cleanup_old_data prunes prices by date.
CREATE INDEX prices_date_idx ON prices (date);

CREATE TABLE portfolios (
    id            text PRIMARY KEY CHECK (id ~ '^pf_[a-z0-9_]{1,60}$'),
    name          text        NOT NULL CHECK (name <> ''),
    owner         text        NOT NULL DEFAULT '',
    base_currency text        NOT NULL DEFAULT 'USD' CHECK (base_currency ~ '^[A-Z]{3}$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE holdings (
    portfolio_id text NOT NULL REFERENCES portfolios (id) ON DELETE CASCADE,
    asset_symbol text NOT NULL REFERENCES assets (symbol) ON UPDATE CASCADE,
    quantity     double precision NOT NULL CHECK (quantity > 0 AND quantity < 'Infinity'),
    -- cost_basis is the total amount paid for the position, in the asset's currency.
    cost_basis   double precision NOT NULL DEFAULT 0 CHECK (cost_basis >= 0 AND cost_basis < 'Infinity'),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (portfolio_id, asset_symbol)
);
-- Which portfolios hold an asset (and the foreign key's delete check).
CREATE INDEX holdings_asset_symbol_idx ON holdings (asset_symbol);

CREATE TABLE benchmarks (
    symbol   text PRIMARY KEY,
    -- kind is always 'index': with the foreign key it makes a benchmark an index asset.
    kind     text    NOT NULL DEFAULT 'index' CHECK (kind = 'index'),
    name     text    NOT NULL CHECK (name <> ''),
    -- position orders the benchmarks; the first is the default of calculate_metrics.
    position integer NOT NULL DEFAULT 0,
    FOREIGN KEY (symbol, kind) REFERENCES assets (symbol, kind) ON UPDATE CASCADE ON DELETE CASCADE
);

CREATE TABLE portfolio_values (
    portfolio_id    text        NOT NULL REFERENCES portfolios (id) ON DELETE CASCADE,
    date            date        NOT NULL,
    market_value    double precision NOT NULL CHECK (market_value >= 0 AND market_value < 'Infinity'),
    -- day_change is the change from the previous trading day's value of the same
    -- holdings; NULL when there is no previous close.
    day_change      double precision CHECK (day_change > '-Infinity' AND day_change < 'Infinity'),
    -- cash_flow is money moved into (+) or out of (-) the portfolio that day.
    cash_flow       double precision NOT NULL DEFAULT 0 CHECK (cash_flow > '-Infinity' AND cash_flow < 'Infinity'),
    holdings_valued integer     NOT NULL DEFAULT 0 CHECK (holdings_valued >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (portfolio_id, date)
);

CREATE TABLE risk_metrics (
    id                    bigserial PRIMARY KEY,
    portfolio_id          text    NOT NULL REFERENCES portfolios (id) ON DELETE CASCADE,
    as_of                 date    NOT NULL,
    window_days           integer NOT NULL CHECK (window_days >= 2),
    -- benchmark_symbol is NULL when the metrics were computed without a benchmark.
    benchmark_symbol      text REFERENCES benchmarks (symbol) ON DELETE CASCADE,
    risk_free_rate        double precision NOT NULL DEFAULT 0 CHECK (risk_free_rate >= -1 AND risk_free_rate <= 1),
    start_date            date    NOT NULL,
    returns               integer NOT NULL CHECK (returns >= 1),
    annualised_return     double precision NOT NULL CHECK (annualised_return >= -1 AND annualised_return < 'Infinity'),
    annualised_volatility double precision NOT NULL CHECK (annualised_volatility >= 0 AND annualised_volatility < 'Infinity'),
    sharpe                double precision CHECK (sharpe > '-Infinity' AND sharpe < 'Infinity'),
    sortino               double precision CHECK (sortino > '-Infinity' AND sortino < 'Infinity'),
    max_drawdown          double precision NOT NULL CHECK (max_drawdown >= 0 AND max_drawdown <= 1),
    max_drawdown_peak     date,
    max_drawdown_trough   date,
    var_95                double precision NOT NULL CHECK (var_95 >= 0 AND var_95 <= 1),
    cvar_95               double precision NOT NULL CHECK (cvar_95 >= 0 AND cvar_95 <= 1),
    beta                  double precision CHECK (beta > '-Infinity' AND beta < 'Infinity'),
    alpha                 double precision CHECK (alpha > '-Infinity' AND alpha < 'Infinity'),
    tracking_error        double precision CHECK (tracking_error >= 0 AND tracking_error < 'Infinity'),
    computed_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (start_date <= as_of)
);
-- One row per portfolio, date, window and benchmark; a re-run replaces it.
CREATE UNIQUE INDEX risk_metrics_key_idx
    ON risk_metrics (portfolio_id, as_of, window_days, benchmark_symbol) NULLS NOT DISTINCT;
CREATE INDEX risk_metrics_benchmark_symbol_idx ON risk_metrics (benchmark_symbol);

-- +goose Down
DROP TABLE risk_metrics;
DROP TABLE portfolio_values;
DROP TABLE benchmarks;
DROP TABLE holdings;
DROP TABLE portfolios;
DROP TABLE prices;
DROP TABLE assets;

package store

import "time"

// Asset is a row of assets: a tradable instrument or an index.
type Asset struct {
	Symbol string `gorm:"primaryKey"`
	Name   string
	// Kind is equity, etf, fund, crypto or index.
	Kind     string
	Currency string
	Active   bool
	// StooqSymbol is the Stooq provider's symbol; nil means the default rule.
	StooqSymbol *string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Price is a row of prices: one daily bar of an asset.
type Price struct {
	AssetSymbol string    `gorm:"primaryKey"`
	Date        time.Time `gorm:"primaryKey;type:date"`
	Open        float64
	High        float64
	Low         float64
	Close       float64
	Volume      int64
}

// Portfolio is a row of portfolios.
type Portfolio struct {
	ID           string `gorm:"primaryKey"`
	Name         string
	Owner        string
	BaseCurrency string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Holding is a row of holdings: a position of a portfolio in an asset.
type Holding struct {
	PortfolioID string `gorm:"primaryKey"`
	AssetSymbol string `gorm:"primaryKey"`
	Quantity    float64
	// CostBasis is the total amount paid for the position.
	CostBasis float64
	UpdatedAt time.Time
}

// Benchmark is a row of benchmarks: an index asset portfolios are compared with.
type Benchmark struct {
	Symbol string `gorm:"primaryKey"`
	// Kind is always "index".
	Kind string
	Name string
	// Position orders the benchmarks; the first is the default one.
	Position int
}

// PortfolioValue is a row of portfolio_values: a portfolio's value on a day.
type PortfolioValue struct {
	PortfolioID string    `gorm:"primaryKey"`
	Date        time.Time `gorm:"primaryKey;type:date"`
	MarketValue float64
	// DayChange is nil when there is no previous close to compare with.
	DayChange      *float64
	CashFlow       float64
	HoldingsValued int
	UpdatedAt      time.Time
}

// RiskMetric is a row of risk_metrics: a portfolio's risk figures over a window
// ending on AsOf. Nil figures are not available for the data.
type RiskMetric struct {
	ID                   int64 `gorm:"primaryKey"`
	PortfolioID          string
	AsOf                 time.Time `gorm:"type:date"`
	WindowDays           int
	BenchmarkSymbol      *string
	RiskFreeRate         float64
	StartDate            time.Time `gorm:"type:date"`
	Returns              int
	AnnualisedReturn     float64
	AnnualisedVolatility float64
	Sharpe               *float64
	Sortino              *float64
	MaxDrawdown          float64
	MaxDrawdownPeak      *time.Time `gorm:"type:date"`
	MaxDrawdownTrough    *time.Time `gorm:"type:date"`
	VaR95                float64    `gorm:"column:var_95"`
	CVaR95               float64    `gorm:"column:cvar_95"`
	Beta                 *float64
	Alpha                *float64
	TrackingError        *float64
	ComputedAt           time.Time
}

package portfolio

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/price"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// Errors of the handlers. Those about the task's params or data reach the task's
// error wrapped in job.Permanent.
var (
	// ErrUnknownPortfolio means the portfolio id names no portfolio.
	ErrUnknownPortfolio = errors.New("portfolio: unknown portfolio")
	// ErrUnknownBenchmark means the benchmark symbol names no benchmark.
	ErrUnknownBenchmark = errors.New("portfolio: unknown benchmark")
	// ErrNoHoldings means the portfolio holds nothing to compute metrics on.
	ErrNoHoldings = errors.New("portfolio: no holdings")
	// ErrInsufficientData means there are too few prices to compute a return.
	ErrInsufficientData = errors.New("portfolio: insufficient price data")
	// ErrAllSymbolsFailed means no symbol of a price refresh could be updated.
	ErrAllSymbolsFailed = errors.New("portfolio: every symbol failed")
	// ErrUnknownAsset means a symbol listed in refresh_all_prices is not an asset.
	ErrUnknownAsset = errors.New("portfolio: unknown asset")
	// ErrInvalidBar means a provider returned a bar the prices table cannot hold:
	// a price that is not finite and positive, a low above the high, a negative
	// volume or a date out of order.
	ErrInvalidBar = errors.New("portfolio: invalid bar")
)

// Defaults of Options.
const (
	DefaultBatchSize     = 100
	DefaultConcurrency   = 8
	DefaultLookbackDays  = 5
	DefaultWindowDays    = 252
	MaxFailedSymbols     = 100
	maxBatchSize         = 5000
	maxConcurrency       = 64
	progressStepPrices   = "fetching prices"
	progressStepValuing  = "valuing holdings"
	progressStepLoading  = "loading prices"
	progressStepComputes = "computing metrics"
	progressStepStoring  = "storing metrics"
	progressStepDone     = "done"
)

// Options tunes a Service. The zero value gives the defaults.
type Options struct {
	// BatchSize is the number of symbols fetched and upserted per transaction.
	// If unset or zero, DefaultBatchSize (100) is used; at most 5000.
	BatchSize int
	// Concurrency is the number of symbols fetched at once within a batch. If
	// unset or zero, DefaultConcurrency (8) is used; at most 64.
	Concurrency int
	// Now returns the current time; the price refreshes fetch up to its UTC date.
	// If nil, time.Now is used.
	Now func() time.Time
}

// Service runs the portfolio task types against a database and a price provider.
// It is safe for concurrent use.
type Service struct {
	db       *gorm.DB
	provider price.Provider
	log      *zap.Logger
	opts     Options
}

// New returns a Service. db and provider are required; log may be nil.
func New(db *gorm.DB, provider price.Provider, log *zap.Logger, opts Options) (*Service, error) {
	if db == nil {
		return nil, errors.New("portfolio: new service: nil database")
	}
	if provider == nil {
		return nil, errors.New("portfolio: new service: nil price provider")
	}
	if log == nil {
		log = zap.NewNop()
	}
	switch {
	case opts.BatchSize < 0 || opts.BatchSize > maxBatchSize:
		return nil, fmt.Errorf("portfolio: new service: batch size %d outside 1..%d", opts.BatchSize, maxBatchSize)
	case opts.Concurrency < 0 || opts.Concurrency > maxConcurrency:
		return nil, fmt.Errorf("portfolio: new service: concurrency %d outside 1..%d", opts.Concurrency, maxConcurrency)
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{db: db, provider: provider, log: log, opts: opts}, nil
}

// NewHandlers is a shortcut for New(db, provider, log, Options{BatchSize:
// batchSize}).Handlers().
func NewHandlers(db *gorm.DB, provider price.Provider, batchSize int, log *zap.Logger) (map[string]job.Handler, error) {
	s, err := New(db, provider, log, Options{BatchSize: batchSize})
	if err != nil {
		return nil, err
	}
	return s.Handlers(), nil
}

// Handlers returns the four data-refresh handlers keyed by task type name.
func (s *Service) Handlers() map[string]job.Handler {
	return map[string]job.Handler{
		tasks.TypeRefreshAllPrices: job.Typed[*taskpb.RefreshAllPricesParams](s.RefreshAllPrices),
		tasks.TypeRefreshPortfolio: job.Typed[*taskpb.RefreshPortfolioParams](s.RefreshPortfolio),
		tasks.TypeRefreshBenchmark: job.Typed[*taskpb.RefreshBenchmarkParams](s.RefreshBenchmark),
		tasks.TypeCalculateMetrics: job.Typed[*taskpb.CalculateMetricsParams](s.CalculateMetrics),
	}
}

// NewProvider returns the price provider named by configuration: "simulated"
// (the default when empty) or "stooq", which sends its requests to stooqBaseURL
// through client. client should be the egress guard's client
// (egress.Guard.Client) so that the provider's requests are checked like every
// other outbound call; nil means the price package's own client.
func NewProvider(name, stooqBaseURL string, client *http.Client) (price.Provider, error) {
	p, err := price.New(name, price.Config{StooqURL: stooqBaseURL, HTTPClient: client})
	if err != nil {
		return nil, fmt.Errorf("portfolio: price provider: %w", err)
	}
	return p, nil
}

// ProviderFromConfig returns the price provider the configuration selects. For
// Stooq it sends the requests through an egress guard built from eg, so the
// provider's calls are checked like every other outbound call.
func ProviderFromConfig(prices config.PricesConfig, eg config.EgressConfig) (price.Provider, error) {
	var client *http.Client
	if strings.EqualFold(strings.TrimSpace(prices.Provider), price.NameStooq) {
		guard, err := egress.FromConfig(eg, egress.PurposePrice)
		if err != nil {
			return nil, fmt.Errorf("portfolio: price provider: %w", err)
		}
		client = guard.Client()
	}
	return NewProvider(prices.Provider, prices.StooqBaseURL, client)
}

// StooqSymbol returns the symbol Stooq knows an asset by when its stooq_symbol
// column is not set: indices lower-cased (^SPX → ^spx), crypto lower-cased
// without dashes (BTC-USD → btcusd), US-dollar equities, ETFs and funds
// lower-cased with "." as "-" and the ".us" suffix (BRK.B → brk-b.us), anything
// else lower-cased.
func StooqSymbol(symbol, kind, currency string) string {
	s := strings.ToLower(symbol)
	switch kind {
	case "index":
		return s
	case "crypto":
		return strings.ReplaceAll(s, "-", "")
	}
	if currency == "USD" {
		return strings.ReplaceAll(s, ".", "-") + ".us"
	}
	return s
}

// providerSymbol returns the symbol to ask p for the asset's bars.
func providerSymbol(p price.Provider, a assetRef) string {
	if p.Name() != price.NameStooq {
		return a.Symbol
	}
	if a.StooqSymbol != nil && *a.StooqSymbol != "" {
		return *a.StooqSymbol
	}
	return StooqSymbol(a.Symbol, a.Kind, a.Currency)
}

// today returns the service's current UTC date at midnight.
func (s *Service) today() time.Time {
	return civil(s.opts.Now().UTC())
}

// civil returns the calendar date of t in its own location, as UTC midnight.
func civil(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

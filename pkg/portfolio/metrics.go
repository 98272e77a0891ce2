package portfolio

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/risk"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
)

// MetricsResult is the result of calculate_metrics. Nil figures are not
// available for the data (see package risk).
type MetricsResult struct {
	PortfolioID          string   `json:"portfolio_id"`
	AsOf                 string   `json:"as_of"`
	StartDate            string   `json:"start_date"`
	WindowDays           int      `json:"window_days"`
	Returns              int      `json:"returns"`
	Benchmark            *string  `json:"benchmark"`
	RiskFreeRate         float64  `json:"risk_free_rate"`
	AnnualisedReturn     float64  `json:"annualised_return"`
	AnnualisedVolatility float64  `json:"annualised_volatility"`
	Sharpe               *float64 `json:"sharpe"`
	Sortino              *float64 `json:"sortino"`
	MaxDrawdown          float64  `json:"max_drawdown"`
	MaxDrawdownPeak      *string  `json:"max_drawdown_peak"`
	MaxDrawdownTrough    *string  `json:"max_drawdown_trough"`
	VaR95                float64  `json:"var_95"`
	CVaR95               float64  `json:"cvar_95"`
	Beta                 *float64 `json:"beta"`
	Alpha                *float64 `json:"alpha"`
	TrackingError        *float64 `json:"tracking_error"`
}

// CalculateMetrics is the calculate_metrics handler: it derives the portfolio's
// daily values over the window from its holdings and the closes, computes the
// risk figures against the benchmark with risk.Compute and upserts risk_metrics.
func (s *Service) CalculateMetrics(ctx context.Context, r job.Reporter, p *taskpb.CalculateMetricsParams) error {
	m, err := s.calculateMetrics(ctx, r, p)
	if err != nil {
		if job.IsPermanent(err) {
			return err
		}
		return fmt.Errorf("portfolio: calculate metrics %s: %w", p.GetPortfolioId(), err)
	}
	if err := r.SetResult(m); err != nil {
		return fmt.Errorf("portfolio: calculate metrics: set result: %w", err)
	}
	return nil
}

func (s *Service) calculateMetrics(ctx context.Context, r job.Reporter, p *taskpb.CalculateMetricsParams) (MetricsResult, error) {
	id := p.GetPortfolioId()
	window := int(p.GetWindowDays())
	switch {
	case window == 0:
		window = DefaultWindowDays
	case window < 2:
		return MetricsResult{}, job.Permanent(fmt.Errorf("window_days %d: need at least 2 returns: %w", window, ErrInsufficientData))
	}
	db := s.db.WithContext(ctx)
	var n int64
	if err := db.Model(&store.Portfolio{}).Where("id = ?", id).Count(&n).Error; err != nil {
		return MetricsResult{}, fmt.Errorf("look up portfolio: %w", err)
	}
	if n == 0 {
		return MetricsResult{}, job.Permanent(fmt.Errorf("portfolio %q does not exist: %w", id, ErrUnknownPortfolio))
	}
	bench, err := s.chooseBenchmark(ctx, p.GetBenchmark())
	if err != nil {
		return MetricsResult{}, err
	}

	r.Progress(0.1, progressStepLoading, fmt.Sprintf("Loading %d days of prices for %s", window+1, id))
	values, err := s.dailyValues(ctx, r, id, window)
	if err != nil {
		return MetricsResult{}, err
	}
	var benchSeries risk.Series
	if bench != nil {
		if benchSeries, err = s.closes(ctx, *bench, values[0].Date, values[len(values)-1].Date); err != nil {
			return MetricsResult{}, err
		}
		if len(benchSeries) < 2 {
			return MetricsResult{}, job.Permanent(fmt.Errorf("benchmark %s has %d closes from %s to %s, need 2 (run refresh_benchmark): %w",
				*bench, len(benchSeries), values[0].Date.Format(time.DateOnly), values[len(values)-1].Date.Format(time.DateOnly), ErrInsufficientData))
		}
	}

	r.Progress(0.6, progressStepComputes, fmt.Sprintf("Computing metrics on %d daily values", len(values)))
	m, err := risk.Compute(values, benchSeries, p.GetRiskFreeRate())
	if err != nil {
		if errors.Is(err, risk.ErrTooFewPoints) {
			return MetricsResult{}, job.Permanent(fmt.Errorf("portfolio %s: %w: %w", id, ErrInsufficientData, err))
		}
		return MetricsResult{}, job.Permanent(err)
	}

	r.Progress(0.9, progressStepStoring, "Storing metrics")
	row := metricRow(id, window, bench, p.GetRiskFreeRate(), m)
	if err := db.Transaction(func(tx *gorm.DB) error { return upsertMetrics(tx, row) }); err != nil {
		return MetricsResult{}, err
	}
	res := metricsResult(row)
	r.Log(job.Info, "metrics stored", map[string]any{"portfolio_id": id, "as_of": res.AsOf, "returns": m.Returns})
	r.Progress(1, progressStepDone, fmt.Sprintf("Computed metrics of %s over %d returns to %s", id, m.Returns, res.AsOf))
	return res, nil
}

// chooseBenchmark returns the named benchmark, or the first one when name is
// empty; nil when there is none.
func (s *Service) chooseBenchmark(ctx context.Context, name string) (*string, error) {
	q := s.db.WithContext(ctx).Model(&store.Benchmark{})
	if name != "" {
		q = q.Where("symbol = ?", name)
	}
	var symbols []string
	if err := q.Order("position, symbol").Limit(1).Pluck("symbol", &symbols).Error; err != nil {
		return nil, fmt.Errorf("look up benchmark: %w", err)
	}
	switch {
	case len(symbols) == 1:
		return &symbols[0], nil
	case name != "":
		return nil, job.Permanent(fmt.Errorf("benchmark %q: %w", name, ErrUnknownBenchmark))
	}
	return nil, nil
}

// holding is a position used for valuation.
type holding struct {
	AssetSymbol string
	Quantity    float64
}

// dailyValues returns the portfolio's value on each of the last window+1 price
// dates of its holdings; see the package documentation.
func (s *Service) dailyValues(ctx context.Context, r job.Reporter, id string, window int) (risk.Series, error) {
	db := s.db.WithContext(ctx)
	var hs []holding
	if err := db.Model(&store.Holding{}).Select("asset_symbol, quantity").Where("portfolio_id = ?", id).
		Order("asset_symbol").Scan(&hs).Error; err != nil {
		return nil, fmt.Errorf("load holdings: %w", err)
	}
	if len(hs) == 0 {
		return nil, job.Permanent(fmt.Errorf("portfolio %s: %w", id, ErrNoHoldings))
	}
	symbols := make([]string, len(hs))
	index := make(map[string]int, len(hs))
	for i, h := range hs {
		symbols[i], index[h.AssetSymbol] = h.AssetSymbol, i
	}
	var end sql.NullTime
	if err := db.Raw(`SELECT max(l.d) FROM unnest(?::text[]) s(sym)
		CROSS JOIN LATERAL (SELECT max(p.date) AS d FROM prices p WHERE p.asset_symbol = s.sym) l`,
		pgArray[string](symbols)).Scan(&end).Error; err != nil {
		return nil, fmt.Errorf("latest price date: %w", err)
	}
	if !end.Valid {
		return nil, job.Permanent(fmt.Errorf("portfolio %s: no holding has a price (run refresh_all_prices): %w", id, ErrInsufficientData))
	}
	last := civil(end.Time.UTC())
	first := last.AddDate(0, 0, -(window*3/2 + 30))
	rows, err := db.Raw(`SELECT asset_symbol, date, close FROM prices
		WHERE asset_symbol = ANY(?) AND date BETWEEN ? AND ? ORDER BY date`,
		pgArray[string](symbols), first, last).Rows()
	if err != nil {
		return nil, fmt.Errorf("load closes: %w", err)
	}
	defer rows.Close()
	// Walk the closes in date order, carrying each holding's latest close
	// forward, and value the portfolio at the end of each date.
	closes := make([]float64, len(hs))
	priced := 0
	var values risk.Series
	var day time.Time
	flush := func() {
		if day.IsZero() || priced < len(hs) {
			return
		}
		var v float64
		for i, h := range hs {
			v += h.Quantity * closes[i]
		}
		values = append(values, risk.Point{Date: day, Value: v})
	}
	skipped := 0
	for rows.Next() {
		var sym string
		var d time.Time
		var c float64
		if err := rows.Scan(&sym, &d, &c); err != nil {
			return nil, fmt.Errorf("load closes: %w", err)
		}
		d = civil(d.UTC())
		if !d.Equal(day) {
			if !day.IsZero() && priced < len(hs) {
				skipped++
			}
			flush()
			day = d
		}
		i := index[sym]
		if closes[i] == 0 {
			priced++
		}
		closes[i] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load closes: %w", err)
	}
	flush()
	if len(values) > window+1 {
		values = slices.Clip(values[len(values)-window-1:])
	}
	if skipped > 0 {
		r.Log(job.Info, "dates left out before every holding had a close", map[string]any{"portfolio_id": id, "dates": skipped})
	}
	if len(values) < 2 {
		return nil, job.Permanent(fmt.Errorf("portfolio %s: %d daily values with every holding priced from %s to %s, need 2 (run refresh_all_prices): %w",
			id, len(values), first.Format(time.DateOnly), last.Format(time.DateOnly), ErrInsufficientData))
	}
	return values, nil
}

// closes returns a symbol's closes from from to to.
func (s *Service) closes(ctx context.Context, symbol string, from, to time.Time) (risk.Series, error) {
	var rows []struct {
		Date  time.Time
		Close float64
	}
	if err := s.db.WithContext(ctx).Raw(`SELECT date, close FROM prices WHERE asset_symbol = ? AND date BETWEEN ? AND ? ORDER BY date`,
		symbol, from, to).Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("load benchmark closes: %w", err)
	}
	out := make(risk.Series, len(rows))
	for i, row := range rows {
		out[i] = risk.Point{Date: civil(row.Date.UTC()), Value: row.Close}
	}
	return out, nil
}

// metricRow builds the risk_metrics row of computed metrics.
func metricRow(id string, window int, bench *string, rf float64, m risk.Metrics) store.RiskMetric {
	row := store.RiskMetric{
		PortfolioID: id, AsOf: civil(m.End.UTC()), WindowDays: window, BenchmarkSymbol: bench, RiskFreeRate: rf,
		StartDate: civil(m.Start.UTC()), Returns: m.Returns,
		AnnualisedReturn: m.AnnualisedReturn, AnnualisedVolatility: m.AnnualisedVolatility,
		Sharpe: m.Sharpe, Sortino: m.Sortino, MaxDrawdown: m.MaxDrawdown.Depth,
		VaR95: m.VaR95, CVaR95: m.CVaR95, Beta: m.Beta, Alpha: m.Alpha, TrackingError: m.TrackingError,
	}
	if m.MaxDrawdown.Depth > 0 {
		peak, trough := civil(m.MaxDrawdown.Peak.UTC()), civil(m.MaxDrawdown.Trough.UTC())
		row.MaxDrawdownPeak, row.MaxDrawdownTrough = &peak, &trough
	}
	return row
}

// upsertMetricsSQL stores one row of risk_metrics, replacing the row of the same
// portfolio, date, window and benchmark.
const upsertMetricsSQL = `
INSERT INTO risk_metrics (portfolio_id, as_of, window_days, benchmark_symbol, risk_free_rate, start_date, returns,
    annualised_return, annualised_volatility, sharpe, sortino, max_drawdown, max_drawdown_peak, max_drawdown_trough,
    var_95, cvar_95, beta, alpha, tracking_error, computed_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())
ON CONFLICT (portfolio_id, as_of, window_days, benchmark_symbol) DO UPDATE
SET risk_free_rate = excluded.risk_free_rate, start_date = excluded.start_date, returns = excluded.returns,
    annualised_return = excluded.annualised_return, annualised_volatility = excluded.annualised_volatility,
    sharpe = excluded.sharpe, sortino = excluded.sortino, max_drawdown = excluded.max_drawdown,
    max_drawdown_peak = excluded.max_drawdown_peak, max_drawdown_trough = excluded.max_drawdown_trough,
    var_95 = excluded.var_95, cvar_95 = excluded.cvar_95, beta = excluded.beta, alpha = excluded.alpha,
    tracking_error = excluded.tracking_error, computed_at = now()`

func upsertMetrics(tx *gorm.DB, m store.RiskMetric) error {
	err := tx.Exec(upsertMetricsSQL, m.PortfolioID, m.AsOf, m.WindowDays, m.BenchmarkSymbol, m.RiskFreeRate, m.StartDate,
		m.Returns, m.AnnualisedReturn, m.AnnualisedVolatility, m.Sharpe, m.Sortino, m.MaxDrawdown, m.MaxDrawdownPeak,
		m.MaxDrawdownTrough, m.VaR95, m.CVaR95, m.Beta, m.Alpha, m.TrackingError).Error
	if err != nil {
		return fmt.Errorf("store metrics: %w", err)
	}
	return nil
}

// metricsResult turns a stored row into the task result.
func metricsResult(m store.RiskMetric) MetricsResult {
	date := func(t *time.Time) *string {
		if t == nil {
			return nil
		}
		s := t.Format(time.DateOnly)
		return &s
	}
	return MetricsResult{
		PortfolioID: m.PortfolioID, AsOf: m.AsOf.Format(time.DateOnly), StartDate: m.StartDate.Format(time.DateOnly),
		WindowDays: m.WindowDays, Returns: m.Returns, Benchmark: m.BenchmarkSymbol, RiskFreeRate: m.RiskFreeRate,
		AnnualisedReturn: m.AnnualisedReturn, AnnualisedVolatility: m.AnnualisedVolatility,
		Sharpe: m.Sharpe, Sortino: m.Sortino, MaxDrawdown: m.MaxDrawdown,
		MaxDrawdownPeak: date(m.MaxDrawdownPeak), MaxDrawdownTrough: date(m.MaxDrawdownTrough),
		VaR95: m.VaR95, CVaR95: m.CVaR95, Beta: m.Beta, Alpha: m.Alpha, TrackingError: m.TrackingError,
	}
}

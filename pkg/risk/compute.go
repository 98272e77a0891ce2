package risk

import (
	"fmt"
	"math"
	"time"
)

// Confidence is the confidence level of the VaR and CVaR figures in Metrics.
const Confidence = 0.95

// Metrics holds every risk figure for one window. Pointer fields are nil when the
// figure is not available for the data (see the package documentation); no field
// is ever NaN or ±Inf.
type Metrics struct {
	// Start and End are the first and last dates of the window used.
	Start, End time.Time
	// Returns is the number of daily returns in the window.
	Returns int
	// AnnualisedReturn is the geometric annualised return.
	AnnualisedReturn float64
	// AnnualisedVolatility is the annualised sample standard deviation of returns.
	AnnualisedVolatility float64
	// Sharpe is the Sharpe ratio; nil on zero variance.
	Sharpe *float64
	// Sortino is the Sortino ratio; nil on zero variance or no downside.
	Sortino *float64
	// MaxDrawdown is the largest fall from a running peak.
	MaxDrawdown Drawdown
	// VaR95 is the one-day historical value at risk at 95 %, a loss fraction.
	VaR95 float64
	// CVaR95 is the one-day historical expected shortfall at 95 %, a loss fraction.
	CVaR95 float64
	// Beta is the beta to the benchmark; nil without a benchmark or on zero
	// benchmark variance.
	Beta *float64
	// Alpha is Jensen's annualised alpha; nil whenever Beta is nil.
	Alpha *float64
	// TrackingError is the annualised tracking error; nil without a benchmark.
	TrackingError *float64
}

// Validate returns ErrNonFinite naming the first field that is NaN or ±Inf, or
// nil when every figure is finite.
func (m Metrics) Validate() error {
	values := []struct {
		name string
		v    *float64
	}{
		{"annualised return", &m.AnnualisedReturn},
		{"annualised volatility", &m.AnnualisedVolatility},
		{"sharpe", m.Sharpe},
		{"sortino", m.Sortino},
		{"max drawdown", &m.MaxDrawdown.Depth},
		{"var95", &m.VaR95},
		{"cvar95", &m.CVaR95},
		{"beta", m.Beta},
		{"alpha", m.Alpha},
		{"tracking error", m.TrackingError},
	}
	for _, f := range values {
		if f.v != nil && (math.IsNaN(*f.v) || math.IsInf(*f.v, 0)) {
			return fmt.Errorf("risk: metrics: %s is %g: %w", f.name, *f.v, ErrNonFinite)
		}
	}
	return nil
}

// Compute returns all metrics for the portfolio series, with riskFree the annual
// risk-free rate as a fraction. The benchmark is optional: when it is empty, Beta,
// Alpha and TrackingError are nil; otherwise both series are first aligned on
// their common dates and every figure is computed on that window.
func Compute(portfolio, benchmark Series, riskFree float64) (Metrics, error) {
	if err := checkRate(riskFree); err != nil {
		return Metrics{}, fmt.Errorf("risk: compute: %w", err)
	}
	if len(benchmark) > 0 {
		var err error
		if portfolio, benchmark, err = Align(portfolio, benchmark); err != nil {
			return Metrics{}, fmt.Errorf("risk: compute: %w", err)
		}
	}
	m, err := compute(portfolio, benchmark, riskFree)
	if err != nil {
		return Metrics{}, fmt.Errorf("risk: compute: %w", err)
	}
	if err := m.Validate(); err != nil {
		return Metrics{}, err
	}
	return m, nil
}

// compute does the work of Compute on already aligned series.
func compute(portfolio, benchmark Series, rf float64) (Metrics, error) {
	rp, err := Returns(portfolio)
	if err != nil {
		return Metrics{}, fmt.Errorf("portfolio: %w", err)
	}
	m := Metrics{
		Start:   portfolio[0].Date,
		End:     portfolio[len(portfolio)-1].Date,
		Returns: len(rp),
	}
	if m.AnnualisedReturn, err = AnnualisedReturn(rp); err != nil {
		return Metrics{}, err
	}
	if m.AnnualisedVolatility, err = AnnualisedVolatility(rp); err != nil {
		return Metrics{}, err
	}
	if m.Sharpe, err = Sharpe(rp, rf); err != nil {
		return Metrics{}, err
	}
	if m.Sortino, err = Sortino(rp, rf); err != nil {
		return Metrics{}, err
	}
	if m.MaxDrawdown, err = MaxDrawdown(portfolio); err != nil {
		return Metrics{}, err
	}
	if m.VaR95, m.CVaR95, err = HistoricalVaR(rp, Confidence); err != nil {
		return Metrics{}, err
	}
	if len(benchmark) == 0 {
		return m, nil
	}
	rb, err := Returns(benchmark)
	if err != nil {
		return Metrics{}, fmt.Errorf("benchmark: %w", err)
	}
	if m.Beta, err = Beta(rp, rb); err != nil {
		return Metrics{}, err
	}
	if m.Alpha, err = Alpha(rp, rb, rf); err != nil {
		return Metrics{}, err
	}
	te, err := TrackingError(rp, rb)
	if err != nil {
		return Metrics{}, err
	}
	m.TrackingError = &te
	return m, nil
}

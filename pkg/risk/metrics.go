package risk

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// checkReturns validates daily returns: at least one, each finite and above -1.
func checkReturns(r []float64) error {
	if len(r) == 0 {
		return fmt.Errorf("no returns: %w", ErrTooFewPoints)
	}
	for i, x := range r {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("return %d: %w", i, ErrNonFinite)
		}
		if x <= -1 {
			return fmt.Errorf("return %d is %g: %w", i, x, ErrInvalidReturn)
		}
	}
	return nil
}

// checkPair validates two return slices that are paired by index.
func checkPair(p, b []float64) error {
	if len(p) != len(b) {
		return fmt.Errorf("%d portfolio and %d benchmark returns: %w", len(p), len(b), ErrLengthMismatch)
	}
	if err := checkReturns(p); err != nil {
		return fmt.Errorf("portfolio: %w", err)
	}
	if err := checkReturns(b); err != nil {
		return fmt.Errorf("benchmark: %w", err)
	}
	return nil
}

// checkRate validates an annual risk-free rate.
func checkRate(rf float64) error {
	if math.IsNaN(rf) || math.IsInf(rf, 0) {
		return fmt.Errorf("risk-free rate: %w", ErrNonFinite)
	}
	return nil
}

// finite returns x, or ErrNonFinite naming what when x is NaN or ±Inf.
func finite(what string, x float64) (float64, error) {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, fmt.Errorf("%s: %w", what, ErrNonFinite)
	}
	return x, nil
}

// mean returns the arithmetic mean of a non-empty slice.
func mean(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// sampleCov returns the sample covariance (divisor n-1) of two equally long
// slices, or 0 when they hold fewer than two values.
func sampleCov(x, y []float64) float64 {
	n := len(x)
	if n < 2 {
		return 0
	}
	mx, my := mean(x), mean(y)
	var s float64
	for i := range x {
		s += (x[i] - mx) * (y[i] - my)
	}
	return s / float64(n-1)
}

// sampleStd returns the sample standard deviation (divisor n-1), or 0 for fewer
// than two values.
func sampleStd(x []float64) float64 {
	return math.Sqrt(sampleCov(x, x))
}

// annualise turns daily returns into the geometric annualised return
// (∏(1+r_i))^(252/n) - 1, computed through logarithms for accuracy.
func annualise(r []float64) float64 {
	var logGrowth float64
	for _, x := range r {
		logGrowth += math.Log1p(x)
	}
	return math.Expm1(logGrowth * TradingDays / float64(len(r)))
}

// AnnualisedReturn returns the geometric annualised return of daily returns,
// (∏(1+r_i))^(252/n) - 1, which equals (V_end/V_start)^(252/n) - 1.
func AnnualisedReturn(returns []float64) (float64, error) {
	if err := checkReturns(returns); err != nil {
		return 0, fmt.Errorf("annualised return: %w", err)
	}
	return finite("annualised return", annualise(returns))
}

// AnnualisedVolatility returns the sample standard deviation of daily returns
// times √252; a single return has volatility 0.
func AnnualisedVolatility(returns []float64) (float64, error) {
	if err := checkReturns(returns); err != nil {
		return 0, fmt.Errorf("annualised volatility: %w", err)
	}
	return finite("annualised volatility", sampleStd(returns)*math.Sqrt(TradingDays))
}

// Sharpe returns (annualised return - riskFree) / annualised volatility, or nil
// when the returns have zero variance. riskFree is an annual rate.
func Sharpe(returns []float64, riskFree float64) (*float64, error) {
	if err := checkReturns(returns); err != nil {
		return nil, fmt.Errorf("sharpe: %w", err)
	}
	if err := checkRate(riskFree); err != nil {
		return nil, fmt.Errorf("sharpe: %w", err)
	}
	sd := sampleStd(returns)
	if sd <= ZeroTolerance {
		return nil, nil
	}
	v, err := finite("sharpe", (annualise(returns)-riskFree)/(sd*math.Sqrt(TradingDays)))
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// Sortino returns (annualised return - riskFree) / annualised downside deviation,
// where the downside deviation is √(Σ min(0, r_i - riskFree/252)² / n) × √252. It
// is nil when the returns have zero variance or none falls below the daily
// risk-free rate.
func Sortino(returns []float64, riskFree float64) (*float64, error) {
	if err := checkReturns(returns); err != nil {
		return nil, fmt.Errorf("sortino: %w", err)
	}
	if err := checkRate(riskFree); err != nil {
		return nil, fmt.Errorf("sortino: %w", err)
	}
	if sampleStd(returns) <= ZeroTolerance {
		return nil, nil
	}
	target := riskFree / TradingDays
	var sq float64
	for _, x := range returns {
		if d := x - target; d < 0 {
			sq += d * d
		}
	}
	dd := math.Sqrt(sq / float64(len(returns)))
	if dd <= ZeroTolerance {
		return nil, nil
	}
	v, err := finite("sortino", (annualise(returns)-riskFree)/(dd*math.Sqrt(TradingDays)))
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// Drawdown describes the largest fall from a running peak.
type Drawdown struct {
	// Depth is (peak - trough) / peak, a fraction in [0, 1] (a fall of nearly
	// 100 % may round to 1); 0 when the series never falls.
	Depth float64
	// Peak is the date of the peak; zero when Depth is 0.
	Peak time.Time
	// Trough is the date of the trough; zero when Depth is 0.
	Trough time.Time
}

// MaxDrawdown returns the maximum drawdown of s. The peak is the first date the
// running maximum was reached; on equal depths the earliest trough wins.
func MaxDrawdown(s Series) (Drawdown, error) {
	if err := s.Validate(); err != nil {
		return Drawdown{}, fmt.Errorf("max drawdown: %w", err)
	}
	var dd Drawdown
	peak := s[0]
	for _, p := range s[1:] {
		if p.Value > peak.Value {
			peak = p
			continue
		}
		if depth := (peak.Value - p.Value) / peak.Value; depth > dd.Depth {
			dd = Drawdown{Depth: depth, Peak: peak.Date, Trough: p.Date}
		}
	}
	return dd, nil
}

// HistoricalVaR returns the one-day historical value at risk and conditional
// value at risk (expected shortfall) at the given confidence, for example 0.95.
// With the n returns sorted ascending and k = ⌈n (1-confidence)⌉ (at least 1),
// VaR is minus the k-th smallest return and CVaR minus the mean of the k smallest;
// both are loss fractions, floored at 0.
func HistoricalVaR(returns []float64, confidence float64) (valueAtRisk, conditional float64, err error) {
	if err := checkReturns(returns); err != nil {
		return 0, 0, fmt.Errorf("historical var: %w", err)
	}
	if !(confidence > 0 && confidence < 1) {
		return 0, 0, fmt.Errorf("historical var: confidence %g: %w", confidence, ErrInvalidConfidence)
	}
	sorted := append([]float64(nil), returns...)
	sort.Float64s(sorted)
	// The small epsilon keeps ⌈20 × 0.05⌉ at 1 despite 0.05 not being exact in
	// binary floating point.
	k := int(math.Ceil(float64(len(sorted))*(1-confidence) - 1e-9))
	k = max(1, min(k, len(sorted)))
	valueAtRisk = max(0, -sorted[k-1])
	conditional = max(0, -mean(sorted[:k]))
	return valueAtRisk, conditional, nil
}

// Beta returns the sample covariance of portfolio and benchmark daily returns
// divided by the sample variance of the benchmark's, or nil when there is a
// single return or the benchmark's returns have zero variance.
func Beta(portfolio, benchmark []float64) (*float64, error) {
	if err := checkPair(portfolio, benchmark); err != nil {
		return nil, fmt.Errorf("beta: %w", err)
	}
	if sampleStd(benchmark) <= ZeroTolerance {
		return nil, nil
	}
	v, err := finite("beta", sampleCov(portfolio, benchmark)/sampleCov(benchmark, benchmark))
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// Alpha returns Jensen's alpha on annualised returns,
// R_p - (riskFree + β (R_b - riskFree)), or nil when Beta is nil.
func Alpha(portfolio, benchmark []float64, riskFree float64) (*float64, error) {
	if err := checkRate(riskFree); err != nil {
		return nil, fmt.Errorf("alpha: %w", err)
	}
	beta, err := Beta(portfolio, benchmark)
	if err != nil || beta == nil {
		return nil, err
	}
	v, err := finite("alpha", annualise(portfolio)-(riskFree+*beta*(annualise(benchmark)-riskFree)))
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// TrackingError returns the sample standard deviation of the daily active
// returns (portfolio - benchmark) times √252; a single return gives 0.
func TrackingError(portfolio, benchmark []float64) (float64, error) {
	if err := checkPair(portfolio, benchmark); err != nil {
		return 0, fmt.Errorf("tracking error: %w", err)
	}
	active := make([]float64, len(portfolio))
	for i := range portfolio {
		active[i] = portfolio[i] - benchmark[i]
	}
	return finite("tracking error", sampleStd(active)*math.Sqrt(TradingDays))
}

// Package risk computes portfolio risk metrics from daily value series.
//
// It is pure arithmetic: no database, no network. The data-refresh tasks load a
// portfolio's daily values (and optionally a benchmark's closes), call Compute and
// store the resulting Metrics.
//
// # Conventions
//
// Inputs. A Series is a list of (date, value) points in strictly ascending
// calendar-date order, one point per day, every value finite and positive. Only the
// calendar date of each point matters: a point's date is its year, month and day in
// UTC. Days without a point (weekends, holidays) are simply absent; the metrics
// treat consecutive points as consecutive trading days.
//
// Returns. Daily simple returns r_i = V_i / V_{i-1} - 1, so n+1 points give n
// returns. At least two points are needed (ErrTooFewPoints).
//
// Alignment. When a benchmark is given, Align keeps only the dates present in both
// series (an inner join); a date missing from either series is dropped from both,
// so the return that spans the gap covers more than one day. Every figure in
// Metrics, including the portfolio-only ones, is then computed on the aligned
// window, so all figures describe the same dates.
//
// Annualisation. A year has TradingDays (252) trading days.
//   - Annualised return is geometric: (V_end / V_start)^(252/n) - 1, where n is the
//     number of daily returns; it equals (∏(1+r_i))^(252/n) - 1.
//   - Annualised volatility is the sample standard deviation (divisor n-1) of the
//     daily returns times √252. With a single return there is no dispersion to
//     measure and volatility is reported as 0.
//   - The risk-free rate rf is an annual rate as a fraction (0.02 is 2 %); its daily
//     equivalent is rf/252.
//
// Ratios.
//   - Sharpe = (annualised return - rf) / annualised volatility.
//   - Sortino = (annualised return - rf) / annualised downside deviation, where the
//     downside deviation is √(Σ min(0, r_i - rf/252)² / n) × √252, summed over all n
//     returns (returns above the daily risk-free rate contribute zero).
//   - Beta = sample covariance(portfolio, benchmark) / sample variance(benchmark),
//     on daily returns.
//   - Alpha is Jensen's alpha on annualised returns:
//     R_p - (rf + β (R_b - rf)), with R_p and R_b the geometric annualised returns.
//   - Tracking error is the sample standard deviation of the daily active returns
//     (r_p - r_b) times √252.
//
// Drawdown. The maximum drawdown is the largest fall from a running peak,
// max_t (peak_t - V_t) / peak_t, reported as a positive fraction together with the
// date of the peak and of the trough. The peak is the first date the running
// maximum was reached; on ties in depth the earliest trough wins. A series that
// never falls has a drawdown of 0 and zero dates.
//
// Value at risk. Historical one-day VaR at confidence c (95 % in Compute) is the
// empirical lower (1-c) quantile of the daily returns, without interpolation: sort
// the n returns ascending and take the k-th smallest, k = ⌈n (1-c)⌉ (at least 1).
// CVaR (expected shortfall) is the mean of those k smallest returns. Both are
// reported as positive loss fractions (0.03 is a 3 % loss); when the quantile is a
// gain the loss is reported as 0.
//
// Undefined figures. A figure that does not exist for the data is a nil pointer,
// never NaN or ±Inf:
//   - Sharpe and Sortino are nil when the portfolio's daily returns have zero
//     variance (sample standard deviation at most ZeroTolerance), which includes
//     a window of a single return;
//   - Sortino is also nil when no return falls below the daily risk-free rate
//     (downside deviation at most ZeroTolerance);
//   - Beta and Alpha are nil when the benchmark's returns have zero variance or
//     there is a single return;
//   - Beta, Alpha and TrackingError are nil when no benchmark is given.
//
// A computation whose result would overflow (for instance annualising an extreme
// move over a few days) fails with ErrNonFinite rather than returning ±Inf; see
// Metrics.Validate.
package risk

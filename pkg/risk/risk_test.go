package risk

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tol is the absolute tolerance for figures worked out by hand.
const tol = 1e-9

// d returns UTC midnight of the given day in January 2024.
func d(day int) time.Time {
	return time.Date(2024, time.January, day, 0, 0, 0, 0, time.UTC)
}

// weekdays returns a series of values on consecutive weekdays from 2 January 2024.
func weekdays(values ...float64) Series {
	s := make(Series, len(values))
	t := d(2)
	for i, v := range values {
		s[i] = Point{Date: t, Value: v}
		t = t.AddDate(0, 0, 1)
		for t.Weekday() == time.Saturday || t.Weekday() == time.Sunday {
			t = t.AddDate(0, 0, 1)
		}
	}
	return s
}

func ptr(v float64) *float64 { return &v }

// The hand-worked portfolio: daily returns +1 %, -1 %, -1 %, +2 %, -0.5 % from 100.
//
//	100 × 1.01 = 101, × 0.99 = 99.99, × 0.99 = 98.9901, × 1.02 = 100.969902,
//	× 0.995 = 100.46505249 (2 Jan … 9 Jan 2024, skipping the weekend).
var handPortfolio = weekdays(100, 101, 99.99, 98.9901, 100.969902, 100.46505249)

// The hand-worked benchmark: daily returns +0.5 %, -0.5 %, -0.5 %, +1 %, 0 %.
//
//	100 × 1.005 = 100.5, × 0.995 = 99.9975, × 0.995 = 99.4975125,
//	× 1.01 = 100.492487625, × 1 = 100.492487625.
var handBenchmark = weekdays(100, 100.5, 99.9975, 99.4975125, 100.492487625, 100.492487625)

func TestComputeHandWorked(t *testing.T) {
	t.Parallel()

	// Figures shared by every case, n = 5 returns:
	//
	// Annualised return: V_end/V_start = 1.0046505249, so
	//   1.0046505249^(252/5) - 1 = 1.0046505249^50.4 - 1 = 0.2634462783116.
	// Volatility: mean r = (0.01 - 0.01 - 0.01 + 0.02 - 0.005)/5 = 0.001;
	//   deviations 0.009, -0.011, -0.011, 0.019, -0.006;
	//   squares 0.000081 + 0.000121 + 0.000121 + 0.000361 + 0.000036 = 0.00072;
	//   sample variance 0.00072/4 = 0.00018; × 252 = 0.04536; √0.04536 = 0.2129788721916.
	// Max drawdown: running peak 101 (3 Jan), lowest after it 98.9901 (5 Jan):
	//   (101 - 98.9901)/101 = 2.0099/101 = 0.0199 (later values stay below 101).
	// VaR/CVaR 95 %: k = ⌈5 × 0.05⌉ = ⌈0.25⌉ = 1, the worst return -0.01, so both 0.01.
	const (
		annReturn = 0.2634462783116 // 1.0046505249^50.4 - 1
		annVol    = 0.2129788721916 // √(0.00018 × 252)
	)

	// Benchmark figures:
	// Annualised return: 1.00492487625^50.4 - 1 = 0.2809532807685.
	// Beta: benchmark mean (0.005 - 0.005 - 0.005 + 0.01 + 0)/5 = 0.001;
	//   deviations 0.004, -0.006, -0.006, 0.009, -0.001.
	//   Σ dev_p·dev_b = 0.000036 + 0.000066 + 0.000066 + 0.000171 + 0.000006 = 0.000345;
	//   Σ dev_b² = 0.000016 + 0.000036 + 0.000036 + 0.000081 + 0.000001 = 0.00017;
	//   beta = (0.000345/4)/(0.00017/4) = 0.000345/0.00017 = 2.0294117647059.
	// Tracking error: active returns 0.005, -0.005, -0.005, 0.01, -0.005, mean 0;
	//   Σ squares = 4 × 0.000025 + 0.0001 = 0.0002; sample variance 0.00005;
	//   × 252 = 0.0126; √0.0126 = 0.1122497216032.
	const (
		benchReturn = 0.2809532807685 // 1.00492487625^50.4 - 1
		beta        = 0.000345 / 0.00017
		trackErr    = 0.1122497216032 // √(0.00005 × 252)
	)

	tests := []struct {
		name      string
		benchmark Series
		rf        float64
		want      Metrics
	}{
		{
			name: "no benchmark, rf 0",
			rf:   0,
			want: Metrics{
				AnnualisedReturn:     annReturn,
				AnnualisedVolatility: annVol,
				// Sharpe: 0.2634462783116 / 0.2129788721916 = 1.2369596833747.
				Sharpe: ptr(1.2369596833747),
				// Downside vs 0: -0.01, -0.01, -0.005 → 0.0001 + 0.0001 + 0.000025 = 0.000225;
				// /5 = 0.000045; × 252 = 0.01134; √0.01134 = 0.1064894360958.
				// Sortino: 0.2634462783116 / 0.1064894360958 = 2.4739193667495.
				Sortino:     ptr(2.4739193667495),
				MaxDrawdown: Drawdown{Depth: 0.0199, Peak: d(3), Trough: d(5)},
				VaR95:       0.01,
				CVaR95:      0.01,
			},
		},
		{
			name: "no benchmark, rf 2.52 %",
			rf:   0.0252,
			want: Metrics{
				AnnualisedReturn:     annReturn,
				AnnualisedVolatility: annVol,
				// Sharpe: (0.2634462783116 - 0.0252) / 0.2129788721916 = 1.1186380877127.
				Sharpe: ptr(1.1186380877127),
				// Daily rf = 0.0252/252 = 0.0001. Shortfalls below it:
				// -0.0101, -0.0101, -0.0051 → 0.00010201 × 2 + 0.00002601 = 0.00023003;
				// /5 = 0.000046006; × 252 = 0.011593512; √ = 0.1076731721461.
				// Sortino: (0.2634462783116 - 0.0252) / 0.1076731721461 = 2.2126800349894.
				Sortino:     ptr(2.2126800349894),
				MaxDrawdown: Drawdown{Depth: 0.0199, Peak: d(3), Trough: d(5)},
				VaR95:       0.01,
				CVaR95:      0.01,
			},
		},
		{
			name:      "benchmark, rf 0",
			benchmark: handBenchmark,
			rf:        0,
			want: Metrics{
				AnnualisedReturn:     annReturn,
				AnnualisedVolatility: annVol,
				Sharpe:               ptr(1.2369596833747),
				Sortino:              ptr(2.4739193667495),
				MaxDrawdown:          Drawdown{Depth: 0.0199, Peak: d(3), Trough: d(5)},
				VaR95:                0.01,
				CVaR95:               0.01,
				Beta:                 ptr(beta),
				// Alpha: 0.2634462783116 - 2.0294117647059 × 0.2809532807685
				//      = 0.2634462783116 - 0.5701698933242 = -0.3067236150126.
				Alpha:         ptr(-0.3067236150126),
				TrackingError: ptr(trackErr),
			},
		},
		{
			name:      "benchmark, rf 2.52 %",
			benchmark: handBenchmark,
			rf:        0.0252,
			want: Metrics{
				AnnualisedReturn:     annReturn,
				AnnualisedVolatility: annVol,
				Sharpe:               ptr(1.1186380877127),
				Sortino:              ptr(2.2126800349894),
				MaxDrawdown:          Drawdown{Depth: 0.0199, Peak: d(3), Trough: d(5)},
				VaR95:                0.01,
				CVaR95:               0.01,
				Beta:                 ptr(beta),
				// Alpha: 0.2634462783116 - (0.0252 + 2.0294117647059 × (0.2809532807685 - 0.0252))
				//      = 0.2634462783116 - (0.0252 + 0.5190290874301) = -0.2807824385420.
				Alpha:         ptr(-0.2807824385420),
				TrackingError: ptr(trackErr),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Compute(handPortfolio, tt.benchmark, tt.rf)
			require.NoError(t, err)
			require.Equal(t, d(2), got.Start)
			require.Equal(t, d(9), got.End)
			require.Equal(t, 5, got.Returns)
			requireMetrics(t, tt.want, got)
		})
	}
}

// requireMetrics compares the figures of two Metrics within tol.
func requireMetrics(t *testing.T, want, got Metrics) {
	t.Helper()
	require.InDelta(t, want.AnnualisedReturn, got.AnnualisedReturn, tol, "annualised return")
	require.InDelta(t, want.AnnualisedVolatility, got.AnnualisedVolatility, tol, "annualised volatility")
	requirePtr(t, "sharpe", want.Sharpe, got.Sharpe)
	requirePtr(t, "sortino", want.Sortino, got.Sortino)
	require.InDelta(t, want.MaxDrawdown.Depth, got.MaxDrawdown.Depth, tol, "max drawdown")
	require.Equal(t, want.MaxDrawdown.Peak, got.MaxDrawdown.Peak, "drawdown peak")
	require.Equal(t, want.MaxDrawdown.Trough, got.MaxDrawdown.Trough, "drawdown trough")
	require.InDelta(t, want.VaR95, got.VaR95, tol, "var95")
	require.InDelta(t, want.CVaR95, got.CVaR95, tol, "cvar95")
	requirePtr(t, "beta", want.Beta, got.Beta)
	requirePtr(t, "alpha", want.Alpha, got.Alpha)
	requirePtr(t, "tracking error", want.TrackingError, got.TrackingError)
}

func requirePtr(t *testing.T, name string, want, got *float64) {
	t.Helper()
	if want == nil {
		require.Nil(t, got, "%s should be nil", name)
		return
	}
	require.NotNil(t, got, "%s should be set", name)
	require.InDelta(t, *want, *got, tol, name)
}

func TestReturns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		series  Series
		want    []float64
		wantErr error
	}{
		// 101/100 - 1 = 0.01; 99.99/101 - 1 = -0.01.
		{name: "two returns", series: weekdays(100, 101, 99.99), want: []float64{0.01, -0.01}},
		// 50/100 - 1 = -0.5; 100/50 - 1 = 1.
		{name: "halve then double", series: weekdays(100, 50, 100), want: []float64{-0.5, 1}},
		{name: "empty", series: nil, wantErr: ErrTooFewPoints},
		{name: "one point", series: weekdays(100), wantErr: ErrTooFewPoints},
		{name: "zero price", series: weekdays(100, 0, 100), wantErr: ErrNonPositive},
		{name: "negative price", series: weekdays(-1, 100), wantErr: ErrNonPositive},
		{name: "NaN price", series: weekdays(100, math.NaN()), wantErr: ErrNonFinite},
		{name: "Inf price", series: weekdays(100, math.Inf(1)), wantErr: ErrNonFinite},
		{name: "overflowing return", series: weekdays(1e-300, 1e300), wantErr: ErrNonFinite},
		{
			name:    "descending dates",
			series:  Series{{Date: d(3), Value: 1}, {Date: d(2), Value: 1}},
			wantErr: ErrNotAscending,
		},
		{
			name:    "same calendar day twice",
			series:  Series{{Date: d(2), Value: 1}, {Date: d(2).Add(5 * time.Hour), Value: 1}},
			wantErr: ErrNotAscending,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Returns(tt.series)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.InDeltaSlice(t, tt.want, got, tol)
		})
	}
}

func TestAlign(t *testing.T) {
	t.Parallel()
	p := func(day int, v float64) Point { return Point{Date: d(day), Value: v} }
	tests := []struct {
		name         string
		a, b         Series
		wantA, wantB Series
		wantErr      error
	}{
		{
			name:  "identical dates",
			a:     Series{p(2, 1), p(3, 2)},
			b:     Series{p(2, 10), p(3, 20)},
			wantA: Series{p(2, 1), p(3, 2)},
			wantB: Series{p(2, 10), p(3, 20)},
		},
		{
			// 3 Jan missing from b, 4 Jan missing from a, 8 Jan only in b.
			name:  "gaps on both sides",
			a:     Series{p(2, 1), p(3, 2), p(5, 3), p(9, 4)},
			b:     Series{p(2, 10), p(4, 20), p(5, 30), p(8, 40), p(9, 50)},
			wantA: Series{p(2, 1), p(5, 3), p(9, 4)},
			wantB: Series{p(2, 10), p(5, 30), p(9, 50)},
		},
		{
			// Only the calendar date counts, not the time of day.
			name:  "different times of day",
			a:     Series{p(2, 1), p(3, 2)},
			b:     Series{{Date: d(2).Add(16 * time.Hour), Value: 10}, {Date: d(3).Add(time.Hour), Value: 20}},
			wantA: Series{p(2, 1), p(3, 2)},
			wantB: Series{{Date: d(2).Add(16 * time.Hour), Value: 10}, {Date: d(3).Add(time.Hour), Value: 20}},
		},
		{
			name:    "one common date",
			a:       Series{p(2, 1), p(3, 2)},
			b:       Series{p(3, 1), p(4, 2)},
			wantErr: ErrTooFewPoints,
		},
		{
			name:    "invalid second series",
			a:       Series{p(2, 1), p(3, 2)},
			b:       Series{p(2, 1), p(3, -2)},
			wantErr: ErrNonPositive,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gotA, gotB, err := Align(tt.a, tt.b)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantA, gotA)
			require.Equal(t, tt.wantB, gotB)
		})
	}
}

func TestComputeAlignsBenchmark(t *testing.T) {
	t.Parallel()
	// The benchmark lacks 4 Jan and has an extra 6 Jan (a Saturday); the portfolio
	// lacks nothing. Common dates: 2, 3, 5 Jan.
	//   Portfolio 100 → 110 → (skip 4 Jan: 99) → 121: returns 0.1, 0.1.
	//   Benchmark 200 → 210 → 231: returns 0.05, 0.1.
	// Beta: benchmark mean 0.075, deviations -0.025, 0.025; portfolio deviations 0, 0
	//   → covariance 0, beta 0. Alpha = R_p - 0 × R_b = R_p = 1.21^(252/2) - 1.
	portfolio := Series{{d(2), 100}, {d(3), 110}, {d(4), 99}, {d(5), 121}}
	benchmark := Series{{d(2), 200}, {d(3), 210}, {d(5), 231}, {d(6), 250}}
	got, err := Compute(portfolio, benchmark, 0)
	require.NoError(t, err)
	require.Equal(t, 2, got.Returns)
	require.Equal(t, d(5), got.End)
	require.Zero(t, got.MaxDrawdown.Depth, "4 Jan is dropped, so there is no fall")
	require.Nil(t, got.Sharpe, "two equal returns have zero variance")
	require.NotNil(t, got.Beta)
	require.InDelta(t, 0, *got.Beta, tol)
	require.NotNil(t, got.Alpha)
	require.InDelta(t, math.Pow(1.21, 126)-1, *got.Alpha, 1e-9*math.Pow(1.21, 126))
	// Active returns 0.05, 0: sample variance (0.025² × 2)/1 = 0.00125; × 252 = 0.315.
	require.NotNil(t, got.TrackingError)
	require.InDelta(t, math.Sqrt(0.315), *got.TrackingError, tol)
}

func TestMaxDrawdown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		series Series
		want   Drawdown
	}{
		{name: "rising", series: weekdays(1, 2, 3, 4), want: Drawdown{}},
		{name: "flat", series: weekdays(5, 5, 5), want: Drawdown{}},
		// Peak 100 on 2 Jan, trough 50 on 3 Jan: (100-50)/100 = 0.5.
		{name: "single fall", series: weekdays(100, 50, 75), want: Drawdown{0.5, d(2), d(3)}},
		// Falls: 100→80 = 0.2, then new peak 120→90 = 0.25 (4 Jan peak, 5 Jan trough).
		{name: "second fall deeper", series: weekdays(100, 80, 120, 90), want: Drawdown{0.25, d(4), d(5)}},
		// Falls: 100→50 = 0.5 then 200→100 = 0.5: equal depth, earliest trough wins.
		{name: "tie keeps first", series: weekdays(100, 50, 200, 100), want: Drawdown{0.5, d(2), d(3)}},
		// Peak 100 reached on 2 Jan and again on 3 Jan: the first date is the peak.
		{name: "repeated peak", series: weekdays(100, 100, 60), want: Drawdown{0.4, d(2), d(4)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := MaxDrawdown(tt.series)
			require.NoError(t, err)
			require.InDelta(t, tt.want.Depth, got.Depth, tol)
			require.Equal(t, tt.want.Peak, got.Peak)
			require.Equal(t, tt.want.Trough, got.Trough)
		})
	}
}

func TestHistoricalVaR(t *testing.T) {
	t.Parallel()
	// losses returns n returns where return i (1-based) is -0.01 × i, so the k
	// smallest are -0.01 n, …, -0.01 (n-k+1).
	losses := func(n int) []float64 {
		r := make([]float64, n)
		for i := range r {
			r[i] = -0.01 * float64(i+1)
		}
		return r
	}
	tests := []struct {
		name       string
		returns    []float64
		confidence float64
		wantVaR    float64
		wantCVaR   float64
		wantErr    error
	}{
		// k = ⌈20 × 0.05⌉ = 1: VaR = CVaR = the worst, 0.20.
		{name: "n 20", returns: losses(20), confidence: 0.95, wantVaR: 0.20, wantCVaR: 0.20},
		// k = ⌈21 × 0.05⌉ = ⌈1.05⌉ = 2: VaR = 0.20 (second worst), CVaR = (0.21 + 0.20)/2 = 0.205.
		{name: "n 21", returns: losses(21), confidence: 0.95, wantVaR: 0.20, wantCVaR: 0.205},
		// k = ⌈40 × 0.05⌉ = 2: VaR = 0.39, CVaR = (0.40 + 0.39)/2 = 0.395.
		{name: "n 40", returns: losses(40), confidence: 0.95, wantVaR: 0.39, wantCVaR: 0.395},
		// k = ⌈41 × 0.05⌉ = ⌈2.05⌉ = 3: VaR = 0.39, CVaR = (0.41 + 0.40 + 0.39)/3 = 0.40.
		{name: "n 41", returns: losses(41), confidence: 0.95, wantVaR: 0.39, wantCVaR: 0.40},
		// k = ⌈10 × 0.1⌉ = 1 at 90 %: the worst, 0.10.
		{name: "90 %", returns: losses(10), confidence: 0.90, wantVaR: 0.10, wantCVaR: 0.10},
		// Unsorted input: k = 1 → worst is -0.03.
		{name: "unsorted", returns: []float64{0.02, -0.03, 0.01, -0.01}, confidence: 0.95, wantVaR: 0.03, wantCVaR: 0.03},
		// All gains: the 5 % quantile is +0.01, a gain, so the loss is floored at 0.
		{name: "all gains", returns: []float64{0.01, 0.02, 0.03}, confidence: 0.95, wantVaR: 0, wantCVaR: 0},
		{name: "no returns", returns: nil, confidence: 0.95, wantErr: ErrTooFewPoints},
		{name: "confidence 1", returns: losses(3), confidence: 1, wantErr: ErrInvalidConfidence},
		{name: "confidence NaN", returns: losses(3), confidence: math.NaN(), wantErr: ErrInvalidConfidence},
		{name: "return -100 %", returns: []float64{-1}, confidence: 0.95, wantErr: ErrInvalidReturn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, cv, err := HistoricalVaR(tt.returns, tt.confidence)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.InDelta(t, tt.wantVaR, v, tol, "var")
			require.InDelta(t, tt.wantCVaR, cv, tol, "cvar")
		})
	}
}

func TestComputeEdgeCases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		portfolio Series
		benchmark Series
		rf        float64
		wantErr   error
		check     func(t *testing.T, m Metrics)
	}{
		{name: "empty", portfolio: nil, wantErr: ErrTooFewPoints},
		{name: "one price", portfolio: weekdays(100), wantErr: ErrTooFewPoints},
		{name: "one price with benchmark", portfolio: weekdays(100), benchmark: weekdays(1, 2), wantErr: ErrTooFewPoints},
		{name: "zero price", portfolio: weekdays(100, 0), wantErr: ErrNonPositive},
		{name: "negative benchmark", portfolio: weekdays(1, 2), benchmark: weekdays(1, -2), wantErr: ErrNonPositive},
		{name: "NaN risk-free", portfolio: weekdays(1, 2), rf: math.NaN(), wantErr: ErrNonFinite},
		// 1e-4 → 1e4 in four returns: (1e8)^(252/4) = 1e504 overflows float64.
		{name: "annualising overflows", portfolio: weekdays(1e-4, 1e-2, 1, 1e2, 1e4), wantErr: ErrNonFinite},
		{
			name:      "no common dates",
			portfolio: weekdays(1, 2, 3),
			benchmark: Series{{d(20), 1}, {d(21), 2}},
			wantErr:   ErrTooFewPoints,
		},
		{
			name:      "constant series",
			portfolio: weekdays(100, 100, 100, 100),
			benchmark: weekdays(50, 50, 50, 50),
			check: func(t *testing.T, m Metrics) {
				require.Zero(t, m.AnnualisedReturn)
				require.Zero(t, m.AnnualisedVolatility)
				require.Nil(t, m.Sharpe, "zero variance")
				require.Nil(t, m.Sortino, "zero variance")
				require.Nil(t, m.Beta, "zero benchmark variance")
				require.Nil(t, m.Alpha, "no beta")
				require.NotNil(t, m.TrackingError)
				require.Zero(t, *m.TrackingError)
				require.Zero(t, m.VaR95)
				require.Zero(t, m.CVaR95)
				require.Equal(t, Drawdown{}, m.MaxDrawdown)
			},
		},
		{
			// Constant +10 % returns: rounding leaves a spread near 1e-17, still "zero".
			name:      "constant growth",
			portfolio: weekdays(100, 110, 121, 133.1, 146.41),
			check: func(t *testing.T, m Metrics) {
				require.Nil(t, m.Sharpe)
				require.Nil(t, m.Sortino)
			},
		},
		{
			// Returns 0.1, 0.2: none below 0, so Sortino has no downside; Sharpe exists.
			name:      "no downside",
			portfolio: weekdays(100, 110, 132),
			check: func(t *testing.T, m Metrics) {
				require.NotNil(t, m.Sharpe)
				require.Nil(t, m.Sortino)
			},
		},
		{
			// Returns 0.001, 0.0005, both gains, but rf 25.2 % is 0.001 a day, so
			// 0.0005 falls short; annualised (1.001 × 1.0005)^126 - 1 ≈ 0.208 < 0.252.
			name:      "downside only against risk-free",
			portfolio: weekdays(100, 100.1, 100.15005),
			rf:        0.252,
			check: func(t *testing.T, m Metrics) {
				require.NotNil(t, m.Sortino)
				require.Less(t, *m.Sortino, 0.0)
			},
		},
		{
			// Two prices, one return 0.1: volatility 0 by convention, Sharpe/Sortino
			// nil; with a benchmark, beta needs two returns so it is nil too.
			name:      "two prices",
			portfolio: weekdays(100, 110),
			benchmark: weekdays(100, 90),
			check: func(t *testing.T, m Metrics) {
				require.InDelta(t, math.Pow(1.1, 252)-1, m.AnnualisedReturn, 1e-9*math.Pow(1.1, 252))
				require.Zero(t, m.AnnualisedVolatility)
				require.Nil(t, m.Sharpe)
				require.Nil(t, m.Sortino)
				require.Nil(t, m.Beta)
				require.Nil(t, m.Alpha)
				require.NotNil(t, m.TrackingError)
				require.Zero(t, *m.TrackingError)
				// The single return is a gain: the 5 % quantile is +0.1, loss 0.
				require.Zero(t, m.VaR95)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := Compute(tt.portfolio, tt.benchmark, tt.rf)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Equal(t, Metrics{}, m)
				return
			}
			require.NoError(t, err)
			require.NoError(t, m.Validate())
			tt.check(t, m)
		})
	}
}

func TestMetricsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		m       Metrics
		wantErr bool
	}{
		{name: "zero value", m: Metrics{}},
		{name: "nil pointers are fine", m: Metrics{AnnualisedReturn: 0.1}},
		{name: "NaN return", m: Metrics{AnnualisedReturn: math.NaN()}, wantErr: true},
		{name: "Inf var", m: Metrics{VaR95: math.Inf(1)}, wantErr: true},
		{name: "NaN sharpe", m: Metrics{Sharpe: ptr(math.NaN())}, wantErr: true},
		{name: "-Inf tracking error", m: Metrics{TrackingError: ptr(math.Inf(-1))}, wantErr: true},
		{name: "NaN drawdown", m: Metrics{MaxDrawdown: Drawdown{Depth: math.NaN()}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.m.Validate()
			if tt.wantErr {
				require.ErrorIs(t, err, ErrNonFinite)
				return
			}
			require.NoError(t, err)
		})
	}
}

// randomSeries returns n weekday values from a random walk whose daily log-return
// scale is sigma, with occasional flat stretches.
func randomSeries(rng *rand.Rand, n int, sigma float64) Series {
	s := make(Series, n)
	t := d(1)
	v := math.Exp(rng.NormFloat64() * 5)
	for i := range s {
		s[i] = Point{Date: t, Value: v}
		t = t.AddDate(0, 0, 1+rng.IntN(3))
		if rng.IntN(4) > 0 {
			v *= math.Exp(rng.NormFloat64() * sigma)
		}
	}
	return s
}

func TestComputeNeverNonFinite(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	sigmas := []float64{0, 1e-15, 1e-4, 0.01, 0.05, 0.5, 3}
	for i := range 2000 {
		n := 2 + rng.IntN(300)
		sigma := sigmas[rng.IntN(len(sigmas))]
		portfolio := randomSeries(rng, n, sigma)
		var benchmark Series
		if rng.IntN(3) > 0 {
			benchmark = randomSeries(rng, 2+rng.IntN(300), sigmas[rng.IntN(len(sigmas))])
		}
		rf := []float64{0, 0.02, -0.01, 1}[rng.IntN(4)]

		m, err := Compute(portfolio, benchmark, rf)
		if err != nil {
			// Only overflow on extreme series, or too few common dates, may fail.
			require.True(t, errors.Is(err, ErrNonFinite) || errors.Is(err, ErrTooFewPoints),
				"case %d: unexpected error %v", i, err)
			continue
		}
		require.NoError(t, m.Validate(), "case %d", i)
		for _, p := range []*float64{m.Sharpe, m.Sortino, m.Beta, m.Alpha, m.TrackingError} {
			if p != nil {
				require.False(t, math.IsNaN(*p) || math.IsInf(*p, 0), "case %d", i)
			}
		}
		require.GreaterOrEqual(t, m.MaxDrawdown.Depth, 0.0)
		require.LessOrEqual(t, m.MaxDrawdown.Depth, 1.0)
		require.GreaterOrEqual(t, m.CVaR95, m.VaR95, "case %d: CVaR below VaR", i)
		require.Equal(t, benchmark == nil, m.TrackingError == nil, "case %d", i)
	}
}

// BenchmarkCompute measures one year (252 returns) of a portfolio against a benchmark.
func BenchmarkCompute(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	portfolio := make(Series, 253)
	benchmark := make(Series, 253)
	pv, bv := 100.0, 100.0
	for i := range portfolio {
		date := d(1).AddDate(0, 0, i)
		portfolio[i] = Point{Date: date, Value: pv}
		benchmark[i] = Point{Date: date, Value: bv}
		m := rng.NormFloat64() * 0.01
		pv *= math.Exp(1.2*m + rng.NormFloat64()*0.005)
		bv *= math.Exp(m)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compute(portfolio, benchmark, 0.02); err != nil {
			b.Fatal(err)
		}
	}
}

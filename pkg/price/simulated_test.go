package price

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSimulatedDeterministicAcrossRanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewSimulated()
	year, err := s.Bars(ctx, "AAPL", day(time.January, 1), day(time.December, 31))
	require.NoError(t, err)
	require.Len(t, year, 262, "2024 has 262 weekdays")

	again, err := NewSimulated().Bars(ctx, "AAPL", day(time.January, 1), day(time.December, 31))
	require.NoError(t, err)
	require.Equal(t, year, again, "same request, same bars")

	// Every bar is the same when asked for alone, or within another window.
	for i, want := range year {
		one, err := s.Bars(ctx, "AAPL", want.Date, want.Date)
		require.NoError(t, err)
		require.Equal(t, []Bar{want}, one, "bar %d alone", i)
	}
	window, err := s.Bars(ctx, "AAPL", day(time.March, 9), day(time.March, 22))
	require.NoError(t, err)
	require.Equal(t, year[50:60], window)
	require.Equal(t, day(time.March, 11), window[0].Date)
}

func TestSimulatedBarShape(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewSimulated()
	symbols := []string{"AAPL", "MSFT", "^SPX", "BTC-USD", "x", "a-very-long-symbol.name.indeed"}
	closes := map[float64]string{}
	for _, sym := range symbols {
		bars, err := s.Bars(ctx, sym, time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC))
		require.NoError(t, err, sym)
		for i, b := range bars {
			require.Equal(t, time.UTC, b.Date.Location(), "%s bar %d", sym, i)
			require.Equal(t, b.Date, b.Date.Truncate(24*time.Hour), "%s bar %d at midnight", sym, i)
			require.NotEqual(t, time.Saturday, b.Date.Weekday(), "%s bar %d", sym, i)
			require.NotEqual(t, time.Sunday, b.Date.Weekday(), "%s bar %d", sym, i)
			if i > 0 {
				require.True(t, b.Date.After(bars[i-1].Date), "%s bar %d ascending", sym, i)
				require.LessOrEqual(t, b.Date.Sub(bars[i-1].Date), 3*24*time.Hour, "%s bar %d: no weekday skipped", sym, i)
			}
			require.Greater(t, b.Low, 0.0, "%s bar %d", sym, i)
			require.LessOrEqual(t, b.Low, b.Open, "%s bar %d", sym, i)
			require.LessOrEqual(t, b.Low, b.Close, "%s bar %d", sym, i)
			require.GreaterOrEqual(t, b.High, b.Open, "%s bar %d", sym, i)
			require.GreaterOrEqual(t, b.High, b.Close, "%s bar %d", sym, i)
			require.False(t, math.IsInf(b.High, 0) || math.IsNaN(b.High), "%s bar %d", sym, i)
			require.Positive(t, b.Volume, "%s bar %d", sym, i)
		}
		first := bars[0].Close
		require.NotContains(t, closes, first, "%s and %s share a path", sym, closes[first])
		closes[first] = sym
	}
}

// TestSimulatedStatistics checks that the bridge construction yields the
// intended random walk: daily log returns with the symbol's drift and volatility,
// and a close equal to S0 at the anchor date.
func TestSimulatedStatistics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewSimulated()
	for i := range 20 {
		sym := fmt.Sprintf("SYM%03d", i)
		p := newSimPath(sym)
		bars, err := s.Bars(ctx, sym, time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2029, 12, 31, 0, 0, 0, 0, time.UTC))
		require.NoError(t, err)
		var sum, sumSq float64
		n := float64(len(bars) - 1)
		for j := 1; j < len(bars); j++ {
			r := math.Log(bars[j].Close / bars[j-1].Close)
			sum += r
			sumSq += r * r
		}
		mean := sum / n
		sd := math.Sqrt((sumSq - n*mean*mean) / (n - 1))
		// Over ~10,400 returns the sample standard deviation is within about 1.4 %
		// of σ at one standard error; allow 6 %.
		require.InEpsilon(t, p.sigma, sd, 0.06, "%s volatility", sym)

		anchor, err := s.Bars(ctx, sym, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
		require.NoError(t, err)
		require.InEpsilon(t, math.Exp(p.logS0), anchor[0].Close, 1e-12, "%s close at the anchor", sym)
		require.GreaterOrEqual(t, anchor[0].Close, 10.0)
		require.LessOrEqual(t, anchor[0].Close, 500.0)
	}
}

func TestSimulatedNormal(t *testing.T) {
	t.Parallel()
	// The hashed normals have mean 0 and variance 1.
	const n = 200000
	var sum, sumSq float64
	for k := range uint64(n) {
		z := normal(12345, streamPath, k)
		sum += z
		sumSq += z * z
	}
	mean := sum / n
	require.InDelta(t, 0, mean, 0.01)
	require.InDelta(t, 1, sumSq/n-mean*mean, 0.01)
}

func TestSimulatedTradingDays(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Time{
		simEpoch.AddDate(0, 0, -30), simEpoch, day(time.January, 5), day(time.January, 6), day(time.January, 7),
		day(time.February, 29), time.Date(2200, 7, 4, 0, 0, 0, 0, time.UTC),
	} {
		first, last := firstTradingDay(d), lastTradingDay(d)
		wd := d.Weekday()
		if wd == time.Saturday || wd == time.Sunday {
			require.Equal(t, last+1, first, "%s", d)
			require.Equal(t, time.Monday, tradingDateAny(first).Weekday(), "%s", d)
			require.Equal(t, time.Friday, tradingDateAny(last).Weekday(), "%s", d)
			continue
		}
		require.Equal(t, first, last, "%s", d)
		require.Equal(t, d, tradingDateAny(first), "%s", d)
	}
}

// tradingDateAny is tradingDate extended to negative indices, for the test.
func tradingDateAny(t int64) time.Time {
	week, wd := t/5, t%5
	if wd < 0 {
		week, wd = week-1, wd+5
	}
	return simEpoch.AddDate(0, 0, int(week*7+wd))
}

func TestSimulatedErrors(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		symbol   string
		from, to time.Time
		wantErr  error
	}{
		{name: "weekend only", symbol: "AAPL", from: day(time.January, 6), to: day(time.January, 7), wantErr: ErrNoData},
		{name: "before the span", symbol: "AAPL", from: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), to: time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC), wantErr: ErrNoData},
		{name: "after the span", symbol: "AAPL", from: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), to: time.Date(2300, 2, 1, 0, 0, 0, 0, time.UTC), wantErr: ErrNoData},
		{name: "to before from", symbol: "AAPL", from: day(time.January, 9), to: day(time.January, 8), wantErr: ErrInvalidRange},
		{name: "empty symbol", symbol: "", from: day(time.January, 8), to: day(time.January, 9), wantErr: ErrInvalidSymbol},
		{name: "cancelled", ctx: cancelled, symbol: "AAPL", from: day(time.January, 8), to: day(time.January, 9), wantErr: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			_, err := NewSimulated().Bars(ctx, tt.symbol, tt.from, tt.to)
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}

func TestSimulatedSpanEdges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The first bar is trading day 1, Tuesday 6 January 1970.
	bars, err := NewSimulated().Bars(ctx, "AAPL", time.Date(1969, 12, 1, 0, 0, 0, 0, time.UTC), time.Date(1970, 1, 9, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	require.Len(t, bars, 4)
	require.Equal(t, time.Date(1970, 1, 6, 0, 0, 0, 0, time.UTC), bars[0].Date)
	// The last bar is trading day 2^16.
	end := tradingDate(simSpan)
	bars, err = NewSimulated().Bars(ctx, "AAPL", end.AddDate(0, 0, -1), end.AddDate(0, 0, 30))
	require.NoError(t, err)
	require.Equal(t, end, bars[len(bars)-1].Date)
}

// BenchmarkSimulated fetches one week (5 weekdays) for 5,000 symbols per
// iteration, the shape of a nightly refresh.
func BenchmarkSimulated(b *testing.B) {
	symbols := make([]string, 5000)
	for i := range symbols {
		symbols[i] = fmt.Sprintf("SYM%04d.US", i)
	}
	ctx := context.Background()
	s := NewSimulated()
	from, to := day(time.June, 3), day(time.June, 7)
	b.ReportAllocs()
	for b.Loop() {
		for _, sym := range symbols {
			bars, err := s.Bars(ctx, sym, from, to)
			if err != nil || len(bars) != 5 {
				b.Fatalf("%s: %d bars, %v", sym, len(bars), err)
			}
		}
	}
}

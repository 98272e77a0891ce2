package price

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Simulated generates deterministic daily bars without any network access, so
// development and test runs are repeatable.
//
// Each symbol follows a geometric Brownian motion over trading days (Monday to
// Friday; there are no bars on Saturdays and Sundays, and no holidays):
//
//	close(t) = S0 · exp(μ·(t - t0) + σ·(W(t) - W(t0)))
//
// where t counts weekdays from Monday 5 January 1970, t0 is 1 January 2020 (the
// anchor, where the close is S0), and μ (log drift, -2 % to +10 % a year), σ
// (volatility, 15 % to 50 % a year), S0 (10 to 500) and a base volume are drawn
// from a hash of the symbol. Symbols are case-sensitive.
//
// W is a standard Brownian motion sampled exactly at integer t by a dyadic
// Brownian-bridge construction over [0, 2^16]: W(0) = 0, W(2^16) is drawn, and
// each midpoint m of an interval [a, b] is
//
//	W(m) = (W(a) + W(b))/2 + √((b-a)/4) · Z(symbol, m)
//
// where Z(symbol, m) is a standard normal derived from a hash of the symbol and m
// alone. Every integer in (0, 2^16) is the midpoint of exactly one such interval,
// so W(t) is found by descending 16 levels: the bar of a given (symbol, date) is
// the same whatever range is requested, and a request costs O(16 × days), not
// O(days since 1970). Bars exist from 6 January 1970 for 2^16 trading days (into
// the 2220s); outside that span there are none.
//
// The open is the previous close moved by a small overnight gap; high and low
// extend max(open, close) and min(open, close) by a random fraction of a day's
// volatility, so Low ≤ Open, Close ≤ High always holds; volume is positive.
// Prices are not rounded.
type Simulated struct{}

// NewSimulated returns a Simulated provider. It holds no state and is safe for
// concurrent use.
func NewSimulated() *Simulated { return &Simulated{} }

// Name returns "simulated".
func (*Simulated) Name() string { return NameSimulated }

const (
	// simLevels is the depth of the Brownian-bridge tree; simSpan its length.
	simLevels = 16
	simSpan   = int64(1) << simLevels
)

var (
	// simEpoch is trading day 0, a Monday.
	simEpoch = time.Date(1970, time.January, 5, 0, 0, 0, 0, time.UTC)
	// simAnchor is the trading day where a symbol's close is its S0.
	simAnchor = firstTradingDay(time.Date(2020, time.January, 1, 0, 0, 0, 0, time.UTC))
)

// Hash streams, so that each quantity draws independent numbers.
const (
	streamPath uint64 = iota + 1
	streamParams
	streamOpen
	streamHigh
	streamLow
	streamVolume
)

// Bars returns the simulated bars of symbol from from to to, inclusive. It
// returns ErrNoData when the range holds no weekday inside the simulated span.
func (s *Simulated) Bars(ctx context.Context, symbol string, from, to time.Time) ([]Bar, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("price: simulated %s: %w", symbol, err)
	}
	f, t, err := checkRequest(symbol, from, to)
	if err != nil {
		return nil, err
	}
	first := max(firstTradingDay(f), 1)
	last := min(lastTradingDay(t), simSpan)
	if first > last {
		return nil, fmt.Errorf("price: simulated %s %s to %s: %w", symbol,
			f.Format(time.DateOnly), t.Format(time.DateOnly), ErrNoData)
	}

	p := newSimPath(symbol)
	bars := make([]Bar, 0, last-first+1)
	prevClose := p.close(first - 1)
	for day := first; day <= last; day++ {
		if (day-first)%256 == 255 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("price: simulated %s: %w", symbol, err)
			}
		}
		bars = append(bars, p.bar(day, prevClose))
		prevClose = bars[len(bars)-1].Close
	}
	return bars, nil
}

// simPath holds one symbol's parameters.
type simPath struct {
	seed       uint64
	logS0      float64 // log of the close at the anchor
	mu, sigma  float64 // daily log drift and volatility
	baseVolume float64
	wEnd       float64 // W(simSpan)
	wAnchor    float64 // W(simAnchor)
}

// newSimPath derives a symbol's parameters from its hash.
func newSimPath(symbol string) simPath {
	seed := mix(fnv1a(symbol))
	u := func(k uint64) float64 { return uniform(hash(seed, streamParams, k)) }
	p := simPath{
		seed:       seed,
		logS0:      math.Log(10) + u(0)*math.Log(50),
		mu:         (-0.02 + 0.12*u(1)) / 252,
		sigma:      (0.15 + 0.35*u(2)) / math.Sqrt(252),
		baseVolume: 1e5 * math.Pow(100, u(3)),
		wEnd:       math.Sqrt(float64(simSpan)) * normal(seed, streamPath, uint64(simSpan)),
	}
	p.wAnchor = p.w(simAnchor)
	return p
}

// w returns W(t) for 0 ≤ t ≤ simSpan by descending the Brownian-bridge tree.
func (p *simPath) w(t int64) float64 {
	a, b := int64(0), simSpan
	wa, wb := 0.0, p.wEnd
	for {
		switch t {
		case a:
			return wa
		case b:
			return wb
		}
		m := (a + b) / 2
		wm := (wa+wb)/2 + math.Sqrt(float64(b-a)/4)*normal(p.seed, streamPath, uint64(m))
		if t < m {
			b, wb = m, wm
		} else {
			a, wa = m, wm
		}
	}
}

// close returns the close on trading day t.
func (p *simPath) close(t int64) float64 {
	return math.Exp(p.logS0 + p.mu*float64(t-simAnchor) + p.sigma*(p.w(t)-p.wAnchor))
}

// bar builds the bar of trading day t given the previous day's close.
func (p *simPath) bar(t int64, prevClose float64) Bar {
	key := uint64(t)
	c := p.close(t)
	o := prevClose * math.Exp(0.25*p.sigma*normal(p.seed, streamOpen, key))
	h := max(o, c) * math.Exp(0.5*p.sigma*math.Abs(normal(p.seed, streamHigh, key)))
	l := min(o, c) * math.Exp(-0.5*p.sigma*math.Abs(normal(p.seed, streamLow, key)))
	v := max(int64(math.Round(p.baseVolume*math.Exp(0.4*normal(p.seed, streamVolume, key)-0.08))), 1)
	return Bar{Date: tradingDate(t), Open: o, High: h, Low: l, Close: c, Volume: v}
}

// daysSinceEpoch returns the whole days from simEpoch to the UTC midnight d.
func daysSinceEpoch(d time.Time) int64 {
	return (d.Unix() - simEpoch.Unix()) / 86400
}

// weekAndDay splits a day count into whole weeks and a weekday offset 0..6
// (0 is Monday), flooring for dates before the epoch.
func weekAndDay(days int64) (week, wd int64) {
	week = days / 7
	if days%7 < 0 {
		week--
	}
	return week, days - 7*week
}

// firstTradingDay returns the index of the first weekday on or after d.
func firstTradingDay(d time.Time) int64 {
	week, wd := weekAndDay(daysSinceEpoch(d))
	if wd >= 5 {
		return (week + 1) * 5
	}
	return week*5 + wd
}

// lastTradingDay returns the index of the last weekday on or before d.
func lastTradingDay(d time.Time) int64 {
	week, wd := weekAndDay(daysSinceEpoch(d))
	if wd >= 5 {
		return week*5 + 4
	}
	return week*5 + wd
}

// tradingDate returns the date of trading day t ≥ 0.
func tradingDate(t int64) time.Time {
	return simEpoch.AddDate(0, 0, int(t/5*7+t%5))
}

// fnv1a returns the 64-bit FNV-1a hash of s.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix is the splitmix64 finaliser: a bijection that spreads every input bit.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// hash combines a seed, a stream and a key into 64 well-mixed bits.
func hash(seed, stream, key uint64) uint64 {
	return mix(seed ^ mix(stream<<56^key))
}

// uniform maps 64 bits to [0, 1).
func uniform(h uint64) float64 {
	return float64(h>>11) / (1 << 53)
}

// normal returns a standard normal variate determined by (seed, stream, key),
// by the Box–Muller transform of two hashed uniforms.
func normal(seed, stream, key uint64) float64 {
	h := hash(seed, stream, key)
	u1 := 1 - uniform(h)  // (0, 1], so the logarithm is finite
	u2 := uniform(mix(h)) // [0, 1)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

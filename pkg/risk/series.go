package risk

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Errors returned by this package. Callers test for them with errors.Is.
var (
	// ErrTooFewPoints means a series has fewer than two points (or two series share
	// fewer than two dates), so no return can be computed.
	ErrTooFewPoints = errors.New("risk: too few points")
	// ErrNonPositive means a series holds a zero or negative value.
	ErrNonPositive = errors.New("risk: non-positive value")
	// ErrNotAscending means a series' dates are not strictly ascending by calendar day.
	ErrNotAscending = errors.New("risk: dates not strictly ascending")
	// ErrNonFinite means an input is NaN or ±Inf, or a result would be.
	ErrNonFinite = errors.New("risk: non-finite value")
	// ErrLengthMismatch means two return slices that must be paired differ in length.
	ErrLengthMismatch = errors.New("risk: length mismatch")
	// ErrInvalidReturn means a daily return is -100 % or worse.
	ErrInvalidReturn = errors.New("risk: return at or below -100%")
	// ErrInvalidConfidence means a confidence level outside (0, 1).
	ErrInvalidConfidence = errors.New("risk: confidence outside (0, 1)")
)

// TradingDays is the number of trading days in a year used to annualise.
const TradingDays = 252

// ZeroTolerance is the daily standard deviation at or below which returns are
// treated as having zero variance. Rounding makes a constant series of returns
// show a spread of about 1e-17; real series are many orders of magnitude above.
const ZeroTolerance = 1e-12

// Point is one daily observation of a value or price.
type Point struct {
	// Date is the observation's day; only its UTC calendar date is used.
	Date time.Time
	// Value is the portfolio value or the price, positive and finite.
	Value float64
}

// Series is a daily series of points in strictly ascending date order.
type Series []Point

// day returns the UTC calendar date of t as a comparable key.
func day(t time.Time) int64 {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// Validate reports whether s can be used: at least two points, dates strictly
// ascending by calendar day, and every value finite and positive.
func (s Series) Validate() error {
	if len(s) < 2 {
		return fmt.Errorf("series of %d points: %w", len(s), ErrTooFewPoints)
	}
	for i, p := range s {
		if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
			return fmt.Errorf("point %d (%s): %w", i, p.Date.Format(time.DateOnly), ErrNonFinite)
		}
		if p.Value <= 0 {
			return fmt.Errorf("point %d (%s) is %g: %w", i, p.Date.Format(time.DateOnly), p.Value, ErrNonPositive)
		}
		if i > 0 && day(p.Date) <= day(s[i-1].Date) {
			return fmt.Errorf("point %d (%s) after %s: %w", i,
				p.Date.Format(time.DateOnly), s[i-1].Date.Format(time.DateOnly), ErrNotAscending)
		}
	}
	return nil
}

// Returns computes the daily simple returns V_i/V_{i-1} - 1 of s, one fewer than
// its points. It validates s first.
func Returns(s Series) ([]float64, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("returns: %w", err)
	}
	r := make([]float64, len(s)-1)
	for i := 1; i < len(s); i++ {
		r[i-1] = s[i].Value/s[i-1].Value - 1
		if math.IsInf(r[i-1], 0) {
			return nil, fmt.Errorf("returns: return on %s overflows: %w", s[i].Date.Format(time.DateOnly), ErrNonFinite)
		}
	}
	return r, nil
}

// Align keeps the points of a and b whose calendar dates appear in both series,
// in ascending order, so that the i-th points of the results share a date. Both
// series are validated first; fewer than two common dates is ErrTooFewPoints.
func Align(a, b Series) (Series, Series, error) {
	if err := a.Validate(); err != nil {
		return nil, nil, fmt.Errorf("align: first series: %w", err)
	}
	if err := b.Validate(); err != nil {
		return nil, nil, fmt.Errorf("align: second series: %w", err)
	}
	var outA, outB Series
	for i, j := 0, 0; i < len(a) && j < len(b); {
		da, db := day(a[i].Date), day(b[j].Date)
		switch {
		case da < db:
			i++
		case da > db:
			j++
		default:
			outA = append(outA, a[i])
			outB = append(outB, b[j])
			i++
			j++
		}
	}
	if len(outA) < 2 {
		return nil, nil, fmt.Errorf("align: %d common dates: %w", len(outA), ErrTooFewPoints)
	}
	return outA, outB, nil
}

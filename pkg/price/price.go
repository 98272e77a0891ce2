// Package price provides daily price bars behind one Provider interface, with a
// deterministic offline Simulated provider and an HTTP Stooq provider.
//
// Dates are calendar days: a Bar's Date is UTC midnight, and the from and to of a
// request are taken as the calendar dates they fall on in their own location, both
// inclusive. Errors that retrying cannot fix are reported by IsPermanent, so the
// task layer can skip its retries.
package price

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Errors returned by the providers. Callers test for them with errors.Is.
var (
	// ErrNoData means the provider has no bar for the symbol in the range: an
	// unknown symbol, an empty answer, or a range without trading days. It is
	// permanent.
	ErrNoData = errors.New("price: no data")
	// ErrInvalidSymbol means an empty or malformed symbol. It is permanent.
	ErrInvalidSymbol = errors.New("price: invalid symbol")
	// ErrInvalidRange means to is before from. It is permanent.
	ErrInvalidRange = errors.New("price: invalid date range")
	// ErrResponseTooLarge means a response body exceeded the size cap. It is
	// permanent.
	ErrResponseTooLarge = errors.New("price: response too large")
	// ErrQuotaExceeded means the provider refused further requests for now (Stooq's
	// daily hits limit). It is not retried within a call and is not permanent.
	ErrQuotaExceeded = errors.New("price: provider quota exceeded")
	// ErrUnknownProvider means New was given an unknown provider name.
	ErrUnknownProvider = errors.New("price: unknown provider")
)

// Bar is one day of trading for a symbol.
type Bar struct {
	// Date is the trading day at UTC midnight.
	Date time.Time
	// Open, High, Low and Close are prices in the symbol's currency.
	Open, High, Low, Close float64
	// Volume is the number of units traded; 0 when the source has none (indices).
	Volume int64
}

// Provider fetches daily bars.
type Provider interface {
	// Name returns the provider's configuration name, such as "simulated".
	Name() string
	// Bars returns the bars of symbol from from to to, both inclusive, in ascending
	// date order. It returns ErrNoData when there is none.
	Bars(ctx context.Context, symbol string, from, to time.Time) ([]Bar, error)
}

// Provider names accepted by New.
const (
	NameSimulated = "simulated"
	NameStooq     = "stooq"
)

// Config configures New. Fields not used by the chosen provider are ignored.
type Config struct {
	// StooqURL is the Stooq base URL. If empty, DefaultStooqURL is used.
	StooqURL string
	// HTTPClient makes the Stooq requests. If nil, a client with connect, TLS and
	// response-header timeouts is used.
	HTTPClient *http.Client
	// Stooq holds the Stooq timeouts, retries and size cap.
	Stooq StooqOptions
}

// New returns the provider named name ("simulated" or "stooq", case-insensitive;
// empty means "simulated").
func New(name string, cfg Config) (Provider, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", NameSimulated:
		return NewSimulated(), nil
	case NameStooq:
		return NewStooq(cfg.StooqURL, cfg.HTTPClient, cfg.Stooq)
	default:
		return nil, fmt.Errorf("price: provider %q (want %q or %q): %w", name, NameSimulated, NameStooq, ErrUnknownProvider)
	}
}

// IsPermanent reports whether err is one that retrying will not fix: a malformed
// response (*CSVError), a 4xx status other than 429, no data, an invalid
// symbol or range, or an oversized response. Cancellations, timeouts, network
// errors and 5xx statuses are not permanent.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var p interface{ Permanent() bool }
	if errors.As(err, &p) {
		return p.Permanent()
	}
	return errors.Is(err, ErrNoData) || errors.Is(err, ErrInvalidSymbol) ||
		errors.Is(err, ErrInvalidRange) || errors.Is(err, ErrResponseTooLarge)
}

// civil returns the calendar date of t in its own location, as UTC midnight.
func civil(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// checkRequest validates the arguments shared by every provider's Bars and
// returns the range as UTC-midnight dates.
func checkRequest(symbol string, from, to time.Time) (time.Time, time.Time, error) {
	if strings.TrimSpace(symbol) == "" || strings.ContainsAny(symbol, " \t\r\n") {
		return time.Time{}, time.Time{}, fmt.Errorf("price: symbol %q: %w", symbol, ErrInvalidSymbol)
	}
	f, t := civil(from), civil(to)
	if t.Before(f) {
		return time.Time{}, time.Time{}, fmt.Errorf("price: %s to %s: %w",
			f.Format(time.DateOnly), t.Format(time.DateOnly), ErrInvalidRange)
	}
	return f, t, nil
}

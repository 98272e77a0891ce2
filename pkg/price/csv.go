package price

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// CSVError is a malformed price CSV. It is permanent: the same request will get
// the same answer.
type CSVError struct {
	// Line is the 1-based line of the body at fault.
	Line int
	// Column is the 1-based field number at fault, or 0 when the line as a whole is.
	Column int
	// Name is the header name of the column at fault, when known.
	Name string
	// Err describes the fault.
	Err error
}

// Error names the line and column.
func (e *CSVError) Error() string {
	switch {
	case e.Column > 0 && e.Name != "":
		return fmt.Sprintf("csv line %d, column %d (%s): %v", e.Line, e.Column, e.Name, e.Err)
	case e.Column > 0:
		return fmt.Sprintf("csv line %d, column %d: %v", e.Line, e.Column, e.Err)
	default:
		return fmt.Sprintf("csv line %d: %v", e.Line, e.Err)
	}
}

// Unwrap returns the underlying fault.
func (e *CSVError) Unwrap() error { return e.Err }

// Permanent reports true: a malformed answer is not retried.
func (e *CSVError) Permanent() bool { return true }

// csvColumns maps the columns a price CSV must or may have to their index.
type csvColumns struct {
	date, open, high, low, close, volume int // -1 when absent
	names                                []string
}

// parseHeader finds the columns by name, case-insensitively; Date, Open, High,
// Low and Close are required, Volume is optional, other columns are ignored.
func parseHeader(header []string) (csvColumns, error) {
	c := csvColumns{date: -1, open: -1, high: -1, low: -1, close: -1, volume: -1, names: append([]string(nil), header...)}
	for i, name := range header {
		name = strings.TrimSpace(strings.TrimPrefix(name, "\ufeff"))
		c.names[i] = name
		var idx *int
		switch strings.ToLower(name) {
		case "date":
			idx = &c.date
		case "open":
			idx = &c.open
		case "high":
			idx = &c.high
		case "low":
			idx = &c.low
		case "close":
			idx = &c.close
		case "volume":
			idx = &c.volume
		default:
			continue
		}
		if *idx >= 0 {
			return c, &CSVError{Line: 1, Column: i + 1, Name: name, Err: errors.New("duplicate column")}
		}
		*idx = i
	}
	for _, req := range []struct {
		name string
		idx  int
	}{{"Date", c.date}, {"Open", c.open}, {"High", c.high}, {"Low", c.low}, {"Close", c.close}} {
		if req.idx < 0 {
			return c, &CSVError{Line: 1, Err: fmt.Errorf("header %q lacks the %s column", strings.Join(header, ","), req.name)}
		}
	}
	return c, nil
}

// parseStooqCSV parses a Stooq daily CSV and keeps the bars from from to to.
func parseStooqCSV(body []byte, from, to time.Time) ([]Bar, error) {
	text := bytes.TrimSpace(bytes.TrimPrefix(body, []byte("\ufeff")))
	switch {
	case len(text) == 0:
		return nil, fmt.Errorf("empty body: %w", ErrNoData)
	case bytes.EqualFold(text, []byte("No data")):
		return nil, fmt.Errorf("provider answered %q: %w", text, ErrNoData)
	case bytes.HasPrefix(bytes.ToLower(text), []byte("exceeded the daily hits limit")):
		return nil, fmt.Errorf("provider answered %q: %w", text, ErrQuotaExceeded)
	}

	r := csv.NewReader(bytes.NewReader(body))
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return nil, csvReadError(err)
	}
	cols, err := parseHeader(header)
	if err != nil {
		return nil, err
	}

	var bars []Bar
	var prev time.Time
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvReadError(err)
		}
		line, _ := r.FieldPos(0)
		bar, err := parseRow(rec, cols, line)
		if err != nil {
			return nil, err
		}
		if !prev.IsZero() && !bar.Date.After(prev) {
			return nil, &CSVError{Line: line, Column: cols.date + 1, Name: cols.names[cols.date],
				Err: fmt.Errorf("date %s does not follow %s", bar.Date.Format(time.DateOnly), prev.Format(time.DateOnly))}
		}
		prev = bar.Date
		if bar.Date.Before(from) || bar.Date.After(to) {
			continue
		}
		bars = append(bars, bar)
	}
	if len(bars) == 0 {
		return nil, fmt.Errorf("no rows from %s to %s: %w", from.Format(time.DateOnly), to.Format(time.DateOnly), ErrNoData)
	}
	return bars, nil
}

// csvReadError turns an encoding/csv error into a *CSVError.
func csvReadError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &CSVError{Line: pe.Line, Err: fmt.Errorf("%w (at byte %d)", pe.Err, pe.Column)}
	}
	return &CSVError{Err: err}
}

// parseRow parses one data row, which must have as many fields as the header.
func parseRow(rec []string, c csvColumns, line int) (Bar, error) {
	if n := len(c.names); len(rec) != n {
		return Bar{}, &CSVError{Line: line, Err: fmt.Errorf("%d fields, want %d", len(rec), n)}
	}
	fail := func(col int, err error) error {
		return &CSVError{Line: line, Column: col + 1, Name: c.names[col], Err: err}
	}

	var b Bar
	d, err := time.Parse(time.DateOnly, strings.TrimSpace(rec[c.date]))
	if err != nil {
		return Bar{}, fail(c.date, fmt.Errorf("invalid date %q, want YYYY-MM-DD", rec[c.date]))
	}
	b.Date = d
	for _, f := range []struct {
		col int
		dst *float64
	}{{c.open, &b.Open}, {c.high, &b.High}, {c.low, &b.Low}, {c.close, &b.Close}} {
		v, err := strconv.ParseFloat(strings.TrimSpace(rec[f.col]), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return Bar{}, fail(f.col, fmt.Errorf("invalid number %q", rec[f.col]))
		}
		if v <= 0 {
			return Bar{}, fail(f.col, fmt.Errorf("price %g is not positive", v))
		}
		*f.dst = v
	}
	if b.Low > b.High {
		return Bar{}, &CSVError{Line: line, Err: fmt.Errorf("low %g above high %g", b.Low, b.High)}
	}
	if c.volume >= 0 {
		if b.Volume, err = parseVolume(rec[c.volume]); err != nil {
			return Bar{}, fail(c.volume, err)
		}
	}
	return b, nil
}

// ParseVolume reads a volume as the Stooq CSV parser does: empty means 0;
// integers and decimal or exponent forms (rounded) are accepted; negative
// values are not.
func ParseVolume(s string) (int64, error) { return parseVolume(s) }

// parseVolume reads a volume: empty means 0; integers and decimal or exponent
// forms (rounded) are accepted; negative values are not.
func parseVolume(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		if v < 0 {
			return 0, fmt.Errorf("negative volume %d", v)
		}
		return v, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || v < 0 || v >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid volume %q", s)
	}
	return int64(math.Round(v)), nil
}

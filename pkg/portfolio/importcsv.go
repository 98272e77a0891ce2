package portfolio

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Errors of an uploaded CSV as a whole (the file is refused, nothing is kept).
var (
	// ErrLineTooLong means a line of an imported file passes the line cap.
	ErrLineTooLong = errors.New("portfolio: import: line too long")
	// ErrTooManyRows means an imported file has more rows than the row cap.
	ErrTooManyRows = errors.New("portfolio: import: too many rows")
	// ErrBadHeader means an imported file's header lacks a required column
	// or repeats one.
	ErrBadHeader = errors.New("portfolio: import: bad header")
	// ErrTooManyBadRows means more of an imported file's rows were rejected
	// than its max_bad_ratio allows.
	ErrTooManyBadRows = errors.New("portfolio: import: too many rejected rows")
	// ErrUploadNotFound means the upload is unknown, expired or not the
	// task creator's.
	ErrUploadNotFound = errors.New("portfolio: import: upload not found")
)

// MaxRejected is how many rejected rows an import's result lists.
const MaxRejected = 100

// maxEchoedValue caps a rejected value echoed into a result.
const maxEchoedValue = 64

// Rejected is one row an import refused.
type Rejected struct {
	// Line is the 1-based line of the file.
	Line int `json:"line"`
	// Reason says what is wrong.
	Reason string `json:"reason"`
	// Value is the offending value as it was in the file (at most 64 bytes),
	// never evaluated: a value starting with = + - or @ is data. Report CSV
	// exports neutralise such cells; anyone pasting it elsewhere should too.
	Value string `json:"value,omitempty"`
}

// rejections collects the rejected rows of an import: all counted, the first
// MaxRejected kept.
type rejections struct {
	n     int
	first []Rejected
}

func (r *rejections) add(line int, reason, value string) {
	r.n++
	if len(r.first) < MaxRejected {
		if len(value) > maxEchoedValue {
			value = value[:maxEchoedValue]
		}
		r.first = append(r.first, Rejected{Line: line, Reason: reason, Value: value})
	}
}

// list is the kept rows, never nil (a JSON array).
func (r *rejections) list() []Rejected {
	if r.first == nil {
		return []Rejected{}
	}
	return r.first
}

// csvLimits bound what an imported CSV may cost: a line longer than
// MaxLineBytes or more than MaxRows data rows refuse the file; a row whose
// field count differs from the header's is rejected.
type csvLimits struct {
	MaxLineBytes int
	MaxRows      int
}

// lineCap fails a read once a record (bytes between newlines outside
// quotes) passes max, so that a file of one endless line or quoted field (a
// CSV bomb) cannot make the CSV reader buffer it.
type lineCap struct {
	r        io.Reader
	max      int
	run      int
	inQuotes bool
	read     int64
}

func (l *lineCap) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for _, b := range p[:n] {
		switch {
		case b == '"':
			l.inQuotes = !l.inQuotes
		case b == '\n' && !l.inQuotes:
			l.run = 0
			continue
		}
		l.run++
		if l.run > l.max {
			return 0, fmt.Errorf("%w: a line passes %d bytes", ErrLineTooLong, l.max)
		}
	}
	l.read += int64(n)
	return n, err
}

// csvFile reads an imported CSV row by row: a header, then records with
// their line numbers.
type csvFile struct {
	r      *csv.Reader
	cap    *lineCap
	limits csvLimits
	// cols maps the header's lower-case names to their index.
	cols  map[string]int
	width int
	rows  int
}

// openCSV reads the header of r and checks it has the required columns (any
// order, case-insensitive, a UTF-8 BOM ignored); other columns are ignored.
func openCSV(r io.Reader, limits csvLimits, required, optional []string) (*csvFile, error) {
	lc := &lineCap{r: r, max: limits.MaxLineBytes}
	cr := csv.NewReader(lc)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	f := &csvFile{r: cr, cap: lc, limits: limits, cols: map[string]int{}}
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: the file is empty; want a header %s", ErrBadHeader, strings.Join(required, ","))
	}
	if err != nil {
		return nil, csvFileError(err)
	}
	known := map[string]bool{}
	for _, c := range append(append([]string(nil), required...), optional...) {
		known[c] = true
	}
	for i, name := range header {
		name = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(name, "\ufeff")))
		if !known[name] {
			continue
		}
		if _, dup := f.cols[name]; dup {
			return nil, fmt.Errorf("%w: column %q appears twice", ErrBadHeader, name)
		}
		f.cols[name] = i
	}
	for _, c := range required {
		if _, ok := f.cols[c]; !ok {
			return nil, fmt.Errorf("%w: the header lacks the %s column (want %s)", ErrBadHeader, c, strings.Join(required, ","))
		}
	}
	f.width = len(header)
	return f, nil
}

// next returns the next data record and its line, io.EOF at the end. A
// record with another field count than the header's comes back with ok
// false (the caller rejects it); malformed CSV, a line over the cap and a
// row over the cap are errors of the whole file.
func (f *csvFile) next() (rec []string, line int, ok bool, err error) {
	for {
		rec, err = f.r.Read()
		if errors.Is(err, io.EOF) {
			return nil, 0, false, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
			err = nil
		}
		if err != nil {
			return nil, 0, false, csvFileError(err)
		}
		line, _ = f.r.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // a blank line
		}
		f.rows++
		if f.rows > f.limits.MaxRows {
			return nil, line, false, fmt.Errorf("%w: more than %d rows", ErrTooManyRows, f.limits.MaxRows)
		}
		return rec, line, len(rec) == f.width, nil
	}
}

// field is the trimmed value of column name in rec ("" when the column is
// absent).
func (f *csvFile) field(rec []string, name string) string {
	i, ok := f.cols[name]
	if !ok || i >= len(rec) {
		return ""
	}
	return strings.TrimSpace(rec[i])
}

// has reports whether the header has column name.
func (f *csvFile) has(name string) bool {
	_, ok := f.cols[name]
	return ok
}

// csvFileError names the line of a malformed CSV.
func csvFileError(err error) error {
	if errors.Is(err, ErrLineTooLong) {
		return err
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("portfolio: import: malformed CSV at line %d: %w", pe.Line, pe.Err)
	}
	return fmt.Errorf("portfolio: import: read: %w", err)
}

// fieldCountReason is the rejection reason of a record of the wrong width.
func fieldCountReason(got, want int) string {
	return fmt.Sprintf("%d fields, want %d as the header", got, want)
}

// joined renders a rejected record for the result (the fields as they were).
func joined(rec []string) string {
	var b bytes.Buffer
	for i, v := range rec {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(v)
		if b.Len() > maxEchoedValue {
			break
		}
	}
	return b.String()
}

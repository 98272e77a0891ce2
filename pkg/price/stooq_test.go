package price

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Stooq answers in the shape of https://stooq.com/q/d/l/?s=aapl.us&d1=20240102&d2=20240108&i=d,
// with CRLF line endings.
const aaplCSV = "Date,Open,High,Low,Close,Volume\r\n" +
	"2024-01-02,186.031,187.322,182.871,184.532,82488674\r\n" +
	"2024-01-03,182.985,184.498,182.031,183.151,58414460\r\n" +
	"2024-01-04,181.009,181.761,179.564,180.824,71983570\r\n" +
	"2024-01-05,180.774,181.495,178.852,180.100,62379661\r\n" +
	"2024-01-08,181.107,184.547,180.350,184.458,59144470\r\n"

// An index: Stooq leaves Volume empty for some indices.
const spxCSV = "Date,Open,High,Low,Close,Volume\n" +
	"2024-01-02,4745.2,4754.33,4722.67,4742.83,\n" +
	"2024-01-03,4725.07,4729.29,4699.71,4704.81,\n"

// An index whose answer has no Volume column at all.
const dayCSV = "Date,Open,High,Low,Close\n" +
	"2024-01-02,4745.2,4754.33,4722.67,4742.83\n"

func day(m time.Month, d int) time.Time {
	return time.Date(2024, m, d, 0, 0, 0, 0, time.UTC)
}

// stooqBundle is a Stooq provider talking to a local test server.
type stooqBundle struct {
	stooq    *Stooq
	server   *httptest.Server
	requests atomic.Int32
	mu       sync.Mutex
	queries  []string // raw query of each request
	waits    []time.Duration
}

// setupStooq starts a server whose n-th request (1-based) is answered by
// handle(n, w, r) and returns a provider with fast, recorded waits.
func setupStooq(t *testing.T, opts StooqOptions, handle func(n int, w http.ResponseWriter, r *http.Request)) *stooqBundle {
	t.Helper()
	b := &stooqBundle{}
	b.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(b.requests.Add(1))
		b.mu.Lock()
		b.queries = append(b.queries, r.URL.Path+"?"+r.URL.RawQuery)
		b.mu.Unlock()
		handle(n, w, r)
	}))
	t.Cleanup(b.server.Close)
	if opts.Backoff == 0 {
		opts.Backoff = time.Millisecond
	}
	s, err := NewStooq(b.server.URL+"/", b.server.Client(), opts)
	require.NoError(t, err)
	s.sleep = func(ctx context.Context, d time.Duration) error {
		b.mu.Lock()
		b.waits = append(b.waits, d)
		b.mu.Unlock()
		return ctx.Err()
	}
	b.stooq = s
	return b
}

// serve answers every request with status and body.
func serve(status int, body string) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/csv")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

func TestStooqGoodCSV(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		symbol   string
		body     string
		from, to time.Time
		wantURL  string
		want     []Bar
	}{
		{
			name:    "equity",
			symbol:  "aapl.us",
			body:    aaplCSV,
			from:    day(time.January, 2),
			to:      day(time.January, 8),
			wantURL: "/q/d/l/?s=aapl.us&d1=20240102&d2=20240108&i=d",
			want: []Bar{
				{Date: day(time.January, 2), Open: 186.031, High: 187.322, Low: 182.871, Close: 184.532, Volume: 82488674},
				{Date: day(time.January, 3), Open: 182.985, High: 184.498, Low: 182.031, Close: 183.151, Volume: 58414460},
				{Date: day(time.January, 4), Open: 181.009, High: 181.761, Low: 179.564, Close: 180.824, Volume: 71983570},
				{Date: day(time.January, 5), Open: 180.774, High: 181.495, Low: 178.852, Close: 180.100, Volume: 62379661},
				{Date: day(time.January, 8), Open: 181.107, High: 184.547, Low: 180.350, Close: 184.458, Volume: 59144470},
			},
		},
		{
			// The server answered more than asked: rows outside the range are dropped.
			name:    "rows outside the range",
			symbol:  "aapl.us",
			body:    aaplCSV,
			from:    day(time.January, 3),
			to:      day(time.January, 4),
			wantURL: "/q/d/l/?s=aapl.us&d1=20240103&d2=20240104&i=d",
			want: []Bar{
				{Date: day(time.January, 3), Open: 182.985, High: 184.498, Low: 182.031, Close: 183.151, Volume: 58414460},
				{Date: day(time.January, 4), Open: 181.009, High: 181.761, Low: 179.564, Close: 180.824, Volume: 71983570},
			},
		},
		{
			name:    "index with empty volume",
			symbol:  "^spx",
			body:    spxCSV,
			from:    day(time.January, 2),
			to:      day(time.January, 3),
			wantURL: "/q/d/l/?s=%5Espx&d1=20240102&d2=20240103&i=d",
			want: []Bar{
				{Date: day(time.January, 2), Open: 4745.2, High: 4754.33, Low: 4722.67, Close: 4742.83},
				{Date: day(time.January, 3), Open: 4725.07, High: 4729.29, Low: 4699.71, Close: 4704.81},
			},
		},
		{
			name:    "index without volume column",
			symbol:  "^dji",
			body:    dayCSV,
			from:    day(time.January, 2),
			to:      day(time.January, 2),
			wantURL: "/q/d/l/?s=%5Edji&d1=20240102&d2=20240102&i=d",
			want:    []Bar{{Date: day(time.January, 2), Open: 4745.2, High: 4754.33, Low: 4722.67, Close: 4742.83}},
		},
		{
			// A request in another time zone asks for its own calendar dates.
			name:    "local dates",
			symbol:  "aapl.us",
			body:    aaplCSV,
			from:    time.Date(2024, time.January, 2, 23, 30, 0, 0, time.FixedZone("UTC-5", -5*3600)),
			to:      time.Date(2024, time.January, 2, 23, 45, 0, 0, time.FixedZone("UTC-5", -5*3600)),
			wantURL: "/q/d/l/?s=aapl.us&d1=20240102&d2=20240102&i=d",
			want: []Bar{
				{Date: day(time.January, 2), Open: 186.031, High: 187.322, Low: 182.871, Close: 184.532, Volume: 82488674},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupStooq(t, StooqOptions{}, serve(http.StatusOK, tt.body))
			bars, err := b.stooq.Bars(context.Background(), tt.symbol, tt.from, tt.to)
			require.NoError(t, err)
			require.Equal(t, tt.want, bars)
			require.Equal(t, []string{tt.wantURL}, b.queries)
			require.Equal(t, b.server.URL+tt.wantURL, b.stooq.URL(tt.symbol, tt.from, tt.to))
		})
	}
}

func TestStooqMalformedCSV(t *testing.T) {
	t.Parallel()
	const header = "Date,Open,High,Low,Close,Volume\n"
	tests := []struct {
		name     string
		body     string
		wantLine int
		wantCol  int
		wantName string
		wantMsg  string
	}{
		{
			name:     "bad number",
			body:     header + "2024-01-02,186.03,187.32,182.87,184.53,82488674\n2024-01-03,182.98,abc,182.03,183.15,58414460\n",
			wantLine: 3, wantCol: 3, wantName: "High", wantMsg: `invalid number "abc"`,
		},
		{
			name:     "bad date",
			body:     header + "02/01/2024,186.03,187.32,182.87,184.53,82488674\n",
			wantLine: 2, wantCol: 1, wantName: "Date", wantMsg: "invalid date",
		},
		{
			name:     "missing field",
			body:     header + "2024-01-02,186.03,187.32,184.53,82488674\n",
			wantLine: 2, wantMsg: "5 fields, want 6",
		},
		{
			name:     "negative price",
			body:     header + "2024-01-02,186.03,187.32,-1,184.53,82488674\n",
			wantLine: 2, wantCol: 4, wantName: "Low", wantMsg: "not positive",
		},
		{
			name:     "negative volume",
			body:     header + "2024-01-02,186.03,187.32,182.87,184.53,-5\n",
			wantLine: 2, wantCol: 6, wantName: "Volume", wantMsg: "negative volume",
		},
		{
			name:     "low above high",
			body:     header + "2024-01-02,186.03,182.87,187.32,184.53,1\n",
			wantLine: 2, wantMsg: "low 187.32 above high 182.87",
		},
		{
			name:     "dates out of order",
			body:     header + "2024-01-03,1,2,1,1,1\n2024-01-02,1,2,1,1,1\n",
			wantLine: 3, wantCol: 1, wantName: "Date", wantMsg: "does not follow",
		},
		{
			name:     "missing column",
			body:     "Date,Open,High,Low,Volume\n2024-01-02,1,2,1,1\n",
			wantLine: 1, wantMsg: "lacks the Close column",
		},
		{
			name:     "bare quote",
			body:     header + "2024-01-02,1\"8,2,1,1,1\n",
			wantLine: 2, wantMsg: "bare \"",
		},
		{
			// An HTML error page served with status 200.
			name:     "html page",
			body:     "<html><body>Service unavailable</body></html>\n",
			wantLine: 1, wantMsg: "lacks the Date column",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupStooq(t, StooqOptions{}, serve(http.StatusOK, tt.body))
			_, err := b.stooq.Bars(context.Background(), "aapl.us", day(time.January, 1), day(time.January, 31))
			var csvErr *CSVError
			require.ErrorAs(t, err, &csvErr)
			require.Equal(t, tt.wantLine, csvErr.Line, "line")
			require.Equal(t, tt.wantCol, csvErr.Column, "column")
			require.Equal(t, tt.wantName, csvErr.Name, "column name")
			require.ErrorContains(t, err, tt.wantMsg)
			require.ErrorContains(t, err, fmt.Sprintf("line %d", tt.wantLine))
			require.True(t, IsPermanent(err), "malformed CSV is permanent")
			require.EqualValues(t, 1, b.requests.Load(), "malformed CSV is not retried")
		})
	}
}

func TestStooqNoData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
	}{
		{name: "unknown symbol", body: "No data"},
		{name: "unknown symbol with newline", body: "No data\r\n"},
		{name: "empty body", body: ""},
		{name: "header only", body: "Date,Open,High,Low,Close,Volume\r\n"},
		{name: "no row in range", body: "Date,Open,High,Low,Close,Volume\n2023-06-01,1,2,1,1,1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupStooq(t, StooqOptions{}, serve(http.StatusOK, tt.body))
			_, err := b.stooq.Bars(context.Background(), "nosuch.us", day(time.January, 2), day(time.January, 5))
			require.ErrorIs(t, err, ErrNoData)
			require.True(t, IsPermanent(err))
			require.EqualValues(t, 1, b.requests.Load())
		})
	}
}

func TestStooqRetries(t *testing.T) {
	t.Parallel()
	const base = 10 * time.Millisecond
	tests := []struct {
		name         string
		opts         StooqOptions
		handle       func(n int, w http.ResponseWriter, r *http.Request)
		wantErr      bool
		wantStatus   int // of the StatusError, when wantErr
		wantRequests int
		// checkWaits checks the recorded waits between attempts.
		checkWaits func(t *testing.T, waits []time.Duration)
	}{
		{
			name: "429 then 200 honours Retry-After",
			opts: StooqOptions{Backoff: base, MaxBackoff: time.Minute},
			handle: func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", "7")
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				serve(http.StatusOK, aaplCSV)(n, w, r)
			},
			wantRequests: 2,
			checkWaits: func(t *testing.T, waits []time.Duration) {
				require.Equal(t, []time.Duration{7 * time.Second}, waits)
			},
		},
		{
			name: "Retry-After is capped",
			opts: StooqOptions{Backoff: base, MaxBackoff: 2 * time.Second},
			handle: func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", "3600")
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				serve(http.StatusOK, aaplCSV)(n, w, r)
			},
			wantRequests: 2,
			checkWaits: func(t *testing.T, waits []time.Duration) {
				require.Equal(t, []time.Duration{2 * time.Second}, waits)
			},
		},
		{
			name: "503 twice then 200 backs off exponentially",
			opts: StooqOptions{Backoff: base},
			handle: func(n int, w http.ResponseWriter, r *http.Request) {
				if n <= 2 {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				serve(http.StatusOK, aaplCSV)(n, w, r)
			},
			wantRequests: 3,
			checkWaits: func(t *testing.T, waits []time.Duration) {
				require.Len(t, waits, 2)
				// Attempt n waits within [½, 1] × base × 2^(n-1).
				require.GreaterOrEqual(t, waits[0], base/2)
				require.LessOrEqual(t, waits[0], base)
				require.GreaterOrEqual(t, waits[1], base)
				require.LessOrEqual(t, waits[1], 2*base)
			},
		},
		{
			name:         "503 until attempts run out",
			opts:         StooqOptions{Backoff: base},
			handle:       serve(http.StatusServiceUnavailable, "busy"),
			wantErr:      true,
			wantStatus:   http.StatusServiceUnavailable,
			wantRequests: 3,
		},
		{
			name:         "max attempts 1",
			opts:         StooqOptions{Backoff: base, MaxAttempts: 1},
			handle:       serve(http.StatusBadGateway, "bad gateway"),
			wantErr:      true,
			wantStatus:   http.StatusBadGateway,
			wantRequests: 1,
		},
		{
			name:         "404 is not retried",
			opts:         StooqOptions{Backoff: base},
			handle:       serve(http.StatusNotFound, "not found"),
			wantErr:      true,
			wantStatus:   http.StatusNotFound,
			wantRequests: 1,
		},
		{
			name:         "400 is not retried",
			opts:         StooqOptions{Backoff: base},
			handle:       serve(http.StatusBadRequest, "bad request"),
			wantErr:      true,
			wantStatus:   http.StatusBadRequest,
			wantRequests: 1,
		},
		{
			name: "network error then 200",
			opts: StooqOptions{Backoff: base},
			handle: func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					// Drop the connection without an answer.
					conn, _, err := w.(http.Hijacker).Hijack()
					if err == nil {
						_ = conn.Close()
					}
					return
				}
				serve(http.StatusOK, aaplCSV)(n, w, r)
			},
			wantRequests: 2,
		},
		{
			// The daily hits limit will not lift within the task's retries.
			name:         "quota exceeded",
			opts:         StooqOptions{Backoff: base},
			handle:       serve(http.StatusOK, "Exceeded the daily hits limit"),
			wantErr:      true,
			wantRequests: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupStooq(t, tt.opts, tt.handle)
			bars, err := b.stooq.Bars(context.Background(), "aapl.us", day(time.January, 2), day(time.January, 8))
			require.EqualValues(t, tt.wantRequests, b.requests.Load(), "requests")
			if tt.checkWaits != nil {
				tt.checkWaits(t, b.waits)
			}
			if !tt.wantErr {
				require.NoError(t, err)
				require.Len(t, bars, 5)
				return
			}
			require.Error(t, err)
			var se *StatusError
			if tt.wantStatus == 0 {
				require.ErrorIs(t, err, ErrQuotaExceeded)
				require.False(t, IsPermanent(err))
				return
			}
			require.ErrorAs(t, err, &se)
			require.Equal(t, tt.wantStatus, se.StatusCode)
			require.Equal(t, tt.wantStatus < 500, IsPermanent(err), "4xx permanent, 5xx not")
		})
	}
}

func TestStooqSlowServerTimesOut(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := setupStooq(t, StooqOptions{Timeout: 100 * time.Millisecond}, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // Runs before the server closes.
	b.stooq.sleep = sleep

	start := time.Now()
	_, err := b.stooq.Bars(context.Background(), "aapl.us", day(time.January, 2), day(time.January, 8))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, IsPermanent(err))
	require.Less(t, time.Since(start), 5*time.Second)
	require.EqualValues(t, 1, b.requests.Load(), "the deadline ends the call, no retry")
}

func TestStooqCancelled(t *testing.T) {
	t.Parallel()
	b := setupStooq(t, StooqOptions{}, serve(http.StatusOK, aaplCSV))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := b.stooq.Bars(ctx, "aapl.us", day(time.January, 2), day(time.January, 8))
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, IsPermanent(err))
}

func TestStooqOversized(t *testing.T) {
	t.Parallel()
	big := "Date,Open,High,Low,Close,Volume\n" + strings.Repeat("2024-01-02,1,2,1,1,1\n", 500) // 10.5 kB
	tests := []struct {
		name    string
		chunked bool
	}{
		{name: "with content length"},
		{name: "chunked", chunked: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupStooq(t, StooqOptions{MaxBodySize: 1024}, func(_ int, w http.ResponseWriter, _ *http.Request) {
				if tt.chunked {
					w.WriteHeader(http.StatusOK)
					w.(http.Flusher).Flush()
				} else {
					w.Header().Set("Content-Length", fmt.Sprint(len(big)))
				}
				_, _ = w.Write([]byte(big))
			})
			_, err := b.stooq.Bars(context.Background(), "aapl.us", day(time.January, 2), day(time.January, 8))
			require.ErrorIs(t, err, ErrResponseTooLarge)
			require.ErrorContains(t, err, "1024-byte cap")
			require.True(t, IsPermanent(err))
			require.EqualValues(t, 1, b.requests.Load())
		})
	}
}

func TestStooqInvalidRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		symbol   string
		from, to time.Time
		wantErr  error
	}{
		{name: "empty symbol", symbol: "", from: day(time.January, 2), to: day(time.January, 3), wantErr: ErrInvalidSymbol},
		{name: "symbol with space", symbol: "aapl us", from: day(time.January, 2), to: day(time.January, 3), wantErr: ErrInvalidSymbol},
		{name: "to before from", symbol: "aapl.us", from: day(time.January, 3), to: day(time.January, 2), wantErr: ErrInvalidRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupStooq(t, StooqOptions{}, serve(http.StatusOK, aaplCSV))
			_, err := b.stooq.Bars(context.Background(), tt.symbol, tt.from, tt.to)
			require.ErrorIs(t, err, tt.wantErr)
			require.True(t, IsPermanent(err))
			require.Zero(t, b.requests.Load())
		})
	}
}

func TestNewStooq(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		base     string
		opts     StooqOptions
		wantBase string
		wantErr  string
	}{
		{name: "default URL", base: "", wantBase: DefaultStooqURL},
		{name: "trailing slash", base: "http://prices.internal:8080/stooq/", wantBase: "http://prices.internal:8080/stooq"},
		{name: "ftp", base: "ftp://stooq.com", wantErr: "want http(s)"},
		{name: "no host", base: "https://", wantErr: "want http(s)"},
		{name: "query", base: "https://stooq.com/?x=1", wantErr: "want http(s)"},
		{name: "credentials", base: "https://u:p@stooq.com", wantErr: "want http(s)"},
		{name: "negative attempts", opts: StooqOptions{MaxAttempts: -1}, wantErr: "MaxAttempts"},
		{name: "negative timeout", opts: StooqOptions{Timeout: -time.Second}, wantErr: "Timeout"},
		{name: "negative size", opts: StooqOptions{MaxBodySize: -1}, wantErr: "MaxBodySize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := NewStooq(tt.base, nil, tt.opts)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.NotContains(t, err.Error(), ":p@", "credentials are not echoed")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantBase, s.base)
			require.Equal(t, NameStooq, s.Name())
			require.NotNil(t, s.client)
			require.Equal(t, StooqOptions{
				Timeout:     DefaultStooqTimeout,
				MaxAttempts: DefaultStooqMaxAttempts,
				Backoff:     DefaultStooqBackoff,
				MaxBackoff:  DefaultStooqMaxBackoff,
				MaxBodySize: DefaultStooqMaxBodySize,
			}, s.opts)
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"5", 5 * time.Second},
		{" 2 ", 2 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{"99999999", 24 * time.Hour},
		{"Mon, 01 Jan 2001 00:00:00 GMT", 0}, // In the past.
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, parseRetryAfter(tt.in))
		})
	}
}

func TestIsPermanent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "nil", err: nil, want: false},
		{name: "no data", err: fmt.Errorf("x: %w", ErrNoData), want: true},
		{name: "csv", err: fmt.Errorf("x: %w", &CSVError{Line: 2, Err: errors.New("bad")}), want: true},
		{name: "404", err: &StatusError{StatusCode: 404}, want: true},
		{name: "429", err: &StatusError{StatusCode: 429}, want: false},
		{name: "500", err: &StatusError{StatusCode: 500}, want: false},
		{name: "too large", err: ErrResponseTooLarge, want: true},
		{name: "quota", err: ErrQuotaExceeded, want: false},
		{name: "deadline", err: context.DeadlineExceeded, want: false},
		{name: "other", err: errors.New("boom"), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, IsPermanent(tt.err))
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		wantName string
		wantErr  error
	}{
		{name: "", wantName: NameSimulated},
		{name: "simulated", wantName: NameSimulated},
		{name: " Stooq ", wantName: NameStooq},
		{name: "yahoo", wantErr: ErrUnknownProvider},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := New(tt.name, Config{})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.ErrorContains(t, err, tt.name)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantName, p.Name())
		})
	}
}

package price

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultStooqURL is the Stooq base URL used when none is configured.
const DefaultStooqURL = "https://stooq.com"

// Defaults of StooqOptions.
const (
	DefaultStooqTimeout     = 30 * time.Second
	DefaultStooqMaxAttempts = 3
	DefaultStooqBackoff     = 200 * time.Millisecond
	DefaultStooqMaxBackoff  = 10 * time.Second
	DefaultStooqMaxBodySize = 5 << 20
)

// StooqOptions tunes a Stooq provider. The zero value gives the defaults.
type StooqOptions struct {
	// Timeout bounds a whole Bars call, retries and waits included.
	// If unset or zero, DefaultStooqTimeout (30 s) is used.
	Timeout time.Duration
	// MaxAttempts is the number of requests a Bars call may make, the first
	// included. If unset or zero, DefaultStooqMaxAttempts (3) is used.
	MaxAttempts int
	// Backoff is the base of the exponential backoff: the wait after attempt n is
	// drawn from [½, 1] × Backoff × 2^(n-1). If unset or zero, DefaultStooqBackoff
	// (200 ms) is used.
	Backoff time.Duration
	// MaxBackoff caps any single wait, including one asked for by a Retry-After
	// header. If unset or zero, DefaultStooqMaxBackoff (10 s) is used.
	MaxBackoff time.Duration
	// MaxBodySize caps a response body in bytes; a larger body fails with
	// ErrResponseTooLarge. If unset or zero, DefaultStooqMaxBodySize (5 MiB) is used.
	MaxBodySize int64
}

// withDefaults validates o and fills in the defaults.
func (o StooqOptions) withDefaults() (StooqOptions, error) {
	switch {
	case o.Timeout < 0:
		return o, fmt.Errorf("price: stooq option Timeout %s is negative", o.Timeout)
	case o.MaxAttempts < 0:
		return o, fmt.Errorf("price: stooq option MaxAttempts %d is negative", o.MaxAttempts)
	case o.Backoff < 0:
		return o, fmt.Errorf("price: stooq option Backoff %s is negative", o.Backoff)
	case o.MaxBackoff < 0:
		return o, fmt.Errorf("price: stooq option MaxBackoff %s is negative", o.MaxBackoff)
	case o.MaxBodySize < 0:
		return o, fmt.Errorf("price: stooq option MaxBodySize %d is negative", o.MaxBodySize)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultStooqTimeout
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultStooqMaxAttempts
	}
	if o.Backoff == 0 {
		o.Backoff = DefaultStooqBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultStooqMaxBackoff
	}
	if o.MaxBodySize == 0 {
		o.MaxBodySize = DefaultStooqMaxBodySize
	}
	return o, nil
}

// StatusError is an HTTP response with a status other than 2xx.
type StatusError struct {
	// StatusCode is the HTTP status code.
	StatusCode int
}

// Error describes the status.
func (e *StatusError) Error() string {
	return fmt.Sprintf("unexpected HTTP status %d %s", e.StatusCode, http.StatusText(e.StatusCode))
}

// Permanent reports whether the status is a client error that a retry will not
// fix: every 4xx except 429 Too Many Requests.
func (e *StatusError) Permanent() bool {
	return e.StatusCode >= 400 && e.StatusCode < 500 && e.StatusCode != http.StatusTooManyRequests
}

// retryableError marks an error worth another attempt, with the wait the server
// asked for, if any.
type retryableError struct {
	err        error
	retryAfter time.Duration
}

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// Stooq fetches daily bars as CSV from Stooq or a server speaking its format:
//
//	GET {base}/q/d/l/?s={symbol}&d1=YYYYMMDD&d2=YYYYMMDD&i=d
//
// answered by a CSV with the header Date,Open,High,Low,Close,Volume (Volume may
// be absent or empty, as for indices) or by the body "No data" for an unknown
// symbol. Requests that fail with a network error, a 5xx or a 429 are retried with
// exponential backoff and jitter, honouring Retry-After; other 4xx are not. The
// symbol is sent as given. A Stooq is safe for concurrent use.
type Stooq struct {
	base   string
	client *http.Client
	opts   StooqOptions
	// sleep waits between attempts; tests replace it to record the waits.
	sleep func(ctx context.Context, d time.Duration) error
}

// NewStooq returns a Stooq provider for baseURL (DefaultStooqURL when empty).
// client makes the requests; nil means a client with connect, TLS-handshake,
// response-header and overall timeouts. opts tunes timeouts, retries and the
// body size cap.
func NewStooq(baseURL string, client *http.Client, opts StooqOptions) (*Stooq, error) {
	if baseURL == "" {
		baseURL = DefaultStooqURL
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("price: stooq base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("price: stooq base URL %q: want http(s)://host[/path] without query, fragment or credentials", u.Redacted())
	}
	if opts, err = opts.withDefaults(); err != nil {
		return nil, err
	}
	if client == nil {
		client = defaultHTTPClient()
	}
	return &Stooq{
		base:   strings.TrimRight(u.String(), "/"),
		client: client,
		opts:   opts,
		sleep:  sleep,
	}, nil
}

// defaultHTTPClient returns a client with timeouts on every phase of a request.
func defaultHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = 5 * time.Second
	tr.ResponseHeaderTimeout = 15 * time.Second
	return &http.Client{Transport: tr, Timeout: DefaultStooqTimeout}
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Name returns "stooq".
func (*Stooq) Name() string { return NameStooq }

// URL returns the request URL for symbol between the calendar dates from and to.
func (s *Stooq) URL(symbol string, from, to time.Time) string {
	return s.base + "/q/d/l/?s=" + url.QueryEscape(symbol) +
		"&d1=" + civil(from).Format("20060102") + "&d2=" + civil(to).Format("20060102") + "&i=d"
}

// Bars fetches the bars of symbol from from to to, inclusive. Malformed CSV is a
// *CSVError; "No data", an empty body, a header without rows or no row in the
// range is ErrNoData; see IsPermanent for which errors are worth retrying later.
func (s *Stooq) Bars(ctx context.Context, symbol string, from, to time.Time) ([]Bar, error) {
	f, t, err := checkRequest(symbol, from, to)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()

	u := s.URL(symbol, f, t)
	for attempt := 1; ; attempt++ {
		bars, err := s.fetch(ctx, u, f, t)
		if err == nil {
			return bars, nil
		}
		var retry *retryableError
		if !errors.As(err, &retry) {
			return nil, fmt.Errorf("price: stooq %s: %w", symbol, err)
		}
		if attempt >= s.opts.MaxAttempts {
			return nil, fmt.Errorf("price: stooq %s: giving up after %d attempts: %w", symbol, attempt, err)
		}
		wait := s.backoff(attempt, retry.retryAfter)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return nil, fmt.Errorf("price: stooq %s: attempt %d failed and a retry in %s would pass the deadline: %w",
				symbol, attempt, wait, err)
		}
		if serr := s.sleep(ctx, wait); serr != nil {
			return nil, fmt.Errorf("price: stooq %s: waiting to retry after attempt %d (%w): %w", symbol, attempt, err, serr)
		}
	}
}

// backoff returns the wait after a failed attempt: the server's Retry-After when
// given, else exponential with jitter; either capped at MaxBackoff.
func (s *Stooq) backoff(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, s.opts.MaxBackoff)
	}
	d := s.opts.Backoff << min(attempt-1, 30)
	if d <= 0 || d > s.opts.MaxBackoff {
		d = s.opts.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// fetch makes one request and parses its answer.
func (s *Stooq) fetch(ctx context.Context, u string, from, to time.Time) ([]Bar, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "text/csv, text/plain")
	req.Header.Set("User-Agent", "taskforge-price/1")
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("request: %w", ctx.Err())
		}
		return nil, &retryableError{err: fmt.Errorf("request: %w", err)}
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // Lets the connection be reused.
		serr := &StatusError{StatusCode: resp.StatusCode}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			return nil, &retryableError{err: serr, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}
		}
		return nil, serr
	}
	if resp.ContentLength > s.opts.MaxBodySize {
		return nil, fmt.Errorf("body of %d bytes exceeds the %d-byte cap: %w", resp.ContentLength, s.opts.MaxBodySize, ErrResponseTooLarge)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.opts.MaxBodySize+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read body: %w", ctx.Err())
		}
		return nil, &retryableError{err: fmt.Errorf("read body: %w", err)}
	}
	if int64(len(body)) > s.opts.MaxBodySize {
		return nil, fmt.Errorf("body exceeds the %d-byte cap: %w", s.opts.MaxBodySize, ErrResponseTooLarge)
	}
	return parseStooqCSV(body, from, to)
}

// parseRetryAfter reads a Retry-After header in seconds or as an HTTP date; it
// returns 0 when absent or invalid.
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

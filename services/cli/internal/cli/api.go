package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/taskforge/taskforge/services/api/client"
)

// conn is the generated client with the resolved URL and token.
type conn struct {
	c   *client.Client
	url string
}

// connect resolves the URL and token and builds the client.
func (a *app) connect() (*conn, error) {
	if a.api != nil {
		return a.api, nil
	}
	base, token, err := a.resolve()
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErrorf("--url %q: want http(s)://host[:port]", base)
	}
	opts := []client.ClientOption{client.WithHTTPClient(&http.Client{Transport: &retrying{next: http.DefaultTransport}})}
	if token != "" {
		opts = append(opts, client.WithBearerToken(token))
	}
	c, err := client.NewClient(base, opts...)
	if err != nil {
		return nil, err
	}
	a.api = &conn{c: c, url: base}
	return a.api, nil
}

// body reads a response: its bytes for a success, else the API's error.
func body(resp *http.Response, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := client.ResponseError(resp); err != nil {
		var ae *client.APIError
		if errors.As(err, &ae) && (ae.StatusCode == http.StatusBadRequest || ae.StatusCode == http.StatusUnprocessableEntity) {
			return nil, exitWith(ExitUsage, err)
		}
		return nil, err
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

// into returns a reader of a response that decodes a success into v and
// returns its bytes too: raw, err := into(&task)(api.c.GetTask(ctx, id)).
func into(v any) func(*http.Response, error) ([]byte, error) {
	return func(resp *http.Response, err error) ([]byte, error) {
		b, err := body(resp, err)
		if err != nil {
			return nil, err
		}
		if len(b) > 0 {
			if err := json.Unmarshal(b, v); err != nil {
				return nil, fmt.Errorf("the API's answer: %w", err)
			}
		}
		return b, nil
	}
}

// retrying retries what is safe to repeat — GET and HEAD, and requests that
// carry an Idempotency-Key — after a network error or a 502, 503 or 504, with
// exponential backoff (three tries, the Retry-After of a 503 honoured up to 10 s).
type retrying struct {
	next http.RoundTripper
}

const maxTries = 3

func (t *retrying) RoundTrip(req *http.Request) (*http.Response, error) {
	safe := req.Method == http.MethodGet || req.Method == http.MethodHead || req.Header.Get("Idempotency-Key") != ""
	if !safe || req.Header.Get("Accept") == "text/event-stream" {
		return t.next.RoundTrip(req)
	}
	wait := 200 * time.Millisecond
	for try := 1; ; try++ {
		r := req
		if try > 1 && req.Body != nil {
			if req.GetBody == nil {
				return t.next.RoundTrip(req)
			}
			b, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r = req.Clone(req.Context())
			r.Body = b
		}
		resp, err := t.next.RoundTrip(r)
		retry := err != nil && isNetworkError(err)
		if err == nil {
			switch resp.StatusCode {
			case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				retry = true
			}
		}
		if !retry || try == maxTries {
			return resp, err
		}
		d := wait
		if resp != nil {
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				d = min(time.Duration(s)*time.Second, 10*time.Second)
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
		}
		select {
		case <-req.Context().Done():
			return nil, req.Context().Err()
		case <-time.After(d):
		}
		wait *= 2
	}
}

func isNetworkError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	var oe *net.OpError
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.As(err, &ue) || errors.Is(err, io.ErrUnexpectedEOF)
}

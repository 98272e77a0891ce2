package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// WithBearerToken sends token (an API key or a JWT) with every request.
func WithBearerToken(token string) ClientOption {
	return WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+token)
		return nil
	})
}

// IsTerminal reports whether a task in status s has ended: completed, failed
// or cancelled.
func IsTerminal(s Status) bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// APIError is an answer of the API that is not a success: its status and, when
// the body was problem details (RFC 9457), the problem.
type APIError struct {
	StatusCode int
	// Problem is the decoded body; nil when the body was not problem details.
	Problem *Problem
	// Body is the start of a body that was not problem details.
	Body string
}

// Error renders the problem readably: its title and detail, then one
// "field: message" per field error.
func (e *APIError) Error() string {
	if e.Problem == nil {
		msg := fmt.Sprintf("HTTP %d", e.StatusCode)
		if t := http.StatusText(e.StatusCode); t != "" {
			msg += " " + t
		}
		if b := strings.TrimSpace(e.Body); b != "" {
			msg += ": " + b
		}
		return msg
	}
	p := e.Problem
	msg := p.Title
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if p.Detail != nil && *p.Detail != "" && *p.Detail != p.Title {
		msg += ": " + *p.Detail
	}
	if p.Errors != nil {
		for _, fe := range *p.Errors {
			msg += "\n  " + fe.Field + ": " + fe.Message
		}
	}
	return msg
}

// RequestID is the id the API gave the failed request, for its logs.
func (e *APIError) RequestID() string {
	if e.Problem == nil {
		return ""
	}
	return e.Problem.RequestId
}

// ErrorFrom returns nil for a 2xx or 3xx answer, else an *APIError built from
// the status and body (as the ...WithResponse methods return them).
func ErrorFrom(status int, contentType string, body []byte) error {
	if status < 400 {
		return nil
	}
	e := &APIError{StatusCode: status}
	mt, _, _ := mime.ParseMediaType(contentType)
	var p Problem
	if (mt == "application/problem+json" || mt == "application/json") && json.Unmarshal(body, &p) == nil && (p.Title != "" || p.Status != 0) {
		if p.Status == 0 {
			p.Status = status
		}
		e.Problem = &p
		return e
	}
	const max = 200
	if len(body) > max {
		body = body[:max]
	}
	e.Body = string(body)
	return e
}

// ResponseError is ErrorFrom for an *http.Response whose body has not been
// read; it reads (at most 64 KiB of) the body.
func ResponseError(resp *http.Response) error {
	if resp.StatusCode < 400 {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return ErrorFrom(resp.StatusCode, resp.Header.Get("Content-Type"), body)
}

// StatusOf is the HTTP status of an *APIError anywhere in err's chain, else 0.
func StatusOf(err error) int {
	var e *APIError
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// Package problem is the API's error value: handlers return an *Error with its
// status already chosen, and the server's error handler writes every error as
// an RFC 9457 problem+json Body. Packages of handlers mounted by the server
// (schedules) return the same type, so one handler writes them all.
package problem

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/taskforge/taskforge/pkg/tasks"
)

// TypePrefix prefixes the problem types (RFC 9457 "type" URIs).
const TypePrefix = "urn:taskforge:problem:"

// Body is an RFC 9457 problem document.
type Body struct {
	Type      string             `json:"type"`
	Title     string             `json:"title"`
	Status    int                `json:"status"`
	Detail    string             `json:"detail,omitempty"`
	Instance  string             `json:"instance,omitempty"`
	RequestID string             `json:"request_id,omitempty"`
	Errors    []tasks.FieldError `json:"errors,omitempty"`
}

// Error is a client-facing error: its status, a kind (the type's suffix), a
// detail and the fields at fault.
type Error struct {
	Status int
	Kind   string
	Detail string
	Errors []tasks.FieldError
}

func (e *Error) Error() string { return e.Kind + ": " + e.Detail }

// New returns an Error.
func New(status int, kind, detail string, fields ...tasks.FieldError) *Error {
	return &Error{Status: status, Kind: kind, Detail: detail, Errors: fields}
}

// RetryAfter is the Retry-After, in seconds, sent with a 503.
const RetryAfter = 5

// Write answers e as problem+json on c: a 503 carries Retry-After, a 401 the
// Bearer challenge; a HEAD request gets the status alone.
func Write(c echo.Context, e *Error, requestID string) {
	h := c.Response().Header()
	switch e.Status {
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", strconv.Itoa(RetryAfter))
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="taskforge"`)
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(e.Status)
		return
	}
	h.Set(echo.HeaderContentType, "application/problem+json")
	c.Response().WriteHeader(e.Status)
	enc := json.NewEncoder(c.Response())
	enc.SetEscapeHTML(false)
	_ = enc.Encode(Body{
		Type: TypePrefix + e.Kind, Title: http.StatusText(e.Status), Status: e.Status,
		Detail: e.Detail, Instance: c.Request().URL.Path, RequestID: requestID, Errors: e.Errors,
	})
}

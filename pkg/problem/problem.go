// Package problem is the one shape of every error answer of Taskforge's HTTP
// services (the API, its authentication and rate limits, result downloads and
// the monitor): an RFC 9457 problem+json document whose type is
// urn:taskforge:problem:<kind> and which always carries the request's id.
// Handlers return an *Error, or call Write / WriteStatus where there is no
// error handler to return to.
package problem

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
)

// TypePrefix prefixes the problem types (RFC 9457 "type" URIs).
const TypePrefix = "urn:taskforge:problem:"

// HeaderRequestID carries the request id in and out.
const HeaderRequestID = "X-Request-ID"

// RetryAfter is the Retry-After, in seconds, of a 503 that names none: short,
// because a stalled dependency is answered fast (every Redis call has a
// deadline) and comes back soon; at most 2 seconds by the API's promise.
const RetryAfter = 2

// FieldError names a field of a request and what is wrong with it. Field paths
// are dotted, e.g. "params.portfolio_id".
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Body is the problem document.
type Body struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	RequestID string       `json:"request_id"`
	Errors    []FieldError `json:"errors,omitempty"`
}

// Error is a client-facing error: its status, a kind (the type's suffix), a
// detail, the fields at fault and, for 429 and 503, when to come back.
type Error struct {
	Status int
	Kind   string
	Detail string
	Errors []FieldError
	// RetryAfter, in seconds, is sent as Retry-After when positive (a 503
	// without one gets RetryAfter).
	RetryAfter int
}

func (e *Error) Error() string { return e.Kind + ": " + e.Detail }

// New returns an Error.
func New(status int, kind, detail string, fields ...FieldError) *Error {
	return &Error{Status: status, Kind: kind, Detail: detail, Errors: fields}
}

// Kind is the kind of a status when nothing more specific is known.
func Kind(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid-request"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not-found"
	case http.StatusMethodNotAllowed:
		return "method-not-allowed"
	case http.StatusConflict:
		return "conflict"
	case http.StatusGone:
		return "gone"
	case http.StatusRequestEntityTooLarge:
		return "payload-too-large"
	case http.StatusUnsupportedMediaType:
		return "unsupported-media-type"
	case http.StatusUnprocessableEntity:
		return "validation"
	case http.StatusTooManyRequests:
		return "rate-limited"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	if status >= 500 {
		return "internal"
	}
	return "error"
}

// RequestID is the id of the request w answers: the X-Request-ID the server's
// middleware set on the response, else a valid one the client sent, else a
// new one; it is set on the response so that the client can quote it.
func RequestID(w http.ResponseWriter, r *http.Request) string {
	if id := w.Header().Get(HeaderRequestID); id != "" {
		return id
	}
	id := r.Header.Get(HeaderRequestID)
	if !ValidRequestID(id) {
		id = NewRequestID()
	}
	w.Header().Set(HeaderRequestID, id)
	return id
}

// ValidRequestID accepts a client's request id: 1 to 64 characters of
// [A-Za-z0-9._-], so that it is safe in logs and headers.
func ValidRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// NewRequestID returns a random request id (24 hex digits).
func NewRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Write answers e as problem+json: a 503 or 429 carries Retry-After, a 401 a
// Bearer challenge unless the handler set its own; a HEAD request gets the
// headers and status alone. Problems are never cached.
func Write(w http.ResponseWriter, r *http.Request, e *Error) {
	h := w.Header()
	retry := e.RetryAfter
	if retry <= 0 && e.Status == http.StatusServiceUnavailable {
		retry = RetryAfter
	}
	if retry > 0 && (e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests) {
		h.Set("Retry-After", strconv.Itoa(retry))
	}
	if e.Status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		h.Set("WWW-Authenticate", `Bearer realm="taskforge"`)
	}
	id := RequestID(w, r)
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		w.WriteHeader(e.Status)
		return
	}
	kind := e.Kind
	if kind == "" {
		kind = Kind(e.Status)
	}
	h.Set("Content-Type", "application/problem+json")
	h.Del("Content-Length")
	w.WriteHeader(e.Status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(Body{
		Type: TypePrefix + kind, Title: http.StatusText(e.Status), Status: e.Status,
		Detail: e.Detail, Instance: r.URL.Path, RequestID: id, Errors: e.Errors,
	})
}

// WriteStatus answers status with its default kind and detail.
func WriteStatus(w http.ResponseWriter, r *http.Request, status int, detail string) {
	Write(w, r, New(status, Kind(status), detail))
}

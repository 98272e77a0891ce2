package server

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/logging"
	"github.com/taskforge/taskforge/pkg/problem"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

// apiError is an error the handlers return with its status already chosen.
type apiError = problem.Error

func newError(status int, kind, detail string, fields ...tasks.FieldError) *apiError {
	return problem.New(status, kind, detail, fields...)
}

// badRequest is a 400 naming a field.
func badRequest(field, message string) *apiError {
	return newError(http.StatusBadRequest, "invalid-request", "the request is malformed",
		tasks.FieldError{Field: field, Message: message})
}

var (
	errUnauthenticated = newError(http.StatusUnauthorized, "unauthenticated", "missing or invalid bearer token")
	errForbidden       = newError(http.StatusForbidden, "forbidden", "your role does not allow this")
)

// classify maps an error to its problem. The second result is true for errors
// that are the server's fault and must be logged.
func classify(err error) (*apiError, bool) {
	var ae *apiError
	var ve *tasks.ValidationError
	var qe *taskservice.InvalidQueryError
	var he *echo.HTTPError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae, false
	case errors.As(err, &ve):
		return newError(http.StatusUnprocessableEntity, "validation", "the request breaks a rule", ve.Errors...), false
	case errors.As(err, &qe):
		return badRequest(qe.Field, qe.Message), false
	case errors.As(err, &mbe):
		return newError(http.StatusRequestEntityTooLarge, "payload-too-large", "the body exceeds the limit"), false
	case errors.Is(err, taskservice.ErrIdempotencyConflict):
		return newError(http.StatusConflict, "idempotency-conflict", "the idempotency key was used with a different request",
			tasks.FieldError{Field: "idempotency_key", Message: "already used with a different request"}), false
	case errors.Is(err, taskservice.ErrNotFound):
		return newError(http.StatusNotFound, "not-found", "no such task"), false
	case errors.Is(err, taskservice.ErrUnknownQueue):
		return newError(http.StatusNotFound, "not-found", "no such queue: the queues are "+strings.Join(queue.Queues, ", ")), false
	case errors.Is(err, taskservice.ErrConflict):
		return newError(http.StatusConflict, "conflict", "the task's state does not allow this"), false
	case errors.Is(err, taskservice.ErrForbidden):
		return errForbidden, false
	case errors.Is(err, schedule.ErrNotFound):
		return newError(http.StatusNotFound, "not-found", "no such schedule"), false
	case errors.Is(err, schedule.ErrNameTaken):
		return newError(http.StatusConflict, "conflict", "another schedule has this name",
			tasks.FieldError{Field: "name", Message: "is already taken"}), false
	case errors.Is(err, schedule.ErrBadCursor):
		return badRequest("cursor", "is not a cursor of this list"), false
	case errors.Is(err, taskservice.ErrUnavailable), errors.Is(err, store.ErrUnavailable),
		errors.Is(err, schedule.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return newError(http.StatusServiceUnavailable, "unavailable", "a dependency is unavailable; try again later"), true
	case errors.Is(err, context.Canceled):
		// The caller went away; nobody reads this answer.
		return newError(http.StatusServiceUnavailable, "unavailable", "the request was cancelled"), false
	case errors.As(err, &he):
		return fromHTTPError(he), he.Code >= 500
	}
	return newError(http.StatusInternalServerError, "internal", "internal error"), true
}

func fromHTTPError(he *echo.HTTPError) *apiError {
	switch he.Code {
	case http.StatusNotFound:
		return newError(he.Code, "not-found", "no such route")
	case http.StatusMethodNotAllowed:
		return newError(he.Code, "method-not-allowed", "the route does not support this method")
	case http.StatusRequestEntityTooLarge:
		return newError(he.Code, "payload-too-large", "the body exceeds the limit")
	case http.StatusUnsupportedMediaType:
		return newError(he.Code, "unsupported-media-type", "the body must be application/json")
	case http.StatusUnauthorized:
		return errUnauthenticated
	case http.StatusForbidden:
		return errForbidden
	case http.StatusBadRequest:
		return newError(he.Code, "invalid-request", "the request is malformed")
	}
	if he.Code >= 500 {
		return newError(http.StatusInternalServerError, "internal", "internal error")
	}
	return newError(he.Code, "error", http.StatusText(he.Code))
}

// handleError is Echo's error handler: every error becomes problem+json; 5xx
// are logged with the request id, never sent with details.
func (s *Server) handleError(err error, c echo.Context) {
	ae, serverFault := classify(err)
	rid := requestID(c)
	if serverFault {
		s.log.Error("request failed", logging.RequestID(rid), zap.String("route", c.Path()),
			zap.Int("status", ae.Status), zap.Error(err))
	}
	if c.Response().Committed {
		return
	}
	problem.Write(c.Response(), c.Request(), ae)
}

// Package job is the small API task handlers are written against: report
// progress, write log lines, set the result, and mark errors permanent. The worker
// runtime implements Reporter with buffered, batched writes to PostgreSQL; tests
// use Recorder.
package job

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Levels of log lines.
const (
	Debug = "debug"
	Info  = "info"
	Warn  = "warn"
	Error = "error"
)

// Reporter is what a running handler tells the platform. Calls are cheap: they
// are buffered and written in batches, never one round trip per call.
type Reporter interface {
	// TaskID is the running task's id.
	TaskID() string
	// Attempt is the attempt number, from 1.
	Attempt() int
	// Progress records the fraction done (0..1), the current step and, when not
	// empty, a message kept among the task's recent messages.
	Progress(fraction float64, step, message string)
	// Log writes a log line with a level and structured fields. Fields must
	// never carry secrets.
	Log(level, message string, fields map[string]any)
	// SetResult sets the task's JSON result (a small value; files go to result
	// storage and the result names them).
	SetResult(v any) error
}

// Handler runs one attempt of a task with its decoded (and decrypted) params.
type Handler func(ctx context.Context, r Reporter, params proto.Message) error

// Typed adapts a handler of a concrete params type.
func Typed[T proto.Message](h func(ctx context.Context, r Reporter, params T) error) Handler {
	return func(ctx context.Context, r Reporter, params proto.Message) error {
		p, ok := params.(T)
		if !ok {
			return Permanent(fmt.Errorf("params are %T, not %T", params, *new(T)))
		}
		return h(ctx, r, p)
	}
}

// ErrPermanent marks errors that retrying cannot fix (bad params, a 4xx from a
// target): the task fails at once instead of spending its retries.
var ErrPermanent = errors.New("permanent error")

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() []error {
	return []error{e.err, ErrPermanent}
}

// Permanent wraps err so that the task is not retried.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err was marked permanent.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

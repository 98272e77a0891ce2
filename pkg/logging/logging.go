// Package logging builds the zap logger every service uses and names the fields
// that tie log lines to requests and tasks.
package logging

import (
	"context"
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Field names shared by every service.
const (
	FieldRequestID = "request_id"
	FieldTaskID    = "task_id"
	FieldTaskType  = "type"
	FieldAttempt   = "attempt"
	// FieldTraceID is the OpenTelemetry trace id (hex) of the work logged.
	FieldTraceID = "trace_id"
)

// New builds a logger: JSON when format is "json" (the production default),
// coloured console output when "console" (the development default).
func New(service, level, format string, development bool) (*zap.Logger, error) {
	if format == "" {
		format = "json"
		if development {
			format = "console"
		}
	}
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("logging: level %q: %w", level, err)
	}
	var cfg zap.Config
	if format == "console" {
		cfg = zap.NewDevelopmentConfig()
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		cfg.Development = false
		cfg.DisableStacktrace = true
	} else {
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "ts"
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Encoding = format
	cfg.DisableCaller = true
	log, err := cfg.Build()
	if err != nil {
		return nil, fmt.Errorf("logging: %w", err)
	}
	return log.With(zap.String("service", service)), nil
}

// RequestID is the request id field.
func RequestID(id string) zap.Field { return zap.String(FieldRequestID, id) }

// TaskID is the task id field.
func TaskID(id string) zap.Field { return zap.String(FieldTaskID, id) }

// TaskType is the task type field.
func TaskType(t string) zap.Field { return zap.String(FieldTaskType, t) }

// Attempt is the attempt number field.
func Attempt(n int) zap.Field { return zap.Int(FieldAttempt, n) }

type ctxKey struct{}

// WithLogger returns a context carrying log.
func WithLogger(ctx context.Context, log *zap.Logger) context.Context {
	return context.WithValue(ctx, ctxKey{}, log)
}

// FromContext returns the logger in ctx, or a no-op logger.
func FromContext(ctx context.Context) *zap.Logger {
	if l, ok := ctx.Value(ctxKey{}).(*zap.Logger); ok {
		return l
	}
	return zap.NewNop()
}

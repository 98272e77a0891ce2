package worker

import (
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/queue"
)

// ServerOptions are the Asynq server settings the worker takes from its
// configuration.
type ServerOptions struct {
	// Concurrency is the number of tasks one server runs at once.
	Concurrency int
	// QueueWeights weigh the queues critical, high, normal and low.
	QueueWeights map[string]int
	// StrictPriority empties higher queues first (FIFO within a queue).
	StrictPriority bool
	// ShutdownTimeout is how long running tasks get on shutdown before they
	// are pushed back to their queue.
	ShutdownTimeout time.Duration
	// TaskCheckInterval is the pause after finding every queue empty. If
	// zero, 1s.
	TaskCheckInterval time.Duration
}

// AsynqConfig returns the Asynq server configuration of a worker: the four
// priority queues with their weights, the runtime's retry delays and failure
// rule, retries forwarded every second (so that short retry delays are kept),
// and Asynq's own log lines through log. Each call adds o.Concurrency to the
// process's capacity, taskforge_worker_concurrency: call it once per server.
func (r *Runtime) AsynqConfig(o ServerOptions) asynq.Config {
	r.metrics.concurrency.Add(float64(o.Concurrency))
	weights := map[string]int{}
	for _, q := range queue.Queues {
		w := o.QueueWeights[q]
		if w < 1 {
			w = 1
		}
		weights[q] = w
	}
	return r.Configure(asynq.Config{
		Concurrency:              o.Concurrency,
		Queues:                   weights,
		StrictPriority:           o.StrictPriority,
		ShutdownTimeout:          o.ShutdownTimeout,
		TaskCheckInterval:        o.TaskCheckInterval,
		DelayedTaskCheckInterval: time.Second,
		Logger:                   AsynqLogger{Log: r.log.Named("asynq")},
		LogLevel:                 asynq.WarnLevel,
	})
}

// AsynqLogger adapts zap to Asynq's logger.
type AsynqLogger struct{ Log *zap.Logger }

// Debug implements asynq.Logger.
func (l AsynqLogger) Debug(args ...any) {
	l.Log.Debug("asynq", zap.String("detail", fmt.Sprint(args...)))
}

// Info implements asynq.Logger.
func (l AsynqLogger) Info(args ...any) {
	l.Log.Info("asynq", zap.String("detail", fmt.Sprint(args...)))
}

// Warn implements asynq.Logger.
func (l AsynqLogger) Warn(args ...any) {
	l.Log.Warn("asynq", zap.String("detail", fmt.Sprint(args...)))
}

// Error implements asynq.Logger.
func (l AsynqLogger) Error(args ...any) {
	l.Log.Error("asynq", zap.String("detail", fmt.Sprint(args...)))
}

// Fatal implements asynq.Logger.
func (l AsynqLogger) Fatal(args ...any) {
	l.Log.Fatal("asynq", zap.String("detail", fmt.Sprint(args...)))
}

package worker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of taskforge_tasks_processed_total.
const (
	outcomeCompleted = "completed"
	outcomeFailed    = "failed"
	outcomeRetried   = "retried"
	outcomeCancelled = "cancelled"
)

// metrics are the worker's Prometheus metrics. Their names are what the alert
// rules in deployments/prometheus are written against.
type metrics struct {
	processed     *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	active        *prometheus.GaugeVec
	up            prometheus.Gauge
	inUse         prometheus.Gauge
	concurrency   prometheus.Gauge
	retries       *prometheus.CounterVec
	cancellations *prometheus.CounterVec
	overTimeout   *prometheus.GaugeVec
	oldestRunning *prometheus.GaugeVec
	typeLimit     *prometheus.GaugeVec
	typeSlots     *prometheus.GaugeVec
	deferred      *prometheus.CounterVec
	queueWait     *prometheus.HistogramVec
	flushSeconds  prometheus.Histogram
	flushErrors   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_tasks_processed_total",
			Help: "Task attempts finished by this worker, by type and outcome (completed, failed, retried, cancelled).",
		}, []string{"type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "taskforge_task_duration_seconds",
			Help:    "Run time of task attempts, by type.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}, []string{"type"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "taskforge_tasks_active",
			Help: "Tasks running in this worker now, by type.",
		}, []string{"type"}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "taskforge_worker_up",
			Help: "1 while this worker process is processing tasks.",
		}),
		inUse: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "taskforge_worker_concurrency_in_use",
			Help: "Handlers running in this worker process now.",
		}),
		concurrency: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "taskforge_worker_concurrency",
			Help: "Handler slots of this worker process (the concurrency of its Asynq servers together): the capacity of taskforge_worker_concurrency_in_use.",
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_task_retries_total",
			Help: "Automatic retries scheduled after a failed attempt, by type.",
		}, []string{"type"}),
		cancellations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_task_cancellations_total",
			Help: "Tasks that ended cancelled in this worker, by type.",
		}, []string{"type"}),
		overTimeout: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "taskforge_task_running_over_timeout",
			Help: "Handlers still running past their task's timeout (they ignore their context), by type.",
		}, []string{"type"}),
		oldestRunning: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "taskforge_task_oldest_running_seconds",
			Help: "Age of the oldest attempt running in this worker, by type (refreshed every cancel-poll interval; no sample when none runs).",
		}, []string{"type"}),
		typeLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "taskforge_task_type_limit",
			Help: "Configured cluster-wide limit of tasks of a type running at once (worker.type_limits), by type.",
		}, []string{"type"}),
		typeSlots: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "taskforge_task_type_slots_in_use",
			Help: "Slots of a type's cluster-wide limit held by this worker now, by type (summed over workers: the slots taken).",
		}, []string{"type"}),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_tasks_deferred_total",
			Help: "Deliveries put back because the type's cluster-wide limit was reached, by type.",
		}, []string{"type"}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "taskforge_task_queue_wait_seconds",
			Help:    "Time from a task being due to its attempt starting, by type.",
			Buckets: []float64{.005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"type"}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "taskforge_worker_state_flush_seconds",
			Help:    "Time of one batched write of task states, progress and logs.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		flushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "taskforge_worker_state_flush_errors_total",
			Help: "Batched state writes that failed (they are retried).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.processed, m.duration, m.active, m.up, m.inUse, m.concurrency, m.retries, m.cancellations,
			m.overTimeout, m.oldestRunning, m.typeLimit, m.typeSlots, m.deferred, m.queueWait, m.flushSeconds, m.flushErrors)
	}
	return m
}

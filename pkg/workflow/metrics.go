package workflow

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the workflows' figures: workflows created and ended by status,
// and how long a ready step waited for its task (from its last dependency's
// completion, or the workflow's creation, to the task's creation).
type Metrics struct {
	createdTotal prometheus.Counter
	endedTotal   *prometheus.CounterVec
	stepWait     prometheus.Histogram
}

// NewMetrics registers taskforge_workflows_created_total,
// taskforge_workflows_ended_total{status} and
// taskforge_workflow_step_wait_seconds in reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		createdTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "taskforge_workflows_created_total",
			Help: "Workflows created.",
		}),
		endedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_workflows_ended_total",
			Help: "Workflows that ended, by status (completed, failed, cancelled).",
		}, []string{"status"}),
		stepWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "taskforge_workflow_step_wait_seconds",
			Help:    "Time from a workflow step becoming ready (its last dependency completed) to its task's creation.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
	}
	for _, c := range []prometheus.Collector{m.createdTotal, m.endedTotal, m.stepWait} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) created() {
	if m != nil {
		m.createdTotal.Inc()
	}
}

// ended counts a workflow reaching a terminal status from one that was not.
func (m *Metrics) ended(from, to string) {
	if m != nil && isTerminal(to) && !isTerminal(from) {
		m.endedTotal.WithLabelValues(to).Inc()
	}
}

func (m *Metrics) stepCreated(wait time.Duration) {
	if m != nil {
		m.stepWait.Observe(wait.Seconds())
	}
}

package live

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskforge/taskforge/pkg/event"
)

// metrics are the hub's Prometheus metrics.
type metrics struct {
	open      prometheus.Gauge
	delivered *prometheus.CounterVec
	writes    prometheus.Counter
	dropped   *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	latency   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "taskforge_events_streams_open",
			Help: "Live event streams open on this API replica.",
		}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_events_delivered_total",
			Help: "Live events written to stream clients, by kind (task, log).",
		}, []string{"kind"}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "taskforge_events_writes_total",
			Help: "Writes of events to stream clients; a write carries the events waiting for its stream (delivered / writes is the batching).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_events_dropped_consumers_total",
			Help: "Live event streams closed by the server because the client fell behind (slow) or a write passed its deadline (write).",
		}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskforge_events_streams_rejected_total",
			Help: "Live event streams refused with 429, by cap (replica, caller).",
		}, []string{"cap"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "taskforge_events_deliver_latency_seconds",
			Help:    "Time from a writer publishing a live event to its write to a stream client.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.open, m.delivered, m.writes, m.dropped, m.rejected, m.latency} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return nil, fmt.Errorf("live: register metrics: %w", err)
		}
	}
	return m, nil
}

// jsonLog is a log line's JSON, fields an object.
func jsonLog(l *event.Log) ([]byte, error) {
	if l == nil {
		return nil, errors.New("live: log event without a line")
	}
	v := *l
	if len(v.Fields) == 0 || !json.Valid(v.Fields) {
		v.Fields = json.RawMessage(`{}`)
	}
	v.TS = v.TS.UTC()
	return json.Marshal(v)
}

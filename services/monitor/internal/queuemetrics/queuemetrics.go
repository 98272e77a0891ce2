// Package queuemetrics exports Prometheus metrics about Asynq's queues: sizes per
// state, latency, processed and failed totals and whether a queue is paused. A
// background loop refreshes a snapshot every interval through asynq's Inspector;
// scrapes only read the snapshot, so they stay cheap and keep answering with the
// last known values while Redis is down.
package queuemetrics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// States are the task states exported as the state label of
// taskforge_queue_size.
var States = []string{"pending", "active", "scheduled", "retry", "archived", "completed"}

// Inspector is the part of asynq.Inspector the collector reads.
type Inspector interface {
	Queues() ([]string, error)
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
}

// Collector is a prometheus.Collector over the last snapshot of every queue.
type Collector struct {
	in     Inspector
	queues []string

	size        *prometheus.Desc
	latency     *prometheus.Desc
	processed   *prometheus.Desc
	failed      *prometheus.Desc
	paused      *prometheus.Desc
	lastSuccess *prometheus.Desc
	errorsDesc  *prometheus.Desc

	mu       sync.RWMutex
	snapshot []asynq.QueueInfo
	success  time.Time
	errors   int
}

// New returns a collector that always reports queues (even when Asynq does not
// know them yet) and every other queue the inspector lists. Register it in a
// registry and call Run or Refresh to fill it.
func New(in Inspector, queues []string) (*Collector, error) {
	if in == nil {
		return nil, errors.New("queuemetrics: nil inspector")
	}
	return &Collector{
		in:     in,
		queues: slices.Clone(queues),
		size: prometheus.NewDesc("taskforge_queue_size",
			"Number of tasks in an Asynq queue, by state.", []string{"queue", "state"}, nil),
		latency: prometheus.NewDesc("taskforge_queue_latency_seconds",
			"Age of the oldest pending task of a queue, in seconds (0 when none is pending).", []string{"queue"}, nil),
		processed: prometheus.NewDesc("taskforge_queue_processed_total",
			"Tasks processed (succeeded or failed) from a queue, as counted by Asynq since the queue's data began.", []string{"queue"}, nil),
		failed: prometheus.NewDesc("taskforge_queue_failed_total",
			"Task attempts that failed in a queue, as counted by Asynq since the queue's data began.", []string{"queue"}, nil),
		paused: prometheus.NewDesc("taskforge_queue_paused",
			"Whether a queue is paused (1) or not (0).", []string{"queue"}, nil),
		lastSuccess: prometheus.NewDesc("taskforge_queue_metrics_last_success_timestamp_seconds",
			"Unix time of the last successful refresh of the queue metrics (0 before the first).", nil, nil),
		errorsDesc: prometheus.NewDesc("taskforge_queue_metrics_refresh_errors_total",
			"Refreshes of the queue metrics that failed (the previous values were kept).", nil, nil),
	}, nil
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.size, c.latency, c.processed, c.failed, c.paused, c.lastSuccess, c.errorsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector from the last snapshot; it never
// touches Redis.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, q := range c.snapshot {
		counts := []int{q.Pending, q.Active, q.Scheduled, q.Retry, q.Archived, q.Completed}
		for i, state := range States {
			ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(counts[i]), q.Queue, state)
		}
		ch <- prometheus.MustNewConstMetric(c.latency, prometheus.GaugeValue, q.Latency.Seconds(), q.Queue)
		ch <- prometheus.MustNewConstMetric(c.processed, prometheus.CounterValue, float64(q.ProcessedTotal), q.Queue)
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(q.FailedTotal), q.Queue)
		paused := 0.0
		if q.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, paused, q.Queue)
	}
	var ts float64
	if !c.success.IsZero() {
		ts = float64(c.success.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, ts)
	ch <- prometheus.MustNewConstMetric(c.errorsDesc, prometheus.CounterValue, float64(c.errors))
}

// Refresh reads every queue once and replaces the snapshot. On an error the
// previous snapshot stays, the error counter grows and the error is returned.
func (c *Collector) Refresh(ctx context.Context) error {
	infos, err := c.read(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.errors++
		return err
	}
	c.snapshot = infos
	c.success = time.Now()
	return nil
}

func (c *Collector) read(ctx context.Context) ([]asynq.QueueInfo, error) {
	known, err := c.in.Queues()
	if err != nil {
		return nil, fmt.Errorf("queuemetrics: list queues: %w", err)
	}
	names := slices.Clone(c.queues)
	for _, q := range known {
		if !slices.Contains(names, q) {
			names = append(names, q)
		}
	}
	infos := make([]asynq.QueueInfo, 0, len(names))
	for _, q := range names {
		if !slices.Contains(known, q) {
			// A fixed queue Asynq does not know (yet) holds nothing; asking
			// Asynq about it would be an error.
			infos = append(infos, asynq.QueueInfo{Queue: q})
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("queuemetrics: %w", err)
		}
		info, err := c.in.GetQueueInfo(q)
		if err != nil {
			return nil, fmt.Errorf("queuemetrics: queue %s: %w", q, err)
		}
		infos = append(infos, *info)
	}
	return infos, nil
}

// Run refreshes the snapshot at once and then every interval until ctx ends.
// Before each refresh it calls probe when not nil (the monitor passes its
// readiness checks, which keep taskforge_dependency_up current). Failed
// refreshes are logged as warnings; Run never stops early.
func (c *Collector) Run(ctx context.Context, interval time.Duration, probe func(context.Context), log *zap.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		if probe != nil {
			probe(ctx)
		}
		err := c.Refresh(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			log.Warn("queue metrics refresh failed; keeping the last values", zap.Error(err))
			failing = true
		case err == nil && failing:
			log.Info("queue metrics refresh recovered")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

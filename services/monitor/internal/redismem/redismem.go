// Package redismem exports how much memory Redis uses and how much it may use
// (used_memory and maxmemory of INFO memory), per primary: one node in the
// single and Sentinel modes, every primary in Cluster mode. Asynq's queues
// live in Redis, and with maxmemory-policy noeviction a full Redis refuses
// enqueues, so the alert rules compare the two. Like the queue metrics, a
// refresh loop reads Redis and scrapes only read the last snapshot.
package redismem

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Node is one primary's memory figures.
type Node struct {
	// Name is the node's address (in Sentinel mode "sentinel": the current
	// primary, wherever it is).
	Name string
	// Used is used_memory in bytes.
	Used float64
	// Max is maxmemory in bytes; 0 means no limit.
	Max float64
}

// Collector is a prometheus.Collector over the last snapshot.
type Collector struct {
	rc redis.UniversalClient

	used, max, errorsDesc *prometheus.Desc

	mu     sync.RWMutex
	nodes  []Node
	errors int
}

// New returns a collector reading rc. Call Refresh to fill it.
func New(rc redis.UniversalClient) (*Collector, error) {
	if rc == nil {
		return nil, errors.New("redismem: nil client")
	}
	return &Collector{
		rc: rc,
		used: prometheus.NewDesc("taskforge_redis_memory_used_bytes",
			"Memory Redis uses (INFO memory used_memory), by primary.", []string{"node"}, nil),
		max: prometheus.NewDesc("taskforge_redis_memory_max_bytes",
			"Redis's memory limit (maxmemory; 0: none set), by primary.", []string{"node"}, nil),
		errorsDesc: prometheus.NewDesc("taskforge_redis_memory_refresh_errors_total",
			"Reads of the Redis memory figures that failed (the previous values were kept).", nil, nil),
	}, nil
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.used
	ch <- c.max
	ch <- c.errorsDesc
}

// Collect implements prometheus.Collector from the last snapshot.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, n := range c.nodes {
		ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, n.Used, n.Name)
		ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, n.Max, n.Name)
	}
	ch <- prometheus.MustNewConstMetric(c.errorsDesc, prometheus.CounterValue, float64(c.errors))
}

// Nodes returns the last snapshot.
func (c *Collector) Nodes() []Node {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.nodes)
}

// Refresh reads every primary once and replaces the snapshot; on an error the
// previous snapshot stays and the error counter grows.
func (c *Collector) Refresh(ctx context.Context) error {
	nodes, err := c.read(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.errors++
		return err
	}
	c.nodes = nodes
	return nil
}

func (c *Collector) read(ctx context.Context) ([]Node, error) {
	if cc, ok := c.rc.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		var nodes []Node
		err := cc.ForEachMaster(ctx, func(ctx context.Context, nc *redis.Client) error {
			n, err := readNode(ctx, nc, nc.Options().Addr)
			if err != nil {
				return err
			}
			mu.Lock()
			nodes = append(nodes, n)
			mu.Unlock()
			return nil
		})
		if err != nil {
			return nil, err
		}
		slices.SortFunc(nodes, func(a, b Node) int { return compare(a.Name, b.Name) })
		return nodes, nil
	}
	name := "redis"
	if sc, ok := c.rc.(*redis.Client); ok {
		name = sc.Options().Addr
		if name == "FailoverClient" { // go-redis's placeholder for a Sentinel-found primary
			name = "sentinel"
		}
	}
	n, err := readNode(ctx, c.rc, name)
	if err != nil {
		return nil, err
	}
	return []Node{n}, nil
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// readNode reads INFO memory of one node.
func readNode(ctx context.Context, rc redis.Cmdable, name string) (Node, error) {
	info, err := rc.Info(ctx, "memory").Result()
	if err != nil {
		return Node{}, fmt.Errorf("redismem: INFO memory of %s: %w", name, err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			fields[k] = v
		}
	}
	n := Node{Name: name}
	for _, f := range []struct {
		key string
		dst *float64
	}{{"used_memory", &n.Used}, {"maxmemory", &n.Max}} {
		v, err := strconv.ParseFloat(fields[f.key], 64)
		if err != nil {
			return Node{}, fmt.Errorf("redismem: INFO memory of %s: %s: %w", name, f.key, err)
		}
		*f.dst = v
	}
	return n, nil
}

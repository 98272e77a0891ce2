// Package queue wraps Asynq: Redis connection options for single node, Sentinel
// and Cluster, the queue names per priority, and the enqueue, cancel and
// inspection calls the rest of Taskforge uses.
package queue

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/tracing"
)

// Queue names, one per priority, highest first.
const (
	Critical = "critical"
	High     = "high"
	Normal   = "normal"
	Low      = "low"
)

// Queues lists the queue names from highest to lowest priority.
var Queues = []string{Critical, High, Normal, Low}

// ValidPriority reports whether p names a queue.
func ValidPriority(p string) bool {
	switch p {
	case Critical, High, Normal, Low:
		return true
	}
	return false
}

// RedisOpt builds the connection option for the configured mode, for Asynq
// and for the project's own go-redis clients (Client). Every client built from
// it has deadlines on each call (redis.read_timeout, write_timeout,
// dial_timeout, pool_timeout), retries a failed command at most
// redis.max_retries times, and also honours the deadline of the caller's
// context, so a stalled Redis fails a call within a bound instead of hanging
// it. Asynq's own option types leave retries and context deadlines at
// go-redis's defaults, hence a type of our own.
func RedisOpt(c config.RedisConfig) (asynq.RedisConnOpt, error) {
	var tc *tls.Config
	if c.TLS {
		tc = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	}
	switch c.Mode {
	case "", "single", "sentinel", "cluster":
	default:
		return nil, fmt.Errorf("queue: unknown redis mode %q", c.Mode)
	}
	retries := c.MaxRetries
	if retries == 0 {
		retries = -1 // go-redis reads 0 as its default of 3
	}
	return ConnOpt{UniversalOptions: redis.UniversalOptions{
		Addrs: addrs(c), MasterName: masterName(c), DB: c.DB,
		Username: c.Username, Password: c.Password, SentinelPassword: c.SentinelPassword,
		DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout,
		PoolTimeout: c.PoolTimeout, MaxRetries: retries, ContextTimeoutEnabled: true,
		TLSConfig: tc,
	}, Mode: c.Mode}, nil
}

func addrs(c config.RedisConfig) []string {
	if c.Mode == "" || c.Mode == "single" {
		return []string{c.Addr}
	}
	return c.Addrs
}

func masterName(c config.RedisConfig) string {
	if c.Mode == "sentinel" {
		return c.MasterName
	}
	return ""
}

// ConnOpt is an asynq.RedisConnOpt carrying go-redis's full options.
type ConnOpt struct {
	redis.UniversalOptions
	// Mode is "single" (or ""), "sentinel" or "cluster".
	Mode string
}

// MakeRedisClient implements asynq.RedisConnOpt: a *redis.Client, a
// Sentinel-backed failover client or a *redis.ClusterClient, as a
// redis.UniversalClient. With tracing on, its commands made under a span
// get one of their own (its first hook, so that the span covers the others').
func (o ConnOpt) MakeRedisClient() interface{} {
	var c redis.UniversalClient
	switch o.Mode {
	case "sentinel":
		c = redis.NewFailoverClient(o.Failover())
	case "cluster":
		c = redis.NewClusterClient(o.Cluster())
	default:
		c = redis.NewClient(o.Simple())
	}
	_ = tracing.InstrumentRedis(c) // only fails for client kinds not built here
	return c
}

// Client returns a go-redis client for opt, for the few things Asynq does not
// do (health checks, semaphores, rate limits). The caller closes it.
func Client(opt asynq.RedisConnOpt) redis.UniversalClient {
	return opt.MakeRedisClient().(redis.UniversalClient)
}

// Ping checks that Redis answers.
func Ping(ctx context.Context, c redis.UniversalClient) error {
	return c.Ping(ctx).Err()
}

// PendingListKey is the Redis list in which Asynq v0.26 keeps queue q's
// pending tasks (internal/base.PendingKey: "asynq:{<queue>}:pending"), the
// list the Helm chart's KEDA triggers measure. The hash tag {<queue>} keeps
// every key of one queue on one Cluster slot, so the name is the same in the
// single, Sentinel and Cluster modes.
func PendingListKey(q string) string { return "asynq:{" + q + "}:pending" }

// TaskKey is the Redis hash in which Asynq v0.26 keeps task id of queue q
// from its enqueue until it is deleted or its retention ends
// (internal/base.TaskKey: "asynq:{<queue>}:t:<id>").
func TaskKey(q, id string) string { return "asynq:{" + q + "}:t:" + id }

// TaskRef names an Asynq task: its queue and id.
type TaskRef struct{ Queue, ID string }

// Held reports, for each ref, whether Asynq holds the task (its TaskKey
// exists), with one pipelined round trip for all of them (in Cluster mode,
// go-redis splits the pipeline by slot).
func Held(ctx context.Context, c redis.UniversalClient, refs []TaskRef) ([]bool, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	pipe := c.Pipeline()
	cmds := make([]*redis.IntCmd, len(refs))
	for i, r := range refs {
		cmds[i] = pipe.Exists(ctx, TaskKey(r.Queue, r.ID))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	out := make([]bool, len(refs))
	for i, cmd := range cmds {
		out[i] = cmd.Val() == 1
	}
	return out, nil
}

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

// RedisOpt builds Asynq's connection option for the configured mode.
func RedisOpt(c config.RedisConfig) (asynq.RedisConnOpt, error) {
	var tc *tls.Config
	if c.TLS {
		tc = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	}
	switch c.Mode {
	case "", "single":
		return asynq.RedisClientOpt{
			Addr: c.Addr, Username: c.Username, Password: c.Password, DB: c.DB,
			DialTimeout: c.DialTimeout, TLSConfig: tc,
		}, nil
	case "sentinel":
		return asynq.RedisFailoverClientOpt{
			MasterName: c.MasterName, SentinelAddrs: c.Addrs, SentinelPassword: c.SentinelPassword,
			Username: c.Username, Password: c.Password, DB: c.DB,
			DialTimeout: c.DialTimeout, TLSConfig: tc,
		}, nil
	case "cluster":
		return asynq.RedisClusterClientOpt{
			Addrs: c.Addrs, Username: c.Username, Password: c.Password,
			DialTimeout: c.DialTimeout, TLSConfig: tc,
		}, nil
	}
	return nil, fmt.Errorf("queue: unknown redis mode %q", c.Mode)
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

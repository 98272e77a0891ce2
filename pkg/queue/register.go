package queue

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// KnownQueuesKey is the Redis set in which Asynq records every queue it has seen
// (asynq's internal base.AllQueues). Inspector.Queues and Asynqmon list only the
// queues in this set; Asynq adds a queue to it on the first enqueue.
const KnownQueuesKey = "asynq:queues"

// Register records the four priority queues in Asynq's set of known queues, so
// that Asynqmon and Inspector.Queues show them before any task was enqueued. It
// is idempotent and cheap (one SADD), so every service may call it at start.
func Register(ctx context.Context, c redis.UniversalClient) error {
	members := make([]any, len(Queues))
	for i, q := range Queues {
		members[i] = q
	}
	if err := c.SAdd(ctx, KnownQueuesKey, members...).Err(); err != nil {
		return fmt.Errorf("queue: register queues: %w", err)
	}
	return nil
}

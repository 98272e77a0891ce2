package queue_test

import (
	"context"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/testenv"
)

func TestRegisterListsQueuesBeforeAnyTask(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	in := asynq.NewInspector(r.Opt())
	t.Cleanup(func() { _ = in.Close() })

	before, err := in.Queues()
	require.NoError(t, err)
	require.Empty(t, before, "a fresh database knows no queue")

	// Twice: registering is idempotent and keeps queues Asynq already knows.
	client := asynq.NewClient(r.Opt())
	t.Cleanup(func() { _ = client.Close() })
	_, err = client.Enqueue(asynq.NewTask("noop", nil), asynq.Queue("custom"))
	require.NoError(t, err)
	require.NoError(t, queue.Register(ctx, r.Client))
	require.NoError(t, queue.Register(ctx, r.Client))

	got, err := in.Queues()
	require.NoError(t, err)
	require.ElementsMatch(t, append([]string{"custom"}, queue.Queues...), got)

	for _, q := range queue.Queues {
		info, err := in.GetQueueInfo(q)
		require.NoError(t, err, q)
		require.Equal(t, q, info.Queue)
		require.Zero(t, info.Size, q)
	}
}

func TestRegisterFailsWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1 of loopback.
	c := queue.Client(asynq.RedisClientOpt{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = c.Close() })
	err := queue.Register(context.Background(), c)
	require.ErrorContains(t, err, "queue: register queues")
}

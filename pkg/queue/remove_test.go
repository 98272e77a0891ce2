package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestRemove: a queued task is removed, a missing one (or a missing queue) is
// absent, a task a worker holds is active and stays; Redis down is an error.
func TestRemove(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	in := asynq.NewInspector(r.Opt())
	t.Cleanup(func() { _ = in.Close() })
	client := asynq.NewClient(r.Opt())
	t.Cleanup(func() { _ = client.Close() })

	_, err := client.Enqueue(asynq.NewTask("later", nil), asynq.TaskID("t_later"), asynq.Queue(queue.Low), asynq.ProcessIn(time.Hour))
	require.NoError(t, err)
	got, err := queue.Remove(in, queue.Low, "t_later")
	require.NoError(t, err)
	require.Equal(t, queue.Removed, got)
	_, err = in.GetTaskInfo(queue.Low, "t_later")
	require.ErrorIs(t, err, asynq.ErrTaskNotFound)

	got, err = queue.Remove(in, queue.Low, "t_later")
	require.NoError(t, err)
	require.Equal(t, queue.Absent, got, "removed twice")
	got, err = queue.Remove(in, "no_such_queue", "t_x")
	require.NoError(t, err)
	require.Equal(t, queue.Absent, got)

	// An active task: a server holds it in its handler until released.
	running, release := make(chan struct{}), make(chan struct{})
	srv := asynq.NewServer(r.Opt(), asynq.Config{Concurrency: 1, Queues: map[string]int{queue.High: 1},
		LogLevel: asynq.FatalLevel, ShutdownTimeout: 5 * time.Second})
	mux := asynq.NewServeMux()
	mux.HandleFunc("hold", func(ctx context.Context, _ *asynq.Task) error {
		close(running)
		<-release
		return nil
	})
	require.NoError(t, srv.Start(mux))
	t.Cleanup(srv.Shutdown)
	_, err = client.Enqueue(asynq.NewTask("hold", nil), asynq.TaskID("t_active"), asynq.Queue(queue.High))
	require.NoError(t, err)
	<-running
	got, err = queue.Remove(in, queue.High, "t_active")
	require.NoError(t, err)
	require.Equal(t, queue.Active, got)
	info, err := in.GetTaskInfo(queue.High, "t_active")
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateActive, info.State, "an active task stays")
	close(release)

	down := asynq.NewInspector(asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = down.Close() })
	_, err = queue.Remove(down, queue.Low, "t_any")
	require.Error(t, err)
}

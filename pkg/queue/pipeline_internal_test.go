package queue

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
)

// echoScript returns its argument, or fails with a script error when the
// argument says so.
var echoScript = redis.NewScript(`
if string.sub(ARGV[1], 1, 4) == 'fail' then return redis.error_reply('refused ' .. ARGV[1]) end
redis.call('INCR', KEYS[1])
return ARGV[1]`)

// pipelineCounter counts the pipelines that reach Redis and can hold the
// first one until released.
type pipelineCounter struct {
	pipelines, singles atomic.Int32
	hold               chan struct{}
	held               chan struct{}
}

func (h *pipelineCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.HasPrefix(cmd.Name(), "eval") {
			h.singles.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !strings.HasPrefix(cmds[0].Name(), "eval") {
			return next(ctx, cmds) // a connection's handshake
		}
		if h.pipelines.Add(1) == 1 && h.hold != nil {
			close(h.held)
			<-h.hold
		}
		return next(ctx, cmds)
	}
}

// TestPipelinedSharesRoundTrips: script calls made while a pipeline is in
// flight go out together in the next one, each caller gets its own reply
// (values, script errors, the NOSCRIPT fallback of Script.Run), and none is
// sent on its own.
func TestPipelinedSharesRoundTrips(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	c, p := pipelined(asynq.RedisClientOpt{Addr: r.Addr, DB: r.DB}, PipelineOptions{Concurrency: 1})
	t.Cleanup(func() { _ = c.Close() })
	counter := &pipelineCounter{hold: make(chan struct{}), held: make(chan struct{})}
	c.AddHook(counter)
	ctx := context.Background()
	require.NoError(t, echoScript.Load(ctx, c).Err())

	first := make(chan error, 1)
	go func() { first <- echoScript.Run(ctx, c, []string{"calls"}, "first").Err() }()
	<-counter.held // the first call's pipeline is in flight, held

	const n = 60
	var wg sync.WaitGroup
	got := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			arg := fmt.Sprintf("call-%d", i)
			if i%10 == 0 {
				arg = fmt.Sprintf("fail-%d", i)
			}
			got[i], errs[i] = echoScript.Run(ctx, c, []string{"calls"}, arg).Text()
		}()
	}
	require.Eventually(t, func() bool { return p.gc.Waiting() == n }, 10*time.Second, time.Millisecond)
	close(counter.hold)
	wg.Wait()
	require.NoError(t, <-first)

	for i := range n {
		if i%10 == 0 {
			require.ErrorContains(t, errs[i], fmt.Sprintf("refused fail-%d", i))
			continue
		}
		require.NoError(t, errs[i])
		require.Equal(t, fmt.Sprintf("call-%d", i), got[i])
	}
	// The first call's pipeline, then the n held calls' in one. No script
	// call went out alone.
	require.EqualValues(t, 2, counter.pipelines.Load())
	require.Zero(t, counter.singles.Load())
	calls, err := r.Client.Get(ctx, "calls").Int()
	require.NoError(t, err)
	require.Equal(t, 1+n-n/10, calls)

	// Script.Run's fallback: EVALSHA answers NOSCRIPT, EVAL loads it.
	require.NoError(t, c.ScriptFlush(ctx).Err())
	v, err := echoScript.Run(ctx, c, []string{"calls"}, "after-flush").Text()
	require.NoError(t, err)
	require.Equal(t, "after-flush", v)
}

// TestPipelinedHonoursCallerDeadline: a caller whose context ends while
// Redis does not answer returns at its own deadline, and the client works
// again when Redis does.
func TestPipelinedHonoursCallerDeadline(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedisServer(t)
	c := Pipelined(asynq.RedisClientOpt{Addr: srv.Addr, ReadTimeout: 5 * time.Second}, PipelineOptions{})
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	require.NoError(t, echoScript.Run(ctx, c, []string{"k"}, "warm").Err())

	srv.Freeze()
	t.Cleanup(srv.Thaw)
	short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	require.Error(t, echoScript.Run(short, c, []string{"k"}, "frozen").Err())
	require.Less(t, time.Since(start), time.Second)

	srv.Thaw()
	require.Eventually(t, func() bool { return echoScript.Run(ctx, c, []string{"k"}, "back").Err() == nil },
		10*time.Second, 50*time.Millisecond)
	require.NoError(t, c.Close())
	require.Error(t, echoScript.Run(ctx, c, []string{"k"}, "closed").Err())
}

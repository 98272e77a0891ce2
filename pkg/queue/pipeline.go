package queue

import (
	"context"
	"errors"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/taskforge/taskforge/pkg/groupcommit"
)

// Pipelined returns a client for opt whose script calls (EVAL, EVALSHA: an
// Asynq enqueue, a rate-limit check) are pipelined automatically: calls made
// while others are in flight share one round trip (pkg/groupcommit), a call
// on an idle client goes out at once. Each caller still waits for its own
// reply, with its own context deadline, so the semantics of every call are
// unchanged; only the number of round trips and system calls per request
// falls, on the client and in Redis. Other commands are sent as usual. It is
// meant for a request path's short script calls: blocking commands and
// Pub/Sub belong on another client. Close the client to stop the pipeliner.
func Pipelined(opt asynq.RedisConnOpt, o PipelineOptions) redis.UniversalClient {
	c, _ := pipelined(opt, o)
	return c
}

func pipelined(opt asynq.RedisConnOpt, o PipelineOptions) (redis.UniversalClient, *pipeliner) {
	c := opt.MakeRedisClient().(redis.UniversalClient)
	p := &pipeliner{client: c}
	p.gc = groupcommit.New(groupcommit.Options{Workers: o.Concurrency, Max: o.MaxBatch}, p.exec)
	c.AddHook(p)
	return closeHook{UniversalClient: c, stop: p.gc.Close}, p
}

// PipelineOptions size Pipelined's batching.
type PipelineOptions struct {
	// Concurrency is how many pipelines may be in flight at once. If zero, 4.
	Concurrency int
	// MaxBatch caps the calls of one pipeline. If zero, 256.
	MaxBatch int
}

// pipeliner is the go-redis hook behind Pipelined.
type pipeliner struct {
	client redis.UniversalClient
	gc     *groupcommit.Committer[[]any, reply]
}

type reply struct {
	val any
	err error
}

func (p *pipeliner) DialHook(next redis.DialHook) redis.DialHook { return next }

func (p *pipeliner) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook hands script calls to the committer. The caller's command is
// never touched by another goroutine: the pipeline carries a copy, whose
// reply is copied back here, so a caller whose context ends first returns
// at once without a data race.
func (p *pipeliner) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c, ok := cmd.(*redis.Cmd)
		if !ok {
			return next(ctx, cmd)
		}
		switch cmd.Name() {
		case "eval", "evalsha", "eval_ro", "evalsha_ro":
		default:
			return next(ctx, cmd)
		}
		r, err := p.gc.Do(ctx, cmd.Args())
		if errors.Is(err, groupcommit.ErrClosed) {
			err = redis.ErrClosed
		}
		if err != nil {
			cmd.SetErr(err)
			return err
		}
		c.SetVal(r.val)
		if r.err != nil {
			c.SetErr(r.err)
		}
		return r.err
	}
}

// exec sends calls as one pipeline. Every call gets its own reply or error:
// a reply error (NOSCRIPT, a script's error, redis.Nil) is its call's own,
// and go-redis sets a connection failure on each call of the pipeline.
func (p *pipeliner) exec(ctx context.Context, calls [][]any) ([]reply, error) {
	pipe := p.client.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for i, args := range calls {
		cmds[i] = redis.NewCmd(ctx, args...)
		_ = pipe.Process(ctx, cmds[i])
	}
	_, _ = pipe.Exec(ctx)
	out := make([]reply, len(cmds))
	for i, c := range cmds {
		out[i] = reply{val: c.Val(), err: c.Err()}
	}
	return out, nil
}

// closeHook stops the pipeliner when the client closes.
type closeHook struct {
	redis.UniversalClient
	stop func()
}

func (c closeHook) Close() error {
	c.stop()
	return c.UniversalClient.Close()
}

package taskservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/tracing"
)

// ErrNoBudget: the task has used every attempt of its retry budget.
var ErrNoBudget = errors.New("retry budget spent")

// AttemptsLeft is how many more attempts row may make: 1 + max_retries
// attempts since the last manual retry (attempt - retry_base of them spent).
func AttemptsLeft(row store.Task) int {
	return 1 + row.MaxRetries - (row.Attempt - row.RetryBase)
}

// Requeue enqueues a pending or retrying task again under its own id: the
// reconciler's repair when Asynq no longer holds the task (Redis lost data,
// or the process died between the row's insert and its enqueue). The row is
// not changed. The delivery gets what is left of the retry budget as Asynq's
// MaxRetry; a retrying task keeps its next_retry_at and a pending one its
// scheduled_for. A task already queued under its id is left as it is (nil).
// A task with no attempt left is ErrNoBudget; any other state ErrConflict.
func (s *Service) Requeue(ctx context.Context, row store.Task) error {
	if row.Status != tasks.StatusPending && row.Status != tasks.StatusRetrying {
		return ErrConflict
	}
	left := AttemptsLeft(row)
	if left < 1 {
		return ErrNoBudget
	}
	spec, ok := tasks.LookupAny(row.Type)
	if !ok {
		return fmt.Errorf("taskservice: requeue %s: %w %q", row.ID, tasks.ErrUnknownType, row.Type)
	}
	msg := spec.NewParams()
	// Stored params are what the envelope carried: secret fields stay sealed
	// under row.KeyID.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(row.Params, msg); err != nil {
		return fmt.Errorf("taskservice: requeue %s: stored params: %w", row.ID, err)
	}
	policy := spec.Retry
	_ = json.Unmarshal(row.RetryPolicy, &policy)
	payload, err := tasks.EncodeEnvelope(row.ID, row.Type, msg, policy, row.TimeoutSeconds, row.KeyID, row.Attempt)
	if err != nil {
		return err
	}
	opts := s.enqueueOptions(&row, policy)
	// Later options win in Asynq: the remaining budget, and the retry time.
	opts = append(opts, asynq.MaxRetry(left-1))
	if row.Status == tasks.StatusRetrying && row.NextRetryAt != nil && row.NextRetryAt.After(time.Now()) {
		opts = append(opts, asynq.ProcessAt(*row.NextRetryAt))
	}
	// The requeue's trace context (the reconciler's span) and the creating
	// request's id ride along.
	_, err = s.client.EnqueueContext(ctx, asynq.NewTaskWithHeaders(row.Type, payload, tracing.Headers(ctx, row.RequestID)), opts...)
	switch {
	case err == nil, errors.Is(err, asynq.ErrTaskIDConflict):
		return nil
	default:
		return fmt.Errorf("%w: redis: requeue %s: %v", ErrUnavailable, row.ID, err)
	}
}

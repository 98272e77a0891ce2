package taskservice

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// Retry runs a failed or cancelled task p may see again (manual intervention on
// a dead letter): the row goes back to pending with retry_base = attempt (a
// fresh retry budget; attempt numbers continue), cancel_requested cleared and
// the error, result and timings of the last run cleared; the task is removed
// from Asynq (its archived copy, or wherever it is) and enqueued again under the
// same id. The row update and the Redis calls share a transaction: if Redis
// refuses, the row keeps its state and ErrUnavailable is returned. Any other
// state is ErrConflict. Operators may retry their own tasks, admins any.
func (s *Service) Retry(ctx context.Context, p auth.Principal, id string) (store.Task, error) {
	row, err := s.find(ctx, s.db, p, id)
	if err != nil {
		return row, err
	}
	spec, ok := tasks.LookupAny(row.Type)
	if !ok {
		return row, fmt.Errorf("taskservice: retry %s: %w %q", id, tasks.ErrUnknownType, row.Type)
	}
	if !p.CanCreate() || (spec.Permission == tasks.PermCreateAdmin && !p.IsAdmin()) {
		return row, ErrForbidden
	}
	if row.Status != tasks.StatusFailed && row.Status != tasks.StatusCancelled {
		return row, ErrConflict
	}
	msg := spec.NewParams()
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(row.Params, msg); err != nil {
		return row, fmt.Errorf("taskservice: retry %s: stored params: %w", id, err)
	}

	updated, ok, err := s.lc.Retry(ctx, row.ID, func(tx *gorm.DB, updated *store.Task) error {
		got, err := queue.Remove(s.inspector, updated.Priority, updated.ID)
		if err != nil {
			return fmt.Errorf("%w: redis: %v", ErrUnavailable, err)
		}
		if got == queue.Active {
			// A previous delivery still runs; enqueueing now would conflict
			// with it.
			return ErrConflict
		}
		if s.opts.Results != nil {
			// Dropped again after the commit (the lifecycle's change event)
			// in case a read refilled it meanwhile.
			if err := s.opts.Results.Forget(ctx, updated.ID); err != nil {
				return fmt.Errorf("%w: redis: %v", ErrUnavailable, err)
			}
		}
		return s.enqueue(ctx, updated, spec, msg, updated.RequestID)
	})
	if err == nil && !ok {
		err = ErrConflict
	}
	if err != nil {
		if errors.Is(err, ErrConflict) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
			return store.Task{}, err
		}
		return store.Task{}, translate("retry task "+id, err)
	}
	updated.Params = RedactParams(updated.Type, updated.Params)
	return updated, nil
}

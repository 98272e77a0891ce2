package taskservice

import (
	"context"

	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// CancelResult is the outcome of Cancel.
type CancelResult struct {
	// Task is the row after the cancel, params redacted.
	Task store.Task
	// Requested is true when the task was running: cancel_requested is set and
	// the worker was told to stop; the task reaches cancelled later (the API
	// answers 202). When false the task is cancelled already (200).
	Requested bool
}

// cancelAttempts bounds how often Cancel re-reads a row whose state changed
// under it (pending → running, say) before giving up with ErrConflict.
const cancelAttempts = 5

// Cancel cancels a task p may see, following the lifecycle protocol: a pending
// or retrying task is cancelled at once and removed from Asynq; a running task
// gets cancel_requested and a best-effort CancelProcessing; a terminal task is
// ErrConflict. Every change is a conditional update, so a cancel racing the
// worker's own transitions ends in exactly one terminal state.
func (s *Service) Cancel(ctx context.Context, p auth.Principal, id string) (CancelResult, error) {
	for range cancelAttempts {
		row, err := s.find(ctx, s.db, p, id)
		if err != nil {
			return CancelResult{}, err
		}
		if !p.CanCreate() {
			return CancelResult{}, ErrForbidden
		}
		switch row.Status {
		case tasks.StatusPending, tasks.StatusRetrying:
			updated, ok, err := s.lc.Cancel(ctx, row.ID)
			if err != nil {
				return CancelResult{}, translate("cancel task "+row.ID, err)
			}
			if !ok {
				continue // the worker moved it meanwhile: decide again
			}
			s.dequeue(updated)
			updated.Params = RedactParams(updated.Type, updated.Params)
			return CancelResult{Task: updated}, nil
		case tasks.StatusRunning:
			updated, ok, err := s.lc.RequestCancel(ctx, row.ID)
			if err != nil {
				return CancelResult{}, translate("cancel task "+row.ID, err)
			}
			if !ok {
				continue
			}
			if err := s.inspector.CancelProcessing(row.ID); err != nil {
				// Best effort: the worker also polls cancel_requested.
				s.log.Warn("cancel signal not published", zap.String("task_id", row.ID), zap.Error(err))
			}
			updated.Params = RedactParams(updated.Type, updated.Params)
			return CancelResult{Task: updated, Requested: true}, nil
		default:
			return CancelResult{}, ErrConflict
		}
	}
	return CancelResult{}, ErrConflict
}

// dequeue removes a cancelled task from Asynq. A task that is gone is fine; a
// task already active is told to stop (the worker finds the row cancelled and
// revokes it). If Redis is down the row stays cancelled and the worker revokes
// the task when it is delivered, so the cancel still holds.
func (s *Service) dequeue(row store.Task) {
	got, err := queue.Remove(s.inspector, row.Priority, row.ID)
	switch {
	case err != nil:
		s.log.Warn("cancelled task left in the queue for the worker to revoke", zap.String("task_id", row.ID), zap.Error(err))
	case got == queue.Active:
		if err := s.inspector.CancelProcessing(row.ID); err != nil {
			s.log.Warn("cancel signal not published", zap.String("task_id", row.ID), zap.Error(err))
		}
	}
}

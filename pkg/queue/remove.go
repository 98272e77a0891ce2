package queue

import (
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
)

// Removal is what Remove found.
type Removal int

const (
	// Removed: the task was in the queue (pending, scheduled, retry,
	// archived or completed) and is gone now.
	Removed Removal = iota + 1
	// Absent: neither the task nor its queue was there.
	Absent
	// Active: a worker is processing the task; Asynq does not delete an
	// active task. Tell it to stop with CancelProcessing, or try again once
	// it has left the active set.
	Active
)

// Remove deletes task id from queue in Asynq and says what it found. Every
// part of Taskforge that takes a task out of Asynq calls it. An error means
// Redis could not be asked (it is down, say): the task may still be queued.
func Remove(insp *asynq.Inspector, queue, id string) (Removal, error) {
	err := insp.DeleteTask(queue, id)
	switch {
	case err == nil:
		return Removed, nil
	case isAbsent(err):
		return Absent, nil
	}
	// Asynq refuses to delete an active task with an error it exports no
	// sentinel for: ask the task's state instead of reading the message.
	info, ierr := insp.GetTaskInfo(queue, id)
	switch {
	case ierr == nil && info.State == asynq.TaskStateActive:
		return Active, nil
	case ierr != nil && isAbsent(ierr):
		return Absent, nil // gone between the two calls
	}
	return 0, fmt.Errorf("queue: remove %s from %s: %w", id, queue, err)
}

func isAbsent(err error) bool {
	return errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound)
}

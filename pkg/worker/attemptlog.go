package worker

import (
	"fmt"
	"time"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// Every attempt leaves two lines in the task's log, written by the runtime
// whatever the handler logs: one when it starts and one when it ends, with the
// error and what happens next, so a task's log tells its whole history.

// attemptStartLog is the line of an attempt's start.
func attemptStartLog(key attemptKey, ts time.Time, workerID, queue string) logRow {
	return logRow{key: key, ts: ts.UTC(), level: job.Info,
		msg:    fmt.Sprintf("attempt %d started", key.attempt),
		fields: fieldsJSON(map[string]any{"worker": workerID, "queue": queue})}
}

// attemptEndLog is the line of an attempt's outcome.
func attemptEndLog(key attemptKey, op *finishOp) logRow {
	fields := map[string]any{"outcome": op.outcome, "duration_ms": op.durationMs}
	level, msg := job.Info, ""
	switch op.status {
	case tasks.StatusCompleted:
		msg = fmt.Sprintf("attempt %d completed", key.attempt)
	case tasks.StatusRetrying:
		level = job.Warn
		msg = fmt.Sprintf("attempt %d failed: %s", key.attempt, op.errorMsg)
		if op.nextRetryAt != nil {
			fields["next_retry_at"] = op.nextRetryAt.UTC().Format(time.RFC3339Nano)
			msg += "; retrying at " + op.nextRetryAt.UTC().Format(time.RFC3339)
		}
	case tasks.StatusCancelled:
		level = job.Warn
		msg = fmt.Sprintf("attempt %d cancelled", key.attempt)
	default:
		level = job.Error
		msg = fmt.Sprintf("attempt %d failed: %s; no retry follows", key.attempt, op.errorMsg)
	}
	if op.errorKind != "" {
		fields["error_kind"] = op.errorKind
	}
	return logRow{key: key, ts: op.ts, level: level, msg: clean(msg, maxLogLen), fields: fieldsJSON(fields)}
}

package handlers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// EnvTestHandlers, set to 1, makes the worker register Testing's handlers
// over the real ones. It exists for the worker's own process-level tests
// (crash recovery, drain, type limits across processes) and must never be set
// in a deployment.
const EnvTestHandlers = "TASKFORGE_WORKER_TEST_HANDLERS"

// Testing returns scriptable handlers for backup_data, driven by the first
// entry of params.tables:
//
//	sleep_<ms>   run for ms milliseconds, reporting progress, honouring ctx
//	fail         return an error (retried)
//	permanent    return a permanent error
//	panic        panic
//
// Anything else completes at once.
func Testing() map[string]job.Handler {
	return map[string]job.Handler{
		tasks.TypeBackupData: job.Typed(func(ctx context.Context, r job.Reporter, p *taskpb.BackupDataParams) error {
			cmd := ""
			if len(p.GetTables()) > 0 {
				cmd = p.GetTables()[0]
			}
			switch {
			case strings.HasPrefix(cmd, "sleep_"):
				ms, err := strconv.Atoi(strings.TrimPrefix(cmd, "sleep_"))
				if err != nil {
					return job.Permanent(fmt.Errorf("bad sleep %q", cmd))
				}
				total := time.Duration(ms) * time.Millisecond
				start := time.Now()
				for time.Since(start) < total {
					r.Progress(float64(time.Since(start))/float64(total), "sleeping", "")
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(100 * time.Millisecond):
					}
				}
				return r.SetResult(map[string]any{"slept_ms": ms, "attempt": r.Attempt()})
			case cmd == "fail":
				return errors.New("scripted failure")
			case cmd == "permanent":
				return job.Permanent(errors.New("scripted permanent failure"))
			case cmd == "panic":
				panic("scripted panic")
			}
			return nil
		}),
	}
}

package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

// Reads an admin makes of other callers' tasks, as the action of their
// admin.override audit rows.
const (
	readTask   = "task.read"
	readLogs   = "task.read_logs"
	readResult = "task.read_result"
)

// recordRead audits an admin's read of a task created by someone else. The
// rows are aggregated per admin, task and kind of read and minute, so that a
// dashboard polling a task adds one row a minute, not one per request.
func (s *Server) recordRead(c echo.Context, what, taskID, owner string) {
	p := principal(c)
	if !p.IsAdmin() || owner == p.ID || taskID == "" {
		return
	}
	s.record(c, audit.Entry{Action: audit.ActionAdminOverride, ResourceType: audit.ResourceTask, ResourceID: taskID,
		Outcome: audit.Success, Details: map[string]any{"action": what, "owner": owner},
		Aggregate: p.ID + "|" + what + "|" + taskID})
}

// recordReadOf is recordRead for a read whose handler did not load the task
// (logs, results): the owner is looked up only for admins, and only after a
// successful answer.
func (s *Server) recordReadOf(c echo.Context, what, taskID string) {
	if !principal(c).IsAdmin() || c.Response().Status >= http.StatusBadRequest {
		return
	}
	t, err := s.tasks.Get(c.Request().Context(), principal(c), taskID)
	if err != nil {
		return
	}
	s.recordRead(c, what, t.ID, t.CreatedBy)
}

// checkCreate applies the API's rules on a create request beyond the type's
// own validation: the audit log's minimum retention for cleanup_old_data
// (422 naming older_than_days).
func (s *Server) checkCreate(spec tasks.Spec, req taskservice.CreateRequest) error {
	if spec.Name != tasks.TypeCleanupOldData || len(req.Params) == 0 {
		return nil
	}
	msg, err := tasks.DecodeParams(spec, req.Params, "params")
	if err != nil {
		// The task service reports bad params with every field.
		return nil
	}
	p, ok := msg.(*taskpb.CleanupOldDataParams)
	if !ok {
		return nil
	}
	if errs := tasks.CheckAuditRetention(p, s.auditMin); len(errs) > 0 {
		return &tasks.ValidationError{Errors: []tasks.FieldError{{Field: "params." + errs[0].Field, Message: errs[0].Message}}}
	}
	return nil
}

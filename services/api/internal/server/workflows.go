package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/workflow"
)

// The workflows endpoints serve /api/v1/workflows: create a workflow (a DAG
// of task steps), list, read and cancel them. Operators and admins create
// and cancel; a caller sees its own, admins every one. The rules live in
// pkg/workflow; these handlers map HTTP to them.

var workflowIDPattern = regexp.MustCompile(`^wf_[0-9a-z]{26}$`)

// registerWorkflows adds the workflows routes to v1. Without a workflow
// service the routes exist and answer 503.
func (s *Server) registerWorkflows(v1 *echo.Group, authed echo.MiddlewareFunc) {
	v1.GET("/workflows", s.listWorkflows, authed)
	v1.POST("/workflows", s.createWorkflow, authed)
	v1.GET("/workflows/:workflow_id", s.getWorkflow, authed)
	v1.DELETE("/workflows/:workflow_id", s.cancelWorkflow, authed)
}

// workflowService checks that the caller is authenticated and returns the
// service, or the 503 of a server without one.
func (s *Server) workflowService(c echo.Context) (*workflow.Service, error) {
	if !principal(c).Role.Valid() {
		return nil, errUnauthenticated
	}
	if s.workflows == nil {
		return nil, newError(http.StatusServiceUnavailable, "unavailable", "workflows are not configured on this server")
	}
	return s.workflows, nil
}

// workflowError maps the workflow service's errors to the API's.
func workflowError(err error) error {
	switch {
	case errors.Is(err, workflow.ErrNotFound):
		return newError(http.StatusNotFound, "not-found", "no such workflow")
	case errors.Is(err, workflow.ErrConflict):
		return newError(http.StatusConflict, "conflict", "the workflow has ended")
	case errors.Is(err, workflow.ErrForbidden):
		return errForbidden
	}
	return err
}

// parseWorkflow decodes a workflow body, naming every wrong field
// (steps[1].depends_on): malformed JSON → 400, wrong fields → 422.
func parseWorkflow(body []byte) (workflow.Definition, error) {
	var def workflow.Definition
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return def, badRequest("body", "must be a JSON object")
	}
	var errs []tasks.FieldError
	for name, v := range top {
		switch name {
		case "name":
			if json.Unmarshal(v, &def.Name) != nil {
				errs = append(errs, tasks.FieldError{Field: "name", Message: "must be a string"})
			}
		case "steps":
			steps, err := workflow.ParseSteps(v, "steps")
			if ve, ok := tasks.AsValidation(err); ok {
				errs = append(errs, ve.Errors...)
			}
			def.Steps = steps
		default:
			errs = append(errs, tasks.FieldError{Field: name, Message: "unknown field"})
		}
	}
	if len(errs) > 0 {
		return def, &tasks.ValidationError{Errors: sortFields(errs)}
	}
	return def, nil
}

// createWorkflow handles POST /api/v1/workflows (operators and admins).
func (s *Server) createWorkflow(c echo.Context) error {
	id, err := s.doCreateWorkflow(c)
	o, details := outcome(err)
	s.record(c, audit.Entry{Action: audit.ActionWorkflowCreate, ResourceType: audit.ResourceWorkflow, ResourceID: id, Outcome: o, Details: details})
	return err
}

func (s *Server) doCreateWorkflow(c echo.Context) (string, error) {
	svc, err := s.workflowService(c)
	if err != nil {
		return "", err
	}
	p := principal(c)
	if !p.CanCreate() {
		return "", errForbidden
	}
	if !isJSON(c.Request().Header.Get(echo.HeaderContentType)) {
		return "", newError(http.StatusUnsupportedMediaType, "unsupported-media-type", "the body must be application/json")
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return "", err
		}
		return "", badRequest("body", "could not be read")
	}
	def, err := parseWorkflow(body)
	if err != nil {
		return "", err
	}
	// The API's own rules of a create, per step.
	for i, st := range def.Steps {
		spec, ok := tasks.Lookup(st.Task.Type)
		if !ok {
			continue // the service names the unknown type
		}
		if err := s.createRules(p, spec, st.Task); err != nil {
			var ve *tasks.ValidationError
			var ae *apiError
			switch {
			case errors.As(err, &ve):
				for j := range ve.Errors {
					ve.Errors[j].Field = fmt.Sprintf("steps[%d].%s", i, ve.Errors[j].Field)
				}
			case errors.As(err, &ae):
				ae.Detail = fmt.Sprintf("steps[%d]: %s", i, ae.Detail)
			}
			return "", err
		}
	}
	v, err := svc.Create(c.Request().Context(), p, def, requestID(c))
	if err != nil {
		return "", workflowError(err)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/workflows/"+v.ID)
	return v.ID, writeJSON(c, http.StatusCreated, workflowViewOf(v))
}

// listWorkflows handles GET /api/v1/workflows.
func (s *Server) listWorkflows(c echo.Context) error {
	svc, err := s.workflowService(c)
	if err != nil {
		return err
	}
	q := workflow.ListQuery{Status: c.QueryParam("status"), Cursor: c.QueryParam("cursor")}
	switch q.Status {
	case "", workflow.StatusPending, workflow.StatusRunning, workflow.StatusCompleted, workflow.StatusFailed, workflow.StatusCancelled:
	default:
		return badRequest("status", "must be pending, running, completed, failed or cancelled")
	}
	if q.Cursor != "" && !workflowIDPattern.MatchString(q.Cursor) {
		return badRequest("cursor", "is not a cursor of this list")
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return badRequest("limit", "must be an integer between 1 and 100")
		}
		q.Limit = n
	}
	rows, next, err := svc.List(c.Request().Context(), principal(c), q)
	if err != nil {
		return err
	}
	page := workflowList{Items: make([]workflowView, 0, len(rows))}
	for _, r := range rows {
		page.Items = append(page.Items, workflowViewOf(workflow.View{Workflow: r}))
	}
	if next != "" {
		page.NextCursor = &next
	}
	return writeJSON(c, http.StatusOK, page)
}

// getWorkflow handles GET /api/v1/workflows/{workflow_id}.
func (s *Server) getWorkflow(c echo.Context) error {
	svc, err := s.workflowService(c)
	if err != nil {
		return err
	}
	id := c.Param("workflow_id")
	if !workflowIDPattern.MatchString(id) {
		return workflowError(workflow.ErrNotFound)
	}
	v, err := svc.Get(c.Request().Context(), principal(c), id)
	if err != nil {
		return workflowError(err)
	}
	return writeJSON(c, http.StatusOK, workflowViewOf(v))
}

// cancelWorkflow handles DELETE /api/v1/workflows/{workflow_id}.
func (s *Server) cancelWorkflow(c echo.Context) error {
	id := c.Param("workflow_id")
	err := s.doCancelWorkflow(c, id)
	o, details := outcome(err)
	s.record(c, audit.Entry{Action: audit.ActionWorkflowCancel, ResourceType: audit.ResourceWorkflow, ResourceID: id, Outcome: o, Details: details})
	return err
}

func (s *Server) doCancelWorkflow(c echo.Context, id string) error {
	svc, err := s.workflowService(c)
	if err != nil {
		return err
	}
	if !workflowIDPattern.MatchString(id) {
		return workflowError(workflow.ErrNotFound)
	}
	v, err := svc.Cancel(c.Request().Context(), principal(c), id, requestID(c))
	if err != nil {
		return workflowError(err)
	}
	return writeJSON(c, http.StatusOK, workflowViewOf(v))
}

// workflowView is a workflow as the API shows it.
type workflowView struct {
	WorkflowID      string             `json:"workflow_id"`
	Name            string             `json:"name"`
	Status          string             `json:"status"`
	CreatedBy       string             `json:"created_by"`
	CancelRequested bool               `json:"cancel_requested"`
	CreatedAt       time.Time          `json:"created_at"`
	UpdatedAt       time.Time          `json:"updated_at"`
	CompletedAt     *time.Time         `json:"completed_at"`
	Steps           []workflowStepView `json:"steps,omitempty"`
}

type workflowStepView struct {
	ID        string   `json:"id"`
	Type      string   `json:"type"`
	DependsOn []string `json:"depends_on"`
	TaskID    *string  `json:"task_id"`
	Status    string   `json:"status"`
	Error     string   `json:"error,omitempty"`
}

type workflowList struct {
	Items      []workflowView `json:"items"`
	NextCursor *string        `json:"next_cursor"`
}

func workflowViewOf(v workflow.View) workflowView {
	out := workflowView{WorkflowID: v.ID, Name: v.Name, Status: v.Status, CreatedBy: v.CreatedBy, CancelRequested: v.CancelRequested,
		CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt, CompletedAt: v.CompletedAt}
	for _, st := range v.Steps {
		sv := workflowStepView{ID: st.ID, Type: st.Type, DependsOn: st.DependsOn, Status: st.Status, Error: st.Error}
		if sv.DependsOn == nil {
			sv.DependsOn = []string{}
		}
		if st.TaskID != "" {
			id := st.TaskID
			sv.TaskID = &id
		}
		out.Steps = append(out.Steps, sv)
	}
	return out
}

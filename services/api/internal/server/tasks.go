package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

// HeaderIdempotencyKey carries an idempotency key; it may also come in the
// body's idempotency_key field. If both are given they must be equal (else 400).
const HeaderIdempotencyKey = "Idempotency-Key"

// createTask handles POST /api/v1/tasks. Every attempt is audited, refused
// ones included; the audit row names the type, never the params.
func (s *Server) createTask(c echo.Context) error {
	var d createAudit
	err := s.doCreateTask(c, &d)
	if err == nil && d.audited {
		return nil // its audit row was written with the task
	}
	details := map[string]any{}
	if d.typ != "" {
		details["type"] = trimmed(d.typ)
	}
	if d.replay {
		details["idempotent_replay"] = true
	}
	s.recordTask(c, audit.ActionTaskCreate, d.taskID, "", err, details)
	return err
}

// createAudit is what doCreateTask tells createTask's audit row.
type createAudit struct {
	typ, taskID string
	replay      bool
	// audited: the success's row was written with the task's.
	audited bool
}

func (s *Server) doCreateTask(c echo.Context, d *createAudit) error {
	p := principal(c)
	if !auth.Allowed(p, auth.CreateTask) {
		return errForbidden
	}
	if !isJSON(c.Request().Header.Get(echo.HeaderContentType)) {
		return newError(http.StatusUnsupportedMediaType, "unsupported-media-type", "the body must be application/json")
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("body", "could not be read")
	}
	req, err := parseCreate(body)
	d.typ = req.Type
	if err != nil {
		return err
	}
	if h := c.Request().Header.Get(HeaderIdempotencyKey); h != "" {
		if req.IdempotencyKey != "" && req.IdempotencyKey != h {
			return badRequest("idempotency_key", "differs from the Idempotency-Key header")
		}
		req.IdempotencyKey = h
	}
	if spec, ok := tasks.Lookup(req.Type); ok && !auth.CanCreateType(p, spec) {
		return newError(http.StatusForbidden, "forbidden", "only admins may create "+string(spec.Category)+" tasks")
	} else if ok {
		if err := s.createRules(p, spec, req); err != nil {
			return err
		}
	}
	req.CreatedBy, req.Role, req.RequestID = p.ID, string(p.Role), requestID(c)
	if s.audit != nil {
		// The success's row, as createTask would record it, rides on the
		// task's own statement (no statement of its own).
		row, err := audit.NewRow(s.auditEntry(c, audit.Entry{Action: audit.ActionTaskCreate, ResourceType: audit.ResourceTask,
			Outcome: audit.Success, Details: map[string]any{"type": trimmed(req.Type)}}))
		if err != nil {
			return err
		}
		req.Audit = &row
	}
	created, err := s.tasks.Create(c.Request().Context(), req)
	if err != nil {
		return err
	}
	d.taskID, d.replay, d.audited = created.Task.ID, created.Existing, created.Audited
	status := http.StatusCreated
	if created.Existing {
		status = http.StatusOK
		c.Response().Header().Set("Idempotent-Replayed", "true")
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/tasks/"+created.Task.ID)
	return writeJSON(c, status, createdView(created.Task))
}

// createRules are the API's own rules of a create, beside the task
// service's: the caller's priority cap (auth.max_priority) and the extra
// checks of some types.
func (s *Server) createRules(p auth.Principal, spec tasks.Spec, req taskservice.CreateRequest) error {
	priority := req.Priority
	if priority == "" {
		priority = spec.Priority
	}
	if !s.priorities.Allows(p, priority) {
		return newError(http.StatusForbidden, "forbidden", "the "+string(p.Role)+" role may use priorities up to "+
			s.priorities.Max(p)+" (auth.max_priority), not "+priority)
	}
	return s.checkCreate(spec, req)
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == echo.MIMEApplicationJSON
}

// parseCreate decodes the creation body field by field, so that every wrong
// field is named: malformed JSON → 400; unknown fields and wrong types → 422.
func parseCreate(body []byte) (taskservice.CreateRequest, error) {
	var req taskservice.CreateRequest
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return req, badRequest("body", "must be a JSON object")
		}
		return req, badRequest("body", "is not valid JSON")
	}
	if fields == nil {
		return req, badRequest("body", "must be a JSON object")
	}
	var errs []tasks.FieldError
	bad := func(field, msg string) { errs = append(errs, tasks.FieldError{Field: field, Message: msg}) }
	var policy json.RawMessage
	for name, raw := range fields {
		switch name {
		case "type":
			if json.Unmarshal(raw, &req.Type) != nil {
				bad(name, "must be a string")
			}
		case "params":
			req.Params = raw
		case "priority":
			if json.Unmarshal(raw, &req.Priority) != nil {
				bad(name, "must be a string")
			}
		case "scheduled_for":
			var s string
			if json.Unmarshal(raw, &s) != nil {
				bad(name, "must be an RFC 3339 time")
				continue
			}
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				bad(name, "must be an RFC 3339 time")
				continue
			}
			req.ScheduledFor = &t
		case "retry_policy":
			policy = raw
		case "timeout_seconds":
			var n int
			if json.Unmarshal(raw, &n) != nil {
				bad(name, "must be an integer")
				continue
			}
			req.TimeoutSeconds = &n
		case "callback_url":
			if json.Unmarshal(raw, &req.CallbackURL) != nil {
				bad(name, "must be a string")
			}
		case "idempotency_key":
			if json.Unmarshal(raw, &req.IdempotencyKey) != nil {
				bad(name, "must be a string")
			}
		default:
			bad(name, "unknown field")
		}
	}
	if policy != nil && string(policy) != "null" {
		base := tasks.DefaultRetry
		if spec, ok := tasks.Lookup(req.Type); ok {
			base = spec.Retry
		}
		p, perrs := tasks.OverlayRetryPolicy(policy, base)
		errs = append(errs, perrs...)
		req.RetryPolicy = &p
	}
	if len(errs) > 0 {
		return req, &tasks.ValidationError{Errors: sortFields(errs)}
	}
	return req, nil
}

func sortFields(errs []tasks.FieldError) []tasks.FieldError {
	for i := 1; i < len(errs); i++ {
		for j := i; j > 0 && errs[j].Field < errs[j-1].Field; j-- {
			errs[j], errs[j-1] = errs[j-1], errs[j]
		}
	}
	return errs
}

// listTasks handles GET /api/v1/tasks.
func (s *Server) listTasks(c echo.Context) error {
	q := c.QueryParams()
	lq := taskservice.ListQuery{Type: q.Get("type"), Priority: q.Get("priority"), Sort: q.Get("sort"), Cursor: q.Get("cursor"),
		ScheduleID: q.Get("schedule_id"), TriggerID: q.Get("trigger_id"),
		WorkflowID: q.Get("workflow_id")}
	if v := q.Get("status"); v != "" {
		lq.Statuses = strings.Split(v, ",")
	}
	var err error
	if lq.CreatedAfter, err = queryTime(q.Get("created_after"), "created_after"); err != nil {
		return err
	}
	if lq.CreatedBefore, err = queryTime(q.Get("created_before"), "created_before"); err != nil {
		return err
	}
	if lq.Limit, err = queryLimit(q.Get("limit"), taskservice.DefaultListLimit); err != nil {
		return err
	}
	page, err := s.tasks.List(c.Request().Context(), principal(c), lq)
	if err != nil {
		return err
	}
	// A page's ETag is the digest of its body: it changes with any item's
	// version, the total or the cursor.
	var body bytes.Buffer
	body.Grow(256 + len(page.Items)*1024) // a list item is about 1 KiB
	if err := s.listItems.listBody(&body, page); err != nil {
		return err
	}
	sum := sha256.Sum256(body.Bytes())
	if notModified(c, `"p`+base64.RawURLEncoding.EncodeToString(sum[:18])+`"`) {
		return nil
	}
	c.Response().Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	c.Response().WriteHeader(http.StatusOK)
	_, err = c.Response().Write(body.Bytes())
	return err
}

// notModified sets etag (a strong validator) and answers 304 when the
// request's If-None-Match names it (RFC 9110: weak comparison; "*" matches).
func notModified(c echo.Context, etag string) bool {
	c.Response().Header().Set("ETag", etag)
	inm := c.Request().Header.Get("If-None-Match")
	if inm == "" {
		return false
	}
	for _, tag := range strings.Split(inm, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == etag {
			_ = c.NoContent(http.StatusNotModified)
			return true
		}
	}
	return false
}

// taskETag is the strong ETag of a task: its row's version.
func taskETag(t store.Task) string { return `"v` + strconv.FormatInt(t.Version, 10) + `"` }

func queryTime(v, field string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, badRequest(field, "must be an RFC 3339 time")
	}
	return &t, nil
}

func queryLimit(v string, def int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > taskservice.MaxListLimit {
		return 0, badRequest("limit", "must be an integer between 1 and 500")
	}
	return n, nil
}

// getTask handles GET /api/v1/tasks/{task_id}.
func (s *Server) getTask(c echo.Context) error {
	t, err := s.tasks.Get(c.Request().Context(), principal(c), c.Param("task_id"))
	if err != nil {
		return err
	}
	s.recordRead(c, readTask, t.ID, t.CreatedBy)
	if notModified(c, taskETag(t)) {
		return nil
	}
	return writeJSON(c, http.StatusOK, taskDetails(t))
}

// cancelTask handles DELETE /api/v1/tasks/{task_id}: 200 when cancelled, 202
// when the running task was told to stop.
func (s *Server) cancelTask(c echo.Context) error {
	r, err := s.tasks.Cancel(c.Request().Context(), principal(c), c.Param("task_id"))
	s.recordTask(c, audit.ActionTaskCancel, trimmed(c.Param("task_id")), r.Task.CreatedBy, err, nil)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if r.Requested {
		status = http.StatusAccepted
	}
	return writeJSON(c, status, taskDetails(r.Task))
}

// retryTask handles POST /api/v1/tasks/{task_id}/retry.
func (s *Server) retryTask(c echo.Context) error {
	t, err := s.tasks.Retry(c.Request().Context(), principal(c), c.Param("task_id"))
	s.recordTask(c, audit.ActionTaskRetry, trimmed(c.Param("task_id")), t.CreatedBy, err, nil)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, taskDetails(t))
}

// taskLogs handles GET /api/v1/tasks/{task_id}/logs.
func (s *Server) taskLogs(c echo.Context) error {
	q := c.QueryParams()
	lq := taskservice.LogQuery{Level: q.Get("level"), Cursor: q.Get("cursor")}
	if v := q.Get("attempt"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return badRequest("attempt", "must be a non-negative integer")
		}
		lq.Attempt = &n
	}
	var err error
	if lq.Limit, err = queryLimit(q.Get("limit"), taskservice.DefaultLogLimit); err != nil {
		return err
	}
	logs, err := s.tasks.Logs(c.Request().Context(), principal(c), c.Param("task_id"), lq)
	if err != nil {
		return err
	}
	s.recordReadOf(c, readLogs, logs.TaskID)
	return writeJSON(c, http.StatusOK, logsView(logs))
}

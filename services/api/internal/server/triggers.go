package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/trigger"
)

// The triggers endpoints serve the event triggers under /api/v1/triggers
// (admins manage every trigger, operators their own, viewers none) and the
// webhook triggers' hooks under /api/v1/hooks, which take no bearer token:
// the Standard Webhooks signature is their credential. The rules live in
// pkg/trigger; these handlers map HTTP to them.

// hookRoute is the webhook hooks' route (limitBody lets its handler refuse,
// and record, an oversized body).
const hookRoute = "/api/v1/hooks/:trigger_id"

// triggerIDPattern is the shape of a trigger id; anything else is unknown.
var triggerIDPattern = regexp.MustCompile(`^trg_[0-9a-z]{26}$`)

// DefaultHookRateLimit is a webhook trigger's own limit when
// Options.HookRateLimit is zero: sustained deliveries per second and burst.
var DefaultHookRateLimit = struct {
	RPS   float64
	Burst int
}{RPS: 10, Burst: 50}

var (
	errTriggerNotFound = newError(http.StatusNotFound, "not-found", "no such trigger")
	errTriggerRole     = newError(http.StatusForbidden, "forbidden", "only operators and admins manage triggers")
	errTriggersOff     = newError(http.StatusServiceUnavailable, "unavailable", "triggers are not configured on this server")
)

// registerTriggers adds the triggers routes to v1. The hook route is outside
// the bearer authentication but behind the per-address limit (hookGuard) and,
// as every route, the body limit. Without a trigger service the routes exist
// and answer 503 (the hook 404).
func (s *Server) registerTriggers(v1 *echo.Group, authed echo.MiddlewareFunc) {
	v1.GET("/triggers", s.listTriggers, authed)
	v1.POST("/triggers", s.createTrigger, authed)
	v1.GET("/triggers/:trigger_id", s.getTrigger, authed)
	v1.PATCH("/triggers/:trigger_id", s.patchTrigger, authed)
	v1.DELETE("/triggers/:trigger_id", s.deleteTrigger, authed)
	v1.GET("/triggers/:trigger_id/deliveries", s.triggerDeliveries, authed)
	v1.POST("/triggers/:trigger_id/rotate-secret", s.rotateTriggerSecret, authed)
	v1.POST("/hooks/:trigger_id", s.deliverHook, s.hookGuard)
}

// triggerStore checks the caller may manage triggers (auditing a refusal of
// a change) and that id, unless empty, has the shape of a trigger id.
func (s *Server) triggerStore(c echo.Context, action, id string) (*trigger.Store, error) {
	p := principal(c)
	if !p.Role.Valid() {
		return nil, errUnauthenticated
	}
	if !auth.Allowed(p, auth.ManageTriggers) {
		if action != "" {
			s.recordTrigger(c, action, id, errTriggerRole)
		}
		return nil, errTriggerRole
	}
	if s.triggers == nil {
		return nil, errTriggersOff
	}
	if id != "" && !triggerIDPattern.MatchString(id) {
		return nil, errTriggerNotFound
	}
	return s.triggers.Store(), nil
}

// triggerError maps pkg/trigger's errors to problems.
func triggerError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, trigger.ErrNotFound):
		return errTriggerNotFound
	case errors.Is(err, trigger.ErrBadCursor):
		return badRequest("cursor", "is not a cursor of this list")
	case errors.Is(err, trigger.ErrOwnersTable):
		return newError(http.StatusForbidden, "forbidden", "only admins may watch holdings and portfolios: their rows belong to other owners")
	case errors.Is(err, trigger.ErrNotWebhook):
		return newError(http.StatusConflict, "conflict", "only webhook triggers have a secret")
	case errors.Is(err, trigger.ErrUnavailable):
		return newError(http.StatusServiceUnavailable, "unavailable", "a dependency is unavailable; try again later")
	}
	return err
}

// recordTrigger audits a trigger change with the outcome of err.
func (s *Server) recordTrigger(c echo.Context, action, id string, err error) {
	o, details := outcome(err)
	s.record(c, audit.Entry{Action: action, ResourceType: audit.ResourceTrigger, ResourceID: id, Outcome: o, Details: details})
}

// listTriggers handles GET /api/v1/triggers.
func (s *Server) listTriggers(c echo.Context) error {
	st, err := s.triggerStore(c, "", "")
	if err != nil {
		return err
	}
	limit, err := queryLimit(c.QueryParam("limit"), trigger.DefaultLimit)
	if err != nil {
		return err
	}
	page, err := st.List(c.Request().Context(), principal(c), limit, c.QueryParam("cursor"))
	return answer(c, http.StatusOK, page, triggerError(err))
}

// getTrigger handles GET /api/v1/triggers/{trigger_id}.
func (s *Server) getTrigger(c echo.Context) error {
	id := c.Param("trigger_id")
	st, err := s.triggerStore(c, "", id)
	if err != nil {
		return err
	}
	t, err := st.Get(c.Request().Context(), principal(c), id)
	return answer(c, http.StatusOK, t, triggerError(err))
}

// triggerDeliveries handles GET /api/v1/triggers/{trigger_id}/deliveries.
func (s *Server) triggerDeliveries(c echo.Context) error {
	id := c.Param("trigger_id")
	st, err := s.triggerStore(c, "", id)
	if err != nil {
		return err
	}
	limit, err := queryLimit(c.QueryParam("limit"), trigger.DefaultLimit)
	if err != nil {
		return err
	}
	page, err := st.Deliveries(c.Request().Context(), principal(c), id, limit, c.QueryParam("cursor"))
	return answer(c, http.StatusOK, page, triggerError(err))
}

// createTrigger handles POST /api/v1/triggers.
func (s *Server) createTrigger(c echo.Context) error {
	st, err := s.triggerStore(c, audit.ActionTriggerCreate, "")
	if err != nil {
		return err
	}
	in, err := decodeTrigger(c)
	if err == nil {
		err = s.checkTriggerTask(c, in)
	}
	if err != nil {
		s.recordTrigger(c, audit.ActionTriggerCreate, "", err)
		return err
	}
	t, err := st.Create(c.Request().Context(), in, principal(c))
	err = triggerError(err)
	s.recordTrigger(c, audit.ActionTriggerCreate, t.ID, err)
	if err == nil {
		c.Response().Header().Set(echo.HeaderLocation, "/api/v1/triggers/"+t.ID)
	}
	return answer(c, http.StatusCreated, t, err)
}

// patchTrigger handles PATCH /api/v1/triggers/{trigger_id}.
func (s *Server) patchTrigger(c echo.Context) error {
	id := c.Param("trigger_id")
	st, err := s.triggerStore(c, audit.ActionTriggerUpdate, id)
	if err != nil {
		return err
	}
	in, err := decodeTrigger(c)
	if err == nil {
		err = s.checkTriggerTask(c, in)
	}
	if err != nil {
		s.recordTrigger(c, audit.ActionTriggerUpdate, id, err)
		return err
	}
	t, err := st.Patch(c.Request().Context(), principal(c), id, in)
	err = triggerError(err)
	s.recordTrigger(c, audit.ActionTriggerUpdate, id, err)
	return answer(c, http.StatusOK, t, err)
}

// deleteTrigger handles DELETE /api/v1/triggers/{trigger_id}.
func (s *Server) deleteTrigger(c echo.Context) error {
	id := c.Param("trigger_id")
	st, err := s.triggerStore(c, audit.ActionTriggerDelete, id)
	if err != nil {
		return err
	}
	err = triggerError(st.Delete(c.Request().Context(), principal(c), id))
	s.recordTrigger(c, audit.ActionTriggerDelete, id, err)
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// rotateTriggerSecret handles POST /api/v1/triggers/{trigger_id}/rotate-secret.
func (s *Server) rotateTriggerSecret(c echo.Context) error {
	id := c.Param("trigger_id")
	st, err := s.triggerStore(c, audit.ActionTriggerRotate, id)
	if err != nil {
		return err
	}
	r, err := st.RotateSecret(c.Request().Context(), principal(c), id)
	err = triggerError(err)
	s.recordTrigger(c, audit.ActionTriggerRotate, id, err)
	return answer(c, http.StatusOK, r, err)
}

// checkTriggerTask holds a trigger's task to what its owner may create
// directly: admin-only types and the role's highest priority.
func (s *Server) checkTriggerTask(c echo.Context, in trigger.Input) error {
	if in.Task == nil {
		return nil
	}
	p := principal(c)
	spec, ok := tasks.Lookup(in.Task.Type)
	if !ok {
		return nil // pkg/trigger names the field
	}
	if !auth.CanCreateType(p, spec) {
		return newError(http.StatusForbidden, "forbidden", "only admins may create "+string(spec.Category)+" tasks")
	}
	priority := in.Task.Priority
	if priority == "" {
		priority = spec.Priority
	}
	if queue.ValidPriority(priority) && !s.priorities.Allows(p, priority) {
		return newError(http.StatusForbidden, "forbidden", "the "+string(p.Role)+" role may use priorities up to "+
			s.priorities.Max(p)+" (auth.max_priority), not "+priority)
	}
	return nil
}

// triggerFields are the request body's fields and the JSON kind each must have.
var triggerFields = map[string]string{
	"name": "string", "kind": "string", "enabled": "boolean", "task": "object", "table": "string",
	"operations": "array", "debounce_seconds": "integer", "filter": "object", "workflow": "object",
}

// decodeTrigger reads a JSON object body: malformed JSON is a 400; unknown
// fields and fields of the wrong kind are 422 naming them. A null field is
// absent.
func decodeTrigger(c echo.Context) (trigger.Input, error) {
	var in trigger.Input
	if !isJSON(c.Request().Header.Get(echo.HeaderContentType)) {
		return in, newError(http.StatusUnsupportedMediaType, "unsupported-media-type", "the body must be application/json")
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return in, err
		}
		return in, badRequest("body", "could not be read")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return in, badRequest("body", "must be a JSON object")
	}
	var errs []tasks.FieldError
	for name, value := range raw {
		kind, known := triggerFields[name]
		if !known {
			errs = append(errs, tasks.FieldError{Field: name, Message: "unknown field"})
			continue
		}
		if bytes.Equal(bytes.TrimSpace(value), []byte("null")) {
			continue
		}
		if name == "task" {
			t, ferrs := decodeTriggerTask(value)
			errs = append(errs, ferrs...)
			in.Task = &t
			continue
		}
		if err := decodeTriggerField(&in, name, value); err != nil {
			errs = append(errs, tasks.FieldError{Field: name, Message: "must be " + article(kind)})
		}
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Field < errs[j].Field })
		return in, newError(http.StatusUnprocessableEntity, "validation", "the request breaks a rule", errs...)
	}
	return in, nil
}

func decodeTriggerField(in *trigger.Input, name string, value json.RawMessage) error {
	switch name {
	case "name":
		return json.Unmarshal(value, &in.Name)
	case "kind":
		return json.Unmarshal(value, &in.Kind)
	case "enabled":
		return json.Unmarshal(value, &in.Enabled)
	case "table":
		return json.Unmarshal(value, &in.Table)
	case "operations":
		in.Operations = []string{}
		return json.Unmarshal(value, &in.Operations)
	case "debounce_seconds":
		return json.Unmarshal(value, &in.DebounceSeconds)
	case "workflow":
		if t := bytes.TrimSpace(value); len(t) == 0 || t[0] != '{' {
			return errors.New("not an object")
		}
		in.Workflow = value
		return nil
	case "filter":
		d := json.NewDecoder(bytes.NewReader(value))
		d.DisallowUnknownFields()
		var f trigger.Filter
		if err := d.Decode(&f); err != nil {
			return err
		}
		in.Filter = &f
		return nil
	}
	return errors.New("unknown field " + name)
}

// decodeTriggerTask decodes the task template field by field, naming every
// wrong one under "task.".
func decodeTriggerTask(value json.RawMessage) (trigger.Template, []tasks.FieldError) {
	var t trigger.Template
	var fields map[string]json.RawMessage
	if json.Unmarshal(value, &fields) != nil || fields == nil {
		return t, []tasks.FieldError{{Field: "task", Message: "must be an object"}}
	}
	var errs []tasks.FieldError
	bad := func(name, msg string) { errs = append(errs, tasks.FieldError{Field: "task." + name, Message: msg}) }
	for name, raw := range fields {
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue
		}
		switch name {
		case "type":
			if json.Unmarshal(raw, &t.Type) != nil {
				bad(name, "must be a string")
			}
		case "params":
			if tr := bytes.TrimSpace(raw); len(tr) == 0 || tr[0] != '{' {
				bad(name, "must be an object")
			}
			t.Params = raw
		case "param_map":
			if json.Unmarshal(raw, &t.ParamMap) != nil {
				bad(name, "must be an object of JSON Pointer strings")
			}
		case "priority":
			if json.Unmarshal(raw, &t.Priority) != nil {
				bad(name, "must be a string")
			}
		case "retry_policy":
			if tr := bytes.TrimSpace(raw); len(tr) == 0 || tr[0] != '{' {
				bad(name, "must be an object")
			}
			t.RetryPolicy = raw
		case "timeout_seconds":
			var n int
			if json.Unmarshal(raw, &n) != nil {
				bad(name, "must be an integer")
				continue
			}
			t.TimeoutSeconds = &n
		case "callback_url":
			if json.Unmarshal(raw, &t.CallbackURL) != nil {
				bad(name, "must be a string")
			}
		default:
			bad(name, "unknown field")
		}
	}
	return t, errs
}

// deliverHook handles POST /api/v1/hooks/{trigger_id}: a webhook trigger's
// delivery, authorised by its signature alone. An unknown, disabled or
// deleted trigger (or one of another kind) is the same 404; then the
// trigger's own rate limit, the content type (415) and the body limit (413)
// are checked, and pkg/trigger verifies the signature and makes the task.
// Every refused delivery is recorded with the trigger and audited.
func (s *Server) deliverHook(c echo.Context) error {
	id := c.Param("trigger_id")
	if s.triggers == nil || !triggerIDPattern.MatchString(id) {
		return errTriggerNotFound
	}
	ctx := c.Request().Context()
	row, err := s.triggers.Hook(ctx, id)
	if err != nil {
		return triggerError(err)
	}
	h := c.Request().Header
	refuse := func(r *trigger.Refusal, body []byte, retryAfter time.Duration) error {
		s.triggers.Refuse(ctx, row, h, body, r)
		s.recordRefusedDelivery(c, row, r)
		if retryAfter > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Round(time.Second)/time.Second)+1))
		}
		return newError(r.Status, hookKind(r.Status), r.Reason)
	}
	if s.limiter != nil {
		ok, wait, err := s.limiter.Allow(ctx, "trigger:"+row.ID, s.hookRate.RPS, s.hookRate.Burst)
		if err == nil && !ok {
			return refuse(&trigger.Refusal{Status: http.StatusTooManyRequests, Reason: "the trigger's rate limit is spent"}, nil, wait)
		}
	}
	if !isJSON(h.Get(echo.HeaderContentType)) {
		return refuse(&trigger.Refusal{Status: http.StatusUnsupportedMediaType, Reason: "the body must be application/json"}, nil, 0)
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return refuse(&trigger.Refusal{Status: http.StatusRequestEntityTooLarge, Reason: "the body exceeds the limit"}, body, 0)
		}
		return badRequest("body", "could not be read")
	}
	taskID, err := s.triggers.Deliver(ctx, row, h, body)
	var r *trigger.Refusal
	if errors.As(err, &r) {
		s.recordRefusedDelivery(c, row, r)
		return newError(r.Status, hookKind(r.Status), r.Reason)
	}
	if err != nil {
		return triggerError(err)
	}
	return writeJSON(c, http.StatusAccepted, map[string]string{"task_id": taskID})
}

// recordRefusedDelivery audits a refused hook delivery: the trigger, the
// status and the reason (never the body or the signature).
func (s *Server) recordRefusedDelivery(c echo.Context, row store.Trigger, r *trigger.Refusal) {
	details := map[string]any{"status": r.Status, "reason": r.Reason}
	// One row per trigger, status and minute (with a count), so that a flood
	// of bad deliveries cannot grow the audit log without bound.
	s.record(c, audit.Entry{Actor: "hook:" + row.ID, Action: audit.ActionTriggerDeliveryRefused,
		ResourceType: audit.ResourceTrigger, ResourceID: row.ID, Outcome: audit.Denied, Details: details,
		Aggregate: row.ID + "|" + strconv.Itoa(r.Status)})
}

func hookKind(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusTooManyRequests:
		return "rate-limited"
	case http.StatusUnsupportedMediaType:
		return "unsupported-media-type"
	case http.StatusRequestEntityTooLarge:
		return "payload-too-large"
	case http.StatusUnprocessableEntity:
		return "validation"
	}
	return "invalid-request"
}

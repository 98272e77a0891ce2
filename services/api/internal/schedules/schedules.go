// Package schedules serves the API's cron schedules under /api/v1/schedules:
// list, create, read, replace, patch and delete them, and list the tasks a
// schedule created. Every authenticated caller may read schedules and their
// runs; only admins create, change or delete them (schedules run with no
// owner present, and may run maintenance types). The rules live in
// pkg/schedule; this package maps HTTP to them and errors to problem+json.
package schedules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/problem"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// idPattern is the shape of a schedule id; anything else is an unknown id.
var idPattern = regexp.MustCompile(`^sch_[0-9a-z]{26}$`)

// Handlers are the schedules endpoints.
type Handlers struct {
	store *schedule.Store
	audit audit.Recorder
	log   *zap.Logger
	now   func() time.Time
}

// New returns the handlers. rec, if not nil, receives an audit entry for
// every create, update and delete (and every refused attempt).
func New(st *schedule.Store, rec audit.Recorder, log *zap.Logger) (*Handlers, error) {
	if st == nil || log == nil {
		return nil, errors.New("schedules: nil dependency")
	}
	return &Handlers{store: st, audit: rec, log: log, now: time.Now}, nil
}

// Register adds the routes to g (the /api/v1 group); authed authenticates the
// caller and puts the principal in the request's context. On a nil *Handlers
// the routes exist (the contract lists them) and answer 503.
func (h *Handlers) Register(g *echo.Group, authed echo.MiddlewareFunc) {
	if h == nil {
		off := func(echo.Context) error {
			return problem.New(http.StatusServiceUnavailable, "unavailable", "schedules are not configured on this server")
		}
		for _, r := range []struct{ method, path string }{
			{http.MethodGet, "/schedules"}, {http.MethodPost, "/schedules"},
			{http.MethodGet, "/schedules/:schedule_id"}, {http.MethodPut, "/schedules/:schedule_id"},
			{http.MethodPatch, "/schedules/:schedule_id"}, {http.MethodDelete, "/schedules/:schedule_id"},
			{http.MethodGet, "/schedules/:schedule_id/runs"},
		} {
			g.Add(r.method, r.path, off, authed)
		}
		return
	}
	g.GET("/schedules", h.list, authed)
	g.POST("/schedules", h.create, authed)
	g.GET("/schedules/:schedule_id", h.get, authed)
	g.PUT("/schedules/:schedule_id", h.replace, authed)
	g.PATCH("/schedules/:schedule_id", h.patch, authed)
	g.DELETE("/schedules/:schedule_id", h.delete, authed)
	g.GET("/schedules/:schedule_id/runs", h.runs, authed)
}

func (h *Handlers) list(c echo.Context) error {
	if _, err := caller(c); err != nil {
		return err
	}
	limit, cursor, err := pageParams(c)
	if err != nil {
		return err
	}
	page, err := h.store.List(c.Request().Context(), limit, cursor)
	if err != nil {
		return h.fail(c, err)
	}
	return c.JSON(http.StatusOK, page)
}

func (h *Handlers) get(c echo.Context) error {
	if _, err := caller(c); err != nil {
		return err
	}
	id := c.Param("schedule_id")
	if !idPattern.MatchString(id) {
		return h.fail(c, schedule.ErrNotFound)
	}
	s, err := h.store.Get(c.Request().Context(), id)
	if err != nil {
		return h.fail(c, err)
	}
	return c.JSON(http.StatusOK, s)
}

func (h *Handlers) runs(c echo.Context) error {
	if _, err := caller(c); err != nil {
		return err
	}
	id := c.Param("schedule_id")
	if !idPattern.MatchString(id) {
		return h.fail(c, schedule.ErrNotFound)
	}
	limit, cursor, err := pageParams(c)
	if err != nil {
		return err
	}
	page, err := h.store.Runs(c.Request().Context(), id, limit, cursor)
	if err != nil {
		return h.fail(c, err)
	}
	return c.JSON(http.StatusOK, page)
}

func (h *Handlers) create(c echo.Context) error {
	p, err := h.admin(c, audit.ActionScheduleCreate, "")
	if err != nil {
		return err
	}
	in, err := decode(c)
	if err != nil {
		return err
	}
	s, err := h.store.Create(c.Request().Context(), in, p.ID)
	h.record(c, p, audit.ActionScheduleCreate, s.ID, err)
	if err != nil {
		return h.fail(c, err)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/schedules/"+s.ID)
	return c.JSON(http.StatusCreated, s)
}

func (h *Handlers) replace(c echo.Context) error { return h.update(c, true) }
func (h *Handlers) patch(c echo.Context) error   { return h.update(c, false) }

func (h *Handlers) update(c echo.Context, full bool) error {
	id := c.Param("schedule_id")
	p, err := h.admin(c, audit.ActionScheduleUpdate, id)
	if err != nil {
		return err
	}
	if !idPattern.MatchString(id) {
		return h.fail(c, schedule.ErrNotFound)
	}
	in, err := decode(c)
	if err != nil {
		return err
	}
	var s schedule.Schedule
	if full {
		s, err = h.store.Replace(c.Request().Context(), id, in)
	} else {
		s, err = h.store.Patch(c.Request().Context(), id, in)
	}
	h.record(c, p, audit.ActionScheduleUpdate, id, err)
	if err != nil {
		return h.fail(c, err)
	}
	return c.JSON(http.StatusOK, s)
}

func (h *Handlers) delete(c echo.Context) error {
	id := c.Param("schedule_id")
	p, err := h.admin(c, audit.ActionScheduleDelete, id)
	if err != nil {
		return err
	}
	if !idPattern.MatchString(id) {
		return h.fail(c, schedule.ErrNotFound)
	}
	err = h.store.Delete(c.Request().Context(), id)
	h.record(c, p, audit.ActionScheduleDelete, id, err)
	if err != nil {
		return h.fail(c, err)
	}
	return c.NoContent(http.StatusNoContent)
}

// caller returns the authenticated principal.
func caller(c echo.Context) (auth.Principal, error) {
	p, ok := auth.FromContext(c.Request().Context())
	if !ok || !p.Role.Valid() {
		return p, problem.New(http.StatusUnauthorized, "unauthenticated", "missing or invalid bearer token")
	}
	return p, nil
}

// admin returns the principal if it is an admin, else answers 403 (and
// audits the refusal).
func (h *Handlers) admin(c echo.Context, action, id string) (auth.Principal, error) {
	p, err := caller(c)
	if err != nil {
		return p, err
	}
	if !p.IsAdmin() {
		h.recordOutcome(c, p, action, id, audit.Denied, nil)
		return p, problem.New(http.StatusForbidden, "forbidden", "only admins manage schedules")
	}
	return p, nil
}

func (h *Handlers) record(c echo.Context, p auth.Principal, action, id string, err error) {
	switch {
	case err == nil:
		h.recordOutcome(c, p, action, id, audit.Success, nil)
	case isClientError(err):
		h.recordOutcome(c, p, action, id, audit.Failure, map[string]any{"reason": reason(err)})
	}
}

func (h *Handlers) recordOutcome(c echo.Context, p auth.Principal, action, id, outcome string, details map[string]any) {
	if h.audit == nil {
		return
	}
	rid, _ := c.Get("request_id").(string)
	err := h.audit.Record(c.Request().Context(), audit.Entry{
		Actor: p.ID, Action: action, ResourceType: audit.ResourceSchedule, ResourceID: id, Outcome: outcome,
		ClientIP: c.RealIP(), RequestID: rid, Details: details,
	})
	if err != nil {
		h.log.Warn("audit entry not recorded", zap.String("action", action), zap.String("schedule_id", id), zap.Error(err))
	}
}

// fail answers the client's errors as problem+json and hands the others
// (PostgreSQL down: a wrapped store.ErrUnavailable, mapped to 503; anything
// else: 500) to the API's error handler, which logs them.
func (h *Handlers) fail(c echo.Context, err error) error {
	var v *tasks.ValidationError
	switch {
	case errors.As(err, &v):
		return problem.New(http.StatusUnprocessableEntity, "validation", "the request breaks a rule", v.Errors...)
	case errors.Is(err, schedule.ErrNotFound):
		return problem.New(http.StatusNotFound, "not-found", "no such schedule")
	case errors.Is(err, schedule.ErrNameTaken):
		return problem.New(http.StatusConflict, "conflict", "another schedule has this name",
			tasks.FieldError{Field: "name", Message: "is already taken"})
	case errors.Is(err, schedule.ErrBadCursor):
		return problem.New(http.StatusBadRequest, "invalid-request", "the request is malformed",
			tasks.FieldError{Field: "cursor", Message: "is not a cursor of this list"})
	}
	return err
}

func isClientError(err error) bool {
	var v *tasks.ValidationError
	return errors.As(err, &v) || errors.Is(err, schedule.ErrNotFound) || errors.Is(err, schedule.ErrNameTaken)
}

func reason(err error) string {
	var v *tasks.ValidationError
	switch {
	case errors.As(err, &v):
		return "validation"
	case errors.Is(err, schedule.ErrNotFound):
		return "not found"
	case errors.Is(err, schedule.ErrNameTaken):
		return "name taken"
	}
	return "error"
}

// fields are the request body's fields and the JSON kind each must have.
var fields = map[string]string{
	"name": "string", "cron": "string", "timezone": "string", "type": "string", "params": "object",
	"priority": "string", "retry_policy": "object", "timeout_seconds": "integer", "enabled": "boolean",
}

// decode reads a JSON object body. Malformed JSON is a 400; unknown fields
// and fields of the wrong kind are 422 naming them. A null field is absent.
func decode(c echo.Context) (schedule.Input, error) {
	var in schedule.Input
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != echo.MIMEApplicationJSON {
			return in, problem.New(http.StatusUnsupportedMediaType, "unsupported-media-type", "the body must be application/json")
		}
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return in, problem.New(http.StatusRequestEntityTooLarge, "payload-too-large", "the body exceeds the limit")
		}
		return in, problem.New(http.StatusBadRequest, "invalid-request", "the body could not be read")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return in, problem.New(http.StatusBadRequest, "invalid-request", "the request is malformed",
			tasks.FieldError{Field: "body", Message: "must be a JSON object"})
	}
	var errs []tasks.FieldError
	for name, value := range raw {
		kind, known := fields[name]
		if !known {
			errs = append(errs, tasks.FieldError{Field: name, Message: "unknown field"})
			continue
		}
		if bytes.Equal(bytes.TrimSpace(value), []byte("null")) {
			continue
		}
		if err := decodeField(&in, name, value); err != nil {
			errs = append(errs, tasks.FieldError{Field: name, Message: "must be " + article(kind)})
		}
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Field < errs[j].Field })
		return in, problem.New(http.StatusUnprocessableEntity, "validation", "the request breaks a rule", errs...)
	}
	return in, nil
}

func decodeField(in *schedule.Input, name string, value json.RawMessage) error {
	switch name {
	case "name":
		return json.Unmarshal(value, &in.Name)
	case "cron":
		return json.Unmarshal(value, &in.Cron)
	case "timezone":
		return json.Unmarshal(value, &in.Timezone)
	case "type":
		return json.Unmarshal(value, &in.Type)
	case "priority":
		return json.Unmarshal(value, &in.Priority)
	case "enabled":
		return json.Unmarshal(value, &in.Enabled)
	case "timeout_seconds":
		return json.Unmarshal(value, &in.TimeoutSeconds)
	case "params":
		if t := bytes.TrimSpace(value); len(t) == 0 || t[0] != '{' {
			return errors.New("not an object")
		}
		in.Params = value
		return nil
	case "retry_policy":
		if t := bytes.TrimSpace(value); len(t) == 0 || t[0] != '{' {
			return errors.New("not an object")
		}
		in.RetryPolicy = value
		return nil
	}
	return fmt.Errorf("unknown field %s", name)
}

func article(kind string) string {
	switch kind {
	case "integer", "object":
		return "an " + kind
	}
	return "a " + kind
}

// pageParams reads limit (1..500, default 50) and cursor.
func pageParams(c echo.Context) (int, string, error) {
	limit := 0
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > schedule.MaxLimit {
			return 0, "", problem.New(http.StatusBadRequest, "invalid-request", "the request is malformed",
				tasks.FieldError{Field: "limit", Message: fmt.Sprintf("must be an integer between 1 and %d", schedule.MaxLimit)})
		}
		limit = n
	}
	return limit, c.QueryParam("cursor"), nil
}

package server

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

	"github.com/labstack/echo/v4"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// The schedules endpoints serve the cron schedules under /api/v1/schedules:
// list, create, read, replace, patch and delete them, and list the tasks a
// schedule created. Every authenticated caller may read schedules and their
// runs; only admins create, change or delete them (schedules run with no
// owner present, and may run maintenance types). The rules live in
// pkg/schedule; these handlers map HTTP to them, and classify maps their
// errors.

// scheduleIDPattern is the shape of a schedule id; anything else is an
// unknown id.
var scheduleIDPattern = regexp.MustCompile(`^sch_[0-9a-z]{26}$`)

// errScheduleAdmin answers a caller who is not an admin and tries to change
// a schedule.
var errScheduleAdmin = newError(http.StatusForbidden, "forbidden", "only admins manage schedules")

// registerSchedules adds the schedules routes to v1. Without a schedule
// store the routes exist (the contract lists them) and answer 503.
func (s *Server) registerSchedules(v1 *echo.Group, authed echo.MiddlewareFunc) {
	v1.GET("/schedules", s.listSchedules, authed)
	v1.POST("/schedules", s.createSchedule, authed)
	v1.GET("/schedules/:schedule_id", s.getSchedule, authed)
	v1.PUT("/schedules/:schedule_id", s.replaceSchedule, authed)
	v1.PATCH("/schedules/:schedule_id", s.patchSchedule, authed)
	v1.DELETE("/schedules/:schedule_id", s.deleteSchedule, authed)
	v1.GET("/schedules/:schedule_id/runs", s.scheduleRuns, authed)
}

// scheduleStore is the schedule store, or the 503 of a server without one.
func (s *Server) scheduleStore() (*schedule.Store, error) {
	if s.schedules == nil {
		return nil, newError(http.StatusServiceUnavailable, "unavailable", "schedules are not configured on this server")
	}
	return s.schedules, nil
}

// scheduleReader checks that the caller is authenticated and that id, unless
// empty, has the shape of a schedule id, and returns the store.
func (s *Server) scheduleReader(c echo.Context, id string) (*schedule.Store, error) {
	if !principal(c).Role.Valid() {
		return nil, errUnauthenticated
	}
	if id != "" && !scheduleIDPattern.MatchString(id) {
		return nil, schedule.ErrNotFound
	}
	return s.scheduleStore()
}

// scheduleWriter checks that the caller is an admin (auditing a refusal) and
// that id, unless empty, has the shape of a schedule id, and returns the
// store.
func (s *Server) scheduleWriter(c echo.Context, action, id string) (*schedule.Store, error) {
	p := principal(c)
	if !p.Role.Valid() {
		return nil, errUnauthenticated
	}
	if s.schedules == nil {
		return s.scheduleStore()
	}
	if !p.IsAdmin() {
		s.recordSchedule(c, action, id, errScheduleAdmin)
		return nil, errScheduleAdmin
	}
	if id != "" && !scheduleIDPattern.MatchString(id) {
		return nil, schedule.ErrNotFound
	}
	return s.scheduleStore()
}

// recordSchedule audits a schedule mutation with the outcome of err.
func (s *Server) recordSchedule(c echo.Context, action, id string, err error) {
	o, details := outcome(err)
	s.record(c, audit.Entry{Action: action, ResourceType: audit.ResourceSchedule, ResourceID: id, Outcome: o, Details: details})
}

// answer writes v with status, or returns err.
func answer(c echo.Context, status int, v any, err error) error {
	if err != nil {
		return err
	}
	return writeJSON(c, status, v)
}

// listSchedules handles GET /api/v1/schedules.
func (s *Server) listSchedules(c echo.Context) error {
	st, err := s.scheduleReader(c, "")
	if err != nil {
		return err
	}
	limit, cursor, err := schedulePage(c)
	if err != nil {
		return err
	}
	page, err := st.List(c.Request().Context(), limit, cursor)
	return answer(c, http.StatusOK, page, err)
}

// getSchedule handles GET /api/v1/schedules/{schedule_id}.
func (s *Server) getSchedule(c echo.Context) error {
	id := c.Param("schedule_id")
	st, err := s.scheduleReader(c, id)
	if err != nil {
		return err
	}
	sch, err := st.Get(c.Request().Context(), id)
	return answer(c, http.StatusOK, sch, err)
}

// scheduleRuns handles GET /api/v1/schedules/{schedule_id}/runs.
func (s *Server) scheduleRuns(c echo.Context) error {
	id := c.Param("schedule_id")
	st, err := s.scheduleReader(c, id)
	if err != nil {
		return err
	}
	limit, cursor, err := schedulePage(c)
	if err != nil {
		return err
	}
	page, err := st.Runs(c.Request().Context(), id, limit, cursor)
	return answer(c, http.StatusOK, page, err)
}

// createSchedule handles POST /api/v1/schedules (admins).
func (s *Server) createSchedule(c echo.Context) error {
	st, err := s.scheduleWriter(c, audit.ActionScheduleCreate, "")
	if err != nil {
		return err
	}
	in, err := decodeSchedule(c)
	if err != nil {
		return err
	}
	sch, err := st.Create(c.Request().Context(), in, principal(c).ID)
	s.recordSchedule(c, audit.ActionScheduleCreate, sch.ID, err)
	if err == nil {
		c.Response().Header().Set(echo.HeaderLocation, "/api/v1/schedules/"+sch.ID)
	}
	return answer(c, http.StatusCreated, sch, err)
}

// replaceSchedule handles PUT /api/v1/schedules/{schedule_id} (admins).
func (s *Server) replaceSchedule(c echo.Context) error { return s.updateSchedule(c, true) }

// patchSchedule handles PATCH /api/v1/schedules/{schedule_id} (admins).
func (s *Server) patchSchedule(c echo.Context) error { return s.updateSchedule(c, false) }

func (s *Server) updateSchedule(c echo.Context, full bool) error {
	id := c.Param("schedule_id")
	st, err := s.scheduleWriter(c, audit.ActionScheduleUpdate, id)
	if err != nil {
		return err
	}
	in, err := decodeSchedule(c)
	if err != nil {
		return err
	}
	var sch schedule.Schedule
	if full {
		sch, err = st.Replace(c.Request().Context(), id, in)
	} else {
		sch, err = st.Patch(c.Request().Context(), id, in)
	}
	s.recordSchedule(c, audit.ActionScheduleUpdate, id, err)
	return answer(c, http.StatusOK, sch, err)
}

// deleteSchedule handles DELETE /api/v1/schedules/{schedule_id} (admins).
func (s *Server) deleteSchedule(c echo.Context) error {
	id := c.Param("schedule_id")
	st, err := s.scheduleWriter(c, audit.ActionScheduleDelete, id)
	if err != nil {
		return err
	}
	err = st.Delete(c.Request().Context(), id)
	s.recordSchedule(c, audit.ActionScheduleDelete, id, err)
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// fields are the request body's fields and the JSON kind each must have.
var scheduleFields = map[string]string{
	"name": "string", "cron": "string", "timezone": "string", "type": "string", "params": "object",
	"priority": "string", "retry_policy": "object", "timeout_seconds": "integer", "enabled": "boolean",
	"workflow": "object",
}

// decodeSchedule reads a JSON object body. Malformed JSON is a 400; unknown fields
// and fields of the wrong kind are 422 naming them. A null field is absent.
func decodeSchedule(c echo.Context) (schedule.Input, error) {
	var in schedule.Input
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != echo.MIMEApplicationJSON {
			return in, newError(http.StatusUnsupportedMediaType, "unsupported-media-type", "the body must be application/json")
		}
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return in, newError(http.StatusRequestEntityTooLarge, "payload-too-large", "the body exceeds the limit")
		}
		return in, newError(http.StatusBadRequest, "invalid-request", "the body could not be read")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return in, newError(http.StatusBadRequest, "invalid-request", "the request is malformed",
			tasks.FieldError{Field: "body", Message: "must be a JSON object"})
	}
	var errs []tasks.FieldError
	for name, value := range raw {
		kind, known := scheduleFields[name]
		if !known {
			errs = append(errs, tasks.FieldError{Field: name, Message: "unknown field"})
			continue
		}
		if bytes.Equal(bytes.TrimSpace(value), []byte("null")) {
			continue
		}
		if err := decodeScheduleField(&in, name, value); err != nil {
			errs = append(errs, tasks.FieldError{Field: name, Message: "must be " + article(kind)})
		}
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Field < errs[j].Field })
		return in, newError(http.StatusUnprocessableEntity, "validation", "the request breaks a rule", errs...)
	}
	return in, nil
}

func decodeScheduleField(in *schedule.Input, name string, value json.RawMessage) error {
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
	case "workflow":
		if t := bytes.TrimSpace(value); len(t) == 0 || t[0] != '{' {
			return errors.New("not an object")
		}
		in.Workflow = value
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

// schedulePage reads limit (1..500, default 50) and cursor.
func schedulePage(c echo.Context) (int, string, error) {
	limit := 0
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > schedule.MaxLimit {
			return 0, "", badRequest("limit", fmt.Sprintf("must be an integer between 1 and %d", schedule.MaxLimit))
		}
		limit = n
	}
	return limit, c.QueryParam("cursor"), nil
}

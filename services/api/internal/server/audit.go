package server

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// auditView is one audit row.
type auditView struct {
	ID           int64           `json:"id"`
	TS           time.Time       `json:"ts"`
	Actor        string          `json:"actor"`
	Action       string          `json:"action"`
	ResourceType string          `json:"resource_type"`
	ResourceID   string          `json:"resource_id"`
	Outcome      string          `json:"outcome"`
	ClientIP     string          `json:"client_ip"`
	RequestID    string          `json:"request_id"`
	Details      json.RawMessage `json:"details"`
	Count        int             `json:"count"`
}

// listAudit handles GET /api/v1/audit (admins): newest first, filtered by
// actor, action, resource_id and since, in keyset pages. No route changes or
// deletes audit rows.
func (s *Server) listAudit(c echo.Context) error {
	if !auth.Allowed(principal(c), auth.ReadAudit) {
		return errForbidden
	}
	if s.audit == nil {
		return newError(http.StatusServiceUnavailable, "unavailable", "the audit log is not configured on this server")
	}
	q := c.QueryParams()
	aq := audit.Query{Actor: q.Get("actor"), Action: q.Get("action"), ResourceID: q.Get("resource_id"), Cursor: q.Get("cursor")}
	since, err := queryTime(q.Get("since"), "since")
	if err != nil {
		return err
	}
	if since != nil {
		aq.Since = *since
	}
	if aq.Limit, err = queryLimit(q.Get("limit"), audit.DefaultLimit); err != nil {
		return err
	}
	page, err := s.audit.List(c.Request().Context(), aq)
	if v, ok := tasks.AsValidation(err); ok && len(v.Errors) > 0 {
		return badRequest(v.Errors[0].Field, v.Errors[0].Message)
	}
	if err != nil {
		return err
	}
	items := make([]auditView, len(page.Items))
	for i, r := range page.Items {
		d := json.RawMessage(r.Details)
		if len(d) == 0 {
			d = json.RawMessage("{}")
		}
		items[i] = auditView{ID: r.ID, TS: r.TS.UTC(), Actor: r.Actor, Action: r.Action, ResourceType: r.ResourceType,
			ResourceID: r.ResourceID, Outcome: r.Outcome, ClientIP: r.ClientIP, RequestID: r.RequestID, Details: d, Count: max(r.Count, 1)}
	}
	var next *string
	if page.NextCursor != "" {
		next = &page.NextCursor
	}
	return writeJSON(c, http.StatusOK, map[string]any{"items": items, "next_cursor": next})
}

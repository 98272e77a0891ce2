package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

// taskTypes handles GET /api/v1/task-types: the registry.
func (s *Server) taskTypes(c echo.Context) error {
	specs := tasks.All()
	items := make([]taskType, len(specs))
	for i, sp := range specs {
		items[i] = taskType{
			Name: sp.Name, Description: sp.Description, Category: string(sp.Category), DefaultPriority: sp.Priority,
			TimeoutSeconds: int(sp.Timeout.Seconds()), RetryPolicy: sp.Retry, EstimatedDuration: sp.EstimatedDuration,
			AdminOnly: sp.Permission == tasks.PermCreateAdmin, ParamsSchema: sp.ParamsSchema(),
		}
	}
	return writeJSON(c, http.StatusOK, map[string]any{"items": items})
}

// queues handles GET /api/v1/queues. The figures are aggregate counts, open to
// every role.
func (s *Server) queues(c echo.Context) error {
	qs, err := s.tasks.Queues(c.Request().Context())
	if err != nil {
		return err
	}
	items := make([]queueView, len(qs))
	for i, q := range qs {
		items[i] = queueViewOf(q)
	}
	return writeJSON(c, http.StatusOK, map[string]any{"items": items})
}

// pauseQueue handles POST /api/v1/queues/{queue}/pause and resumeQueue
// POST /api/v1/queues/{queue}/resume: admins stop and restart the workers'
// intake from one priority queue. Both are audited, refusals too.
func (s *Server) pauseQueue(c echo.Context) error  { return s.setQueuePaused(c, true) }
func (s *Server) resumeQueue(c echo.Context) error { return s.setQueuePaused(c, false) }

func (s *Server) setQueuePaused(c echo.Context, paused bool) error {
	name := c.Param("queue")
	action := audit.ActionQueueResume
	if paused {
		action = audit.ActionQueuePause
	}
	err := s.doSetQueuePaused(c, name, paused)
	o, details := outcome(err)
	s.record(c, audit.Entry{Action: action, ResourceType: audit.ResourceQueue, ResourceID: trimmed(name), Outcome: o, Details: details})
	return err
}

func (s *Server) doSetQueuePaused(c echo.Context, name string, paused bool) error {
	if !auth.Allowed(principal(c), auth.ManageQueues) {
		return errForbidden
	}
	q, err := s.tasks.SetQueuePaused(c.Request().Context(), name, paused)
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, queueViewOf(q))
}

// stats handles GET /api/v1/stats?window=24h.
func (s *Server) stats(c echo.Context) error {
	raw := c.QueryParam("window")
	window, err := taskservice.ParseWindow(raw)
	if err != nil {
		return err
	}
	if raw == "" {
		raw = "24h"
	}
	st, err := s.tasks.Stats(c.Request().Context(), principal(c), window)
	if err != nil {
		return err
	}
	out := statsView{Window: raw, From: st.From, To: st.To, Types: make([]typeStats, len(st.Types)), Total: typeStatsView(st.Total)}
	for i, t := range st.Types {
		out.Types[i] = typeStatsView(t)
	}
	return writeJSON(c, http.StatusOK, out)
}

func queueViewOf(q taskservice.QueueStats) queueView {
	return queueView{Name: q.Name, Size: q.Size, Pending: q.Pending, Running: q.Running, Scheduled: q.Scheduled,
		Retrying: q.Retrying, Dead: q.Dead, Latency: q.Latency.Seconds(), Paused: q.Paused}
}

// openAPI handles GET /api/v1/openapi.yaml.
func (s *Server) openAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", s.openapi)
}

package server

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// consoleIndex serves GET /console/: the console's page (internal/console).
// It needs no credentials; every API call the page makes does.
func (s *Server) consoleIndex(c echo.Context) error {
	s.console.ServeIndex(c.Response(), c.Request())
	return nil
}

// consoleAsset serves GET /console/assets/{name}: one of the console's
// content-hashed files, or 404.
func (s *Server) consoleAsset(c echo.Context) error {
	if !s.console.ServeAsset(c.Response(), c.Request(), c.Param("name")) {
		return newError(http.StatusNotFound, "not-found", "no such console asset")
	}
	return nil
}

// whoAmI is the caller as the API sees it: principal id, name and role, for
// the console (and scripts) to show only the controls the role may use.
type whoAmI struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role string `json:"role"`
}

// whoami serves GET /api/v1/whoami.
func (s *Server) whoami(c echo.Context) error {
	p := principal(c)
	return writeJSON(c, http.StatusOK, whoAmI{ID: p.ID, Name: p.Name, Role: string(p.Role)})
}

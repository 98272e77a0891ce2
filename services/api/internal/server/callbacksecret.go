package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/taskforge/taskforge/pkg/audit"
)

// Audit names of a callback secret rotation. The row names the principal,
// never the secret.
const (
	actionCallbackSecretRotate = "callback_secret.rotate"
	resourceCallbackSecret     = "callback_secret"
)

var errCallbackKeysOff = newError(http.StatusServiceUnavailable, "unavailable", "callback secrets are not configured on this server")

// rotateCallbackSecret handles POST /api/v1/callback-secret/rotate: the
// caller's own secret that signs its tasks' completion callbacks is replaced,
// and the new one is answered this once (200 {"secret":"whsec_…",
// "created_at","previous_expires_at"}). The previous secret still signs
// beside it until previous_expires_at (notify.callback_secret_overlap). Every
// role may rotate its own secret; no one, admins included, can read or rotate
// another principal's.
func (s *Server) rotateCallbackSecret(c echo.Context) error {
	p := principal(c)
	err := s.doRotateCallbackSecret(c)
	o, details := outcome(err)
	s.record(c, audit.Entry{Action: actionCallbackSecretRotate, ResourceType: resourceCallbackSecret, ResourceID: p.ID,
		Outcome: o, Details: details})
	return err
}

func (s *Server) doRotateCallbackSecret(c echo.Context) error {
	if s.callbackKeys == nil {
		return errCallbackKeysOff
	}
	rotated, err := s.callbackKeys.Rotate(c.Request().Context(), principal(c).ID)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return writeJSON(c, http.StatusOK, rotated)
}

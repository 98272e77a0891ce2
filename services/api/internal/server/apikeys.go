package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// keyIDPattern is the shape of an API key id; anything else is unknown.
var keyIDPattern = regexp.MustCompile(`^key_[0-9a-z]{26}$`)

var errKeysOff = newError(http.StatusServiceUnavailable, "unavailable", "API keys are not configured on this server")

// apiKeyView is an API key as listed: never its hash, and its secret only once,
// in the creation response (Key).
type apiKeyView struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Role       string     `json:"role"`
	Prefix     string     `json:"prefix"`
	Key        string     `json:"key,omitempty"`
	CreatedBy  string     `json:"created_by"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

func keyView(k store.APIKey) apiKeyView {
	return apiKeyView{ID: k.ID, Name: k.Name, Role: k.Role, Prefix: k.Prefix, CreatedBy: k.CreatedBy,
		CreatedAt: k.CreatedAt.UTC(), ExpiresAt: utc(k.ExpiresAt), RevokedAt: utc(k.RevokedAt), LastUsedAt: utc(k.LastUsedAt)}
}

// mayManageKeys answers 403 to every caller but admins.
func (s *Server) mayManageKeys(c echo.Context) error {
	if !auth.Allowed(principal(c), auth.ManageAPIKeys) {
		return errForbidden
	}
	if s.keys == nil {
		return errKeysOff
	}
	return nil
}

// createAPIKey handles POST /api/v1/api-keys: 201 with the key, shown once.
func (s *Server) createAPIKey(c echo.Context) error {
	var id string
	err := s.doCreateAPIKey(c, &id)
	o, details := outcome(err)
	s.record(c, audit.Entry{Action: audit.ActionAPIKeyCreate, ResourceType: audit.ResourceAPIKey, ResourceID: id,
		Outcome: o, Details: details})
	return err
}

func (s *Server) doCreateAPIKey(c echo.Context, id *string) error {
	if err := s.mayManageKeys(c); err != nil {
		return err
	}
	req, err := parseNewKey(c)
	if err != nil {
		return err
	}
	req.CreatedBy = principal(c).ID
	created, err := s.keys.Create(c.Request().Context(), req)
	if err != nil {
		return err
	}
	*id = created.Key.ID
	v := keyView(created.Key)
	v.Key = created.Plaintext
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/api-keys/"+created.Key.ID)
	return writeJSON(c, http.StatusCreated, v)
}

// readObject reads a request body that must be one JSON object: another
// media type is 415, a body past the size limit 413, malformed JSON or another
// JSON value 400; its members are left to the caller.
func readObject(c echo.Context) (map[string]json.RawMessage, error) {
	if !isJSON(c.Request().Header.Get(echo.HeaderContentType)) {
		return nil, newError(http.StatusUnsupportedMediaType, "unsupported-media-type", "the body must be application/json")
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, badRequest("body", "could not be read")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil, badRequest("body", "must be a JSON object")
	}
	return fields, nil
}

// parseNewKey reads {"name","role","expires_at"}: malformed JSON is 400,
// unknown fields and wrong types 422 naming the field.
func parseNewKey(c echo.Context) (auth.NewKey, error) {
	var req auth.NewKey
	fields, err := readObject(c)
	if err != nil {
		return req, err
	}
	var errs []tasks.FieldError
	bad := func(field, msg string) { errs = append(errs, tasks.FieldError{Field: field, Message: msg}) }
	for name, raw := range fields {
		switch name {
		case "name":
			if json.Unmarshal(raw, &req.Name) != nil {
				bad(name, "must be a string")
			}
		case "role":
			var role string
			if json.Unmarshal(raw, &role) != nil {
				bad(name, "must be viewer, operator or admin")
			}
			req.Role = auth.Role(role)
		case "expires_at":
			if string(raw) == "null" {
				continue
			}
			var v string
			t, perr := time.Time{}, json.Unmarshal(raw, &v)
			if perr == nil {
				t, perr = time.Parse(time.RFC3339Nano, v)
			}
			if perr != nil {
				bad(name, "must be an RFC 3339 time")
				continue
			}
			req.ExpiresAt = &t
		default:
			bad(name, "unknown field")
		}
	}
	if len(errs) > 0 {
		return req, &tasks.ValidationError{Errors: sortFields(errs)}
	}
	return req, nil
}

// listAPIKeys handles GET /api/v1/api-keys: every key, newest first, revoked
// and expired ones included.
func (s *Server) listAPIKeys(c echo.Context) error {
	if err := s.mayManageKeys(c); err != nil {
		return err
	}
	rows, err := s.keys.List(c.Request().Context())
	if err != nil {
		return err
	}
	items := make([]apiKeyView, len(rows))
	for i, k := range rows {
		items[i] = keyView(k)
	}
	return writeJSON(c, http.StatusOK, map[string]any{"items": items})
}

// revokeAPIKey handles DELETE /api/v1/api-keys/{key_id}: the key is refused
// from the next request on. Revoking a revoked key answers 200 again.
func (s *Server) revokeAPIKey(c echo.Context) error {
	id := c.Param("key_id")
	err := s.doRevokeAPIKey(c, id)
	o, details := outcome(err)
	s.record(c, audit.Entry{Action: audit.ActionAPIKeyRevoke, ResourceType: audit.ResourceAPIKey, ResourceID: trimmed(id),
		Outcome: o, Details: details})
	return err
}

func (s *Server) doRevokeAPIKey(c echo.Context, id string) error {
	if err := s.mayManageKeys(c); err != nil {
		return err
	}
	if !keyIDPattern.MatchString(id) {
		return errKeyNotFound
	}
	k, err := s.keys.Revoke(c.Request().Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return errKeyNotFound
	}
	if err != nil {
		return err
	}
	return writeJSON(c, http.StatusOK, keyView(k))
}

var errKeyNotFound = newError(http.StatusNotFound, "not-found", "no such API key")

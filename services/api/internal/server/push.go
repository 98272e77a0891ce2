package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/pushsub"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// Audit names of push subscriptions. Rows name the subscription id, never its
// endpoint or keys.
const (
	actionPushSubscribe   = "push_subscription.create"
	actionPushUnsubscribe = "push_subscription.delete"
	resourcePushSub       = "push_subscription"
)

// pushSubIDPattern is the shape of a subscription id; anything else is unknown.
var pushSubIDPattern = regexp.MustCompile(`^psub_[0-9a-z]{26}$`)

var (
	errPushOff      = newError(http.StatusServiceUnavailable, "unavailable", "push subscriptions are not configured on this server")
	errPushNotFound = newError(http.StatusNotFound, "not-found", "no such push subscription")
)

// pushSubView is a subscription as listed: its endpoint's origin only (the
// full URL is a capability to push to the browser) and never its keys.
type pushSubView struct {
	ID             string    `json:"id"`
	Principal      string    `json:"principal"`
	Kind           string    `json:"kind"`
	EndpointOrigin string    `json:"endpoint_origin"`
	UserAgent      string    `json:"user_agent"`
	CreatedAt      time.Time `json:"created_at"`
}

func pushView(s store.PushSubscription) pushSubView {
	v := pushSubView{ID: s.ID, Principal: s.Principal, Kind: s.Kind, UserAgent: s.UserAgent, CreatedAt: s.CreatedAt.UTC()}
	if s.Kind == notify.KindWebPush {
		if u, err := url.Parse(s.Endpoint); err == nil {
			v.EndpointOrigin = u.Scheme + "://" + u.Host
		}
	}
	return v
}

// mayPush answers 503 when the routes are off and 403 to callers without a
// role.
func (s *Server) mayPush(c echo.Context) error {
	if s.push == nil {
		return errPushOff
	}
	if !principal(c).Role.AtLeast(auth.Viewer) {
		return errForbidden
	}
	return nil
}

// createPushSubscription handles POST /api/v1/push-subscriptions: the caller
// subscribes a browser (kind webpush: endpoint and keys, as
// PushSubscription.toJSON() gives them) or an app (kind fcm: endpoint is the
// registration token). 201 with the subscription, or 200 when the caller had
// subscribed that endpoint already (its keys are replaced). Every role may
// subscribe itself; no one subscribes for someone else.
func (s *Server) createPushSubscription(c echo.Context) error {
	var id string
	err := s.doCreatePushSubscription(c, &id)
	o, details := outcome(err)
	s.record(c, audit.Entry{Action: actionPushSubscribe, ResourceType: resourcePushSub, ResourceID: id, Outcome: o, Details: details})
	return err
}

func (s *Server) doCreatePushSubscription(c echo.Context, id *string) error {
	if err := s.mayPush(c); err != nil {
		return err
	}
	req, err := parsePushSubscription(c)
	if err != nil {
		return err
	}
	sub, created, err := s.push.Create(c.Request().Context(), principal(c).ID, req)
	if err != nil {
		return err
	}
	*id = sub.ID
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/push-subscriptions/"+sub.ID)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return writeJSON(c, status, pushView(sub))
}

// parsePushSubscription reads {"kind","endpoint","keys":{"p256dh","auth"},
// "user_agent"}: malformed JSON is 400, unknown fields and wrong types 422
// naming the field; pushsub checks the values.
func parsePushSubscription(c echo.Context) (pushsub.New, error) {
	var req pushsub.New
	fields, err := readObject(c)
	if err != nil {
		return req, err
	}
	var errs []tasks.FieldError
	bad := func(field, msg string) { errs = append(errs, tasks.FieldError{Field: field, Message: msg}) }
	str := func(name string, raw json.RawMessage, into *string) {
		if json.Unmarshal(raw, into) != nil {
			bad(name, "must be a string")
		}
	}
	for name, raw := range fields {
		switch name {
		case "kind":
			str(name, raw, &req.Kind)
		case "endpoint":
			str(name, raw, &req.Endpoint)
		case "user_agent":
			str(name, raw, &req.UserAgent)
		case "expirationTime", "expiration_time":
			// PushSubscription.toJSON() sends it (usually null); push services
			// report expiry with 404 or 410, which removes the row.
		case "keys":
			var keys map[string]json.RawMessage
			if json.Unmarshal(raw, &keys) != nil || keys == nil {
				bad(name, "must be an object with p256dh and auth")
				continue
			}
			for k, v := range keys {
				switch k {
				case "p256dh":
					str("keys.p256dh", v, &req.P256dh)
				case "auth":
					str("keys.auth", v, &req.Auth)
				default:
					bad("keys."+k, "unknown field")
				}
			}
		default:
			bad(name, "unknown field")
		}
	}
	if len(errs) > 0 {
		return req, &tasks.ValidationError{Errors: sortFields(errs)}
	}
	if req.Kind == "" {
		req.Kind = notify.KindWebPush
	}
	return req, nil
}

// listPushSubscriptions handles GET /api/v1/push-subscriptions: the caller's
// own subscriptions, newest first; with ?all=true (admins only) everyone's.
// vapid_public_key is the key a browser subscribes with
// (applicationServerKey), empty when Web Push is off.
func (s *Server) listPushSubscriptions(c echo.Context) error {
	if err := s.mayPush(c); err != nil {
		return err
	}
	p := principal(c)
	owner := p.ID
	switch c.QueryParam("all") {
	case "", "false":
	case "true":
		if !p.IsAdmin() {
			return errForbidden
		}
		owner = ""
	default:
		return badRequest("all", "must be true or false")
	}
	rows, err := s.push.List(c.Request().Context(), owner)
	if err != nil {
		return err
	}
	items := make([]pushSubView, len(rows))
	for i, r := range rows {
		items[i] = pushView(r)
	}
	return writeJSON(c, http.StatusOK, map[string]any{"items": items, "vapid_public_key": s.vapidPublicKey})
}

// deletePushSubscription handles DELETE /api/v1/push-subscriptions/{id}: 204.
// A caller deletes its own; an admin anyone's. Someone else's answers 404.
func (s *Server) deletePushSubscription(c echo.Context) error {
	id := c.Param("subscription_id")
	err := s.doDeletePushSubscription(c, id)
	o, details := outcome(err)
	s.record(c, audit.Entry{Action: actionPushUnsubscribe, ResourceType: resourcePushSub, ResourceID: trimmed(id), Outcome: o, Details: details})
	return err
}

func (s *Server) doDeletePushSubscription(c echo.Context, id string) error {
	if err := s.mayPush(c); err != nil {
		return err
	}
	if !pushSubIDPattern.MatchString(id) {
		return errPushNotFound
	}
	p := principal(c)
	owner := p.ID
	if p.IsAdmin() {
		owner = ""
	}
	err := s.push.Delete(c.Request().Context(), owner, id)
	if errors.Is(err, pushsub.ErrNotFound) {
		return errPushNotFound
	}
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// A valid Web Push subscription's keys: an uncompressed P-256 public key and a
// 16-byte auth secret, base64url.
const (
	testP256dh   = "BMJqMermh_5su9VmeuD4uD48JfReguczXdS2ZCMbOVocAzdueogZK9UN1s_MtK6ILvuWDxXx2x2ymlLeqDWqHIk"
	testPushAuth = "vPklkqtZpdJNYgzSC0Wy_w"
)

// insertPushSub adds a subscription of owner and returns its id.
func insertPushSub(t *testing.T, db *gorm.DB, owner, kind string) string {
	t.Helper()
	id := "psub_" + strings.ToLower(ulid.Make().String())
	p256dh, auth := testP256dh, testPushAuth
	endpoint := "https://push.example.com/wpush/" + id
	if kind == "fcm" {
		p256dh, auth, endpoint = "", "", "fcm-token-"+id
	}
	require.NoError(t, db.Exec(`INSERT INTO push_subscriptions (id, principal, kind, endpoint, p256dh, auth) VALUES (?, ?, ?, ?, ?, ?)`,
		id, owner, kind, endpoint, p256dh, auth).Error)
	return id
}

// pushSubList is GET /api/v1/push-subscriptions's body.
type pushSubList struct {
	Items          []pushSubView `json:"items"`
	VAPIDPublicKey string        `json:"vapid_public_key"`
}

func (b testBundle) pushJSON(t *testing.T, method, path, token, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	var h map[string]string
	if body != "" {
		rd, h = strings.NewReader(body), map[string]string{"Content-Type": "application/json"}
	}
	resp := b.raw(t, method, path, token, rd, h)
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp, out
}

func webPushBody(endpoint string) string {
	return `{"endpoint":"` + endpoint + `","expirationTime":null,"keys":{"p256dh":"` + testP256dh + `","auth":"` + testPushAuth + `"}}`
}

// TestPushSubscriptionsOwn: a caller subscribes, lists and deletes its own
// subscriptions only; another's answers 404 and stays out of its list;
// admins list (all=true) and delete anyone's.
func TestPushSubscriptionsOwn(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	const endpoint = "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABviewer"

	resp, body := b.pushJSON(t, http.MethodPost, "/api/v1/push-subscriptions", tokViewer, webPushBody(endpoint))
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	var mine pushSubView
	require.NoError(t, json.Unmarshal(body, &mine))
	require.Equal(t, "/api/v1/push-subscriptions/"+mine.ID, resp.Header.Get("Location"))
	require.Equal(t, "key_viewer", mine.Principal)
	require.Equal(t, "webpush", mine.Kind)
	require.Equal(t, "https://updates.push.services.mozilla.com", mine.EndpointOrigin)
	require.NotContains(t, string(body), "gAAAAABviewer", "the endpoint's capability path is not echoed")
	require.NotContains(t, string(body), testPushAuth)

	// Subscribing the same endpoint again returns the same row.
	resp, body = b.pushJSON(t, http.MethodPost, "/api/v1/push-subscriptions", tokViewer, webPushBody(endpoint))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var again pushSubView
	require.NoError(t, json.Unmarshal(body, &again))
	require.Equal(t, mine.ID, again.ID)

	resp, body = b.pushJSON(t, http.MethodPost, "/api/v1/push-subscriptions", tokOp, `{"kind":"fcm","endpoint":"fcm-registration-token-op"}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	var ops pushSubView
	require.NoError(t, json.Unmarshal(body, &ops))
	require.Equal(t, "key_op", ops.Principal)
	require.Empty(t, ops.EndpointOrigin)

	list := func(token, query string) pushSubList {
		t.Helper()
		resp, body := b.pushJSON(t, http.MethodGet, "/api/v1/push-subscriptions"+query, token, "")
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		var l pushSubList
		require.NoError(t, json.Unmarshal(body, &l))
		return l
	}
	ids := func(l pushSubList) []string {
		out := []string{}
		for _, it := range l.Items {
			out = append(out, it.ID)
		}
		return out
	}
	require.Equal(t, []string{mine.ID}, ids(list(tokViewer, "")))
	require.Equal(t, []string{ops.ID}, ids(list(tokOp, "")))
	require.Empty(t, ids(list(tokAdmin, "")), "without all=true an admin sees its own")
	require.ElementsMatch(t, []string{mine.ID, ops.ID}, ids(list(tokAdmin, "?all=true")))

	resp, body = b.pushJSON(t, http.MethodGet, "/api/v1/push-subscriptions?all=true", tokOp, "")
	require.Equal(t, http.StatusForbidden, resp.StatusCode, string(body))
	resp, body = b.pushJSON(t, http.MethodGet, "/api/v1/push-subscriptions?all=maybe", tokOp, "")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(body))
	require.Contains(t, string(body), `"field":"all"`)

	// Another's subscription is 404 and stays.
	resp, body = b.pushJSON(t, http.MethodDelete, "/api/v1/push-subscriptions/"+ops.ID, tokViewer, "")
	require.Equal(t, http.StatusNotFound, resp.StatusCode, string(body))
	require.Equal(t, []string{ops.ID}, ids(list(tokOp, "")))
	resp, _ = b.pushJSON(t, http.MethodDelete, "/api/v1/push-subscriptions/psub_nonsense", tokViewer, "")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	// The owner deletes its own; an admin anyone's.
	resp, body = b.pushJSON(t, http.MethodDelete, "/api/v1/push-subscriptions/"+ops.ID, tokOp, "")
	require.Equal(t, http.StatusNoContent, resp.StatusCode, string(body))
	resp, body = b.pushJSON(t, http.MethodDelete, "/api/v1/push-subscriptions/"+mine.ID, tokAdmin, "")
	require.Equal(t, http.StatusNoContent, resp.StatusCode, string(body))
	require.Empty(t, ids(list(tokAdmin, "?all=true")))

	var n int64
	require.NoError(t, b.pg.DB.Table("audit_log").Where("action IN ?", []string{actionPushSubscribe, actionPushUnsubscribe}).Count(&n).Error)
	require.GreaterOrEqual(t, n, int64(5))
}

// TestPushSubscriptionInvalid: bad input answers 422 problem+json naming the
// field; an endpoint must be https and pass the egress guard's URL check.
func TestPushSubscriptionInvalid(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOptions{secure: true})
	keys := `"keys":{"p256dh":"` + testP256dh + `","auth":"` + testPushAuth + `"}`
	for _, tc := range []struct {
		name, body string
		field      string
	}{
		{"http endpoint", `{"endpoint":"http://push.example.com/x",` + keys + `}`, "endpoint"},
		{"loopback endpoint", `{"endpoint":"https://127.0.0.1/x",` + keys + `}`, "endpoint"},
		{"metadata endpoint", `{"endpoint":"https://169.254.169.254/latest",` + keys + `}`, "endpoint"},
		{"localhost endpoint", `{"endpoint":"https://push.localhost/x",` + keys + `}`, "endpoint"},
		{"no endpoint", `{` + keys + `}`, "endpoint"},
		{"endpoint not a string", `{"endpoint":7,` + keys + `}`, "endpoint"},
		{"no keys", `{"endpoint":"https://push.example.com/x"}`, "keys.p256dh"},
		{"p256dh not a point", `{"endpoint":"https://push.example.com/x","keys":{"p256dh":"AAAA","auth":"` + testPushAuth + `"}}`, "keys.p256dh"},
		{"short auth", `{"endpoint":"https://push.example.com/x","keys":{"p256dh":"` + testP256dh + `","auth":"AAAA"}}`, "keys.auth"},
		{"unknown key", `{"endpoint":"https://push.example.com/x","keys":{"p256dh":"` + testP256dh + `","auth":"` + testPushAuth + `","x":"1"}}`, "keys.x"},
		{"unknown kind", `{"kind":"sms","endpoint":"https://push.example.com/x"}`, "kind"},
		{"fcm with keys", `{"kind":"fcm","endpoint":"tok",` + keys + `}`, "keys"},
		{"fcm token with a slash", `{"kind":"fcm","endpoint":"a/b"}`, "endpoint"},
		{"unknown field", `{"endpoint":"https://push.example.com/x",` + keys + `,"principal":"key_admin"}`, "principal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := b.pushJSON(t, http.MethodPost, "/api/v1/push-subscriptions", tokOp, tc.body)
			require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, string(body))
			require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
			var p struct {
				Errors []struct{ Field string } `json:"errors"`
			}
			require.NoError(t, json.Unmarshal(body, &p))
			var names []string
			for _, e := range p.Errors {
				names = append(names, e.Field)
			}
			require.Contains(t, names, tc.field, string(body))
		})
	}
	resp, body := b.pushJSON(t, http.MethodPost, "/api/v1/push-subscriptions", tokOp, `not json`)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(body))
	var n int64
	require.NoError(t, b.pg.DB.Table("push_subscriptions").Count(&n).Error)
	require.Zero(t, n)
}

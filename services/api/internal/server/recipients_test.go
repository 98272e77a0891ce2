package server

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/recipient"
	"github.com/taskforge/taskforge/services/api/client"
)

// TestNotificationPolicy creates notification tasks through the API under a
// policy that holds operators to example.com and admins to nothing: a
// premium-rate SMS number, more recipients than the per-task cap, a domain
// off the operator's list and a caller past its hourly cap are each a 422
// problem naming the recipient's field, with no task made; an admin may mail
// the domain the operator may not.
func TestNotificationPolicy(t *testing.T) {
	t.Parallel()
	p := config.NotifyDefaults().Policy
	p.Roles.Operator = config.RecipientRules{EmailDomains: []string{"example.com"}, PhonePrefixes: []string{"+1", "+44"}}
	p.MaxRecipientsPerTask, p.MaxRecipientsPerHour = 3, 5
	db := setupWith(t, setupOptions{}).pg.DB
	pol, err := recipient.New(p, db)
	require.NoError(t, err)
	b := setupWith(t, setupOptions{db: db, recipients: pol})
	op, admin := b.client(t, tokOp), b.client(t, tokAdmin)

	create := func(c *client.ClientWithResponses, typ string, params map[string]any) (int, []string, string) {
		t.Helper()
		resp, err := c.CreateTaskWithResponse(ctx, nil, createBody(typ, params))
		require.NoError(t, err)
		if resp.StatusCode() != http.StatusUnprocessableEntity {
			return resp.StatusCode(), nil, string(resp.Body)
		}
		require.Equal(t, "application/problem+json", resp.HTTPResponse.Header.Get("Content-Type"))
		var prob client.Problem
		require.NoError(t, json.Unmarshal(resp.Body, &prob))
		return resp.StatusCode(), fields(&prob), string(resp.Body)
	}
	sms := func(to ...string) map[string]any {
		return map[string]any{"channel": "sms", "title": "t", "message": "m", "recipients": to}
	}
	mail := func(to ...string) map[string]any { return map[string]any{"to": to, "subject": "s"} }

	status, f, body := create(op, "send_alert", sms("+14155550100", "+19005550123"))
	require.Equal(t, 422, status, body)
	require.Equal(t, []string{"params.recipients[1]"}, f, body)
	require.Contains(t, body, "premium-rate")

	status, f, body = create(admin, "send_alert", sms("+449012345678"))
	require.Equal(t, 422, status, "premium-rate numbers are refused to admins too: %s", body)
	require.Equal(t, []string{"params.recipients[0]"}, f)

	status, f, body = create(op, "send_email", mail("a@example.com", "b@example.com", "c@example.com", "d@example.com"))
	require.Equal(t, 422, status, body)
	require.Equal(t, []string{"params.to"}, f, body)
	require.Contains(t, body, "max_recipients_per_task")

	status, f, body = create(op, "send_email", mail("a@example.com", "x@elsewhere.test"))
	require.Equal(t, 422, status, body)
	require.Equal(t, []string{"params.to[1]"}, f, body)
	status, _, body = create(admin, "send_email", mail("a@example.com", "x@elsewhere.test"))
	require.Equal(t, 201, status, "admins may mail any domain under this policy: %s", body)

	status, f, body = create(op, "generate_digest", map[string]any{"recipients": []string{"x@elsewhere.test"}})
	require.Equal(t, 422, status, "a digest goes only to addresses its owner may mail: %s", body)
	require.Equal(t, []string{"params.recipients[0]"}, f)

	// The hourly cap: 3 + 2 recipients fit in 5, one more does not.
	status, _, body = create(op, "send_email", mail("a@example.com", "b@example.com", "c@example.com"))
	require.Equal(t, 201, status, body)
	status, _, body = create(op, "send_alert", sms("+14155550100", "+447700900123"))
	require.Equal(t, 201, status, body)
	status, f, body = create(op, "send_email", mail("z@example.com"))
	require.Equal(t, 422, status, body)
	require.Equal(t, []string{"params.to"}, f, body)
	require.Contains(t, body, "max_recipients_per_hour")

	var n int64
	require.NoError(t, db.Raw(`SELECT count(*) FROM tasks`).Scan(&n).Error)
	require.EqualValues(t, 3, n, "only the three allowed tasks exist")
}

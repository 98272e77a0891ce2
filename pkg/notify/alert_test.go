package notify_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/notify"
)

// recorded is one request seen by a fake provider.
type recorded struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// fakeProvider is a local HTTP server that records requests and answers with
// the status its respond function picks (200 if nil).
type fakeProvider struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []recorded
	respond func(r recorded) (int, string)
}

func newFakeProvider(t *testing.T, respond func(r recorded) (int, string)) *fakeProvider {
	t.Helper()
	p := &fakeProvider{respond: respond}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rec := recorded{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
		p.mu.Lock()
		p.reqs = append(p.reqs, rec)
		p.mu.Unlock()
		status, reply := http.StatusOK, "ok"
		if p.respond != nil {
			status, reply = p.respond(rec)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, reply)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *fakeProvider) requests() []recorded {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]recorded(nil), p.reqs...)
}

// guardedClient is the egress guard's client, allowed to reach loopback only,
// as production code would pass it.
func guardedClient(t *testing.T) *http.Client {
	t.Helper()
	g, err := egress.New(egress.Config{AllowCIDRs: []string{"127.0.0.0/8"}})
	require.NoError(t, err)
	return g.Client()
}

// statusReply answers every request with one status.
func statusReply(status int, body string) func(recorded) (int, string) {
	return func(recorded) (int, string) { return status, body }
}

func TestSlackSend(t *testing.T) {
	t.Parallel()

	const secretPath = "/services/T0000/B0000/XXXXsecretXXXX"
	p := newFakeProvider(t, nil)
	slack, err := notify.NewSlack(guardedClient(t), p.srv.URL+secretPath)
	require.NoError(t, err)

	err = slack.Send(t.Context(), notify.Alert{
		Title: "Disk <full>", Message: "95% used & rising", Severity: notify.SeverityCritical,
	})
	require.NoError(t, err)

	reqs := p.requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	require.Equal(t, http.MethodPost, r.Method)
	require.Equal(t, secretPath, r.Path)
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))

	var body struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"text"`
		} `json:"blocks"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &body))
	require.Equal(t, "[CRITICAL] Disk &lt;full&gt;: 95% used &amp; rising", body.Text)
	require.Len(t, body.Blocks, 1)
	require.Equal(t, "section", body.Blocks[0].Type)
	require.Equal(t, "mrkdwn", body.Blocks[0].Text.Type)
	require.Equal(t, "*Disk &lt;full&gt;*\nSeverity: critical\n95% used &amp; rising", body.Blocks[0].Text.Text)
}

func TestSlackErrorsHideWebhookURL(t *testing.T) {
	t.Parallel()

	const secretPath = "/services/T0000/B0000/XXXXsecretXXXX"
	tests := []struct {
		name      string
		status    int
		reply     string
		permanent bool
	}{
		{name: "revoked", status: http.StatusNotFound, reply: "no_service", permanent: true},
		{name: "bad payload", status: http.StatusBadRequest, reply: "invalid_payload", permanent: true},
		{name: "rate limited", status: http.StatusTooManyRequests, reply: "rate_limited"},
		{name: "server error", status: http.StatusInternalServerError, reply: "oops " + secretPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			p := newFakeProvider(t, statusReply(tt.status, tt.reply))
			slack, err := notify.NewSlack(guardedClient(t), p.srv.URL+secretPath)
			require.NoError(t, err)

			err = slack.Send(t.Context(), notify.Alert{Title: "t", Message: "m"})
			require.Error(t, err)
			require.Equal(t, tt.permanent, notify.IsPermanent(err), "error: %v", err)
			require.Equal(t, !tt.permanent, notify.IsRetryable(err))
			require.NotContains(t, err.Error(), "secret")
			var ne *notify.Error
			require.ErrorAs(t, err, &ne)
			require.Equal(t, tt.status, ne.StatusCode)
			require.Equal(t, notify.ChannelSlack, ne.Channel)
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()

		p := newFakeProvider(t, nil)
		webhook := p.srv.URL + secretPath
		p.srv.Close() // Connection refused: retryable.
		slack, err := notify.NewSlack(guardedClient(t), webhook)
		require.NoError(t, err)
		err = slack.Send(t.Context(), notify.Alert{Title: "t", Message: "m"})
		require.Error(t, err)
		require.True(t, notify.IsRetryable(err), "error: %v", err)
		require.NotContains(t, err.Error(), "secret")
	})

	t.Run("blocked by the guard", func(t *testing.T) {
		t.Parallel()

		p := newFakeProvider(t, nil)
		g, err := egress.New(egress.Config{}) // Loopback not allowed.
		require.NoError(t, err)
		slack, err := notify.NewSlack(g.Client(), p.srv.URL+secretPath)
		require.NoError(t, err)
		err = slack.Send(t.Context(), notify.Alert{Title: "t", Message: "m"})
		require.ErrorIs(t, err, egress.ErrBlocked)
		require.True(t, notify.IsPermanent(err))
		require.NotContains(t, err.Error(), "secret")
		require.Empty(t, p.requests())
	})

	t.Run("bad url in config", func(t *testing.T) {
		t.Parallel()

		_, err := notify.NewSlack(http.DefaultClient, "hooks.slack.com"+secretPath)
		require.ErrorIs(t, err, notify.ErrInvalid)
		require.NotContains(t, err.Error(), "secret")
	})
}

func TestAlertValidation(t *testing.T) {
	t.Parallel()

	p := newFakeProvider(t, nil)
	client := guardedClient(t)
	slack, err := notify.NewSlack(client, p.srv.URL+"/hook")
	require.NoError(t, err)
	sms, err := notify.NewSMS(client, notify.SMSConfig{BaseURL: p.srv.URL, AccountSID: "AC1", AuthToken: "tok", From: "+15550001111"})
	require.NoError(t, err)
	push, err := notify.NewPush(client, notify.PushConfig{URL: p.srv.URL})
	require.NoError(t, err)

	tests := []struct {
		name   string
		sender notify.AlertSender
		alert  notify.Alert
	}{
		{name: "slack no title", sender: slack, alert: notify.Alert{Message: "m"}},
		{name: "slack no message", sender: slack, alert: notify.Alert{Title: "t", Message: "  "}},
		{name: "sms no recipients", sender: sms, alert: notify.Alert{Title: "t", Message: "m"}},
		{name: "sms bad number", sender: sms, alert: notify.Alert{Title: "t", Message: "m", Recipients: []string{"555-1234"}}},
		{name: "push no topic", sender: push, alert: notify.Alert{Title: "t", Message: "m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			err := tt.sender.Send(t.Context(), tt.alert)
			require.ErrorIs(t, err, notify.ErrInvalid)
			require.True(t, notify.IsPermanent(err))
		})
	}
	require.Empty(t, p.requests())
}

func TestSMSSend(t *testing.T) {
	t.Parallel()

	const (
		account = "AC0123456789abcdef"
		token   = "tok-s3cr3t-value"
		from    = "+15550001111"
	)
	p := newFakeProvider(t, func(r recorded) (int, string) {
		user, pass, ok := (&http.Request{Header: r.Header}).BasicAuth()
		if !ok || user != account || pass != token {
			// A careless provider echoing the credential: it must be redacted.
			return http.StatusUnauthorized, `{"code":20003,"message":"bad token ` + pass + `"}`
		}
		form, err := url.ParseQuery(string(r.Body))
		if err != nil || form.Get("To") == "+15559990000" {
			return http.StatusBadRequest, `{"code":21211,"message":"Invalid 'To' Phone Number"}`
		}
		if form.Get("To") == "+15558880000" {
			return http.StatusServiceUnavailable, `{"message":"try later"}`
		}
		return http.StatusCreated, `{"sid":"SM1","status":"queued"}`
	})
	sms, err := notify.NewSMS(guardedClient(t), notify.SMSConfig{
		BaseURL: p.srv.URL, AccountSID: account, AuthToken: token, From: from,
	})
	require.NoError(t, err)

	t.Run("delivered", func(t *testing.T) {
		err := sms.Send(t.Context(), notify.Alert{
			Title: "Job failed", Message: "nightly export", Severity: notify.SeverityWarning,
			Recipients: []string{"+15551230001", "+15551230002"},
		})
		require.NoError(t, err)

		reqs := p.requests()
		require.Len(t, reqs, 2)
		for i, r := range reqs {
			require.Equal(t, http.MethodPost, r.Method)
			require.Equal(t, "/2010-04-01/Accounts/"+account+"/Messages.json", r.Path)
			require.Equal(t, "application/x-www-form-urlencoded", r.Header.Get("Content-Type"))
			form, err := url.ParseQuery(string(r.Body))
			require.NoError(t, err)
			require.Equal(t, []string{"+1555123000" + string(rune('1'+i))}, form["To"])
			require.Equal(t, []string{from}, form["From"])
			require.Equal(t, []string{"[WARNING] Job failed: nightly export"}, form["Body"])
		}
	})

	t.Run("long body is cut", func(t *testing.T) {
		err := sms.SendSMS(t.Context(), "+15551230003", strings.Repeat("é", 2000))
		require.NoError(t, err)
		reqs := p.requests()
		form, err := url.ParseQuery(string(reqs[len(reqs)-1].Body))
		require.NoError(t, err)
		require.Len(t, []rune(form.Get("Body")), 1600)
	})

	t.Run("failures", func(t *testing.T) {
		tests := []struct {
			name       string
			recipients []string
			permanent  bool
			status     int
		}{
			{name: "invalid number", recipients: []string{"+15559990000"}, permanent: true, status: 400},
			{name: "unavailable", recipients: []string{"+15558880000"}, status: 503},
			{name: "mixed", recipients: []string{"+15559990000", "+15551230004", "+15558880000"}, status: 400},
			{name: "all permanent", recipients: []string{"+15559990000", "+15559990000"}, permanent: true, status: 400},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := sms.Send(t.Context(), notify.Alert{Title: "t", Message: "m", Recipients: tt.recipients})
				require.Error(t, err)
				require.Equal(t, tt.permanent, notify.IsPermanent(err), "error: %v", err)
				var ne *notify.Error
				require.ErrorAs(t, err, &ne)
				require.Equal(t, tt.status, ne.StatusCode)
				require.NotContains(t, err.Error(), token)
			})
		}
	})

	t.Run("wrong token is not echoed", func(t *testing.T) {
		bad, err := notify.NewSMS(guardedClient(t), notify.SMSConfig{
			BaseURL: p.srv.URL, AccountSID: account, AuthToken: "wrong-" + token, From: from,
		})
		require.NoError(t, err)
		err = bad.SendSMS(t.Context(), "+15551230005", "hi")
		require.True(t, notify.IsPermanent(err))
		require.NotContains(t, err.Error(), token)
		require.Contains(t, err.Error(), "status 401")
		require.NotContains(t, err.Error(), "[redacted]", "the provider's body is not quoted at all")
	})
}

func TestNewSMSValidatesConfig(t *testing.T) {
	t.Parallel()

	good := notify.SMSConfig{AccountSID: "AC1", AuthToken: "t0k3n", From: "+15550001111"}
	tests := []struct {
		name   string
		modify func(c *notify.SMSConfig)
	}{
		{name: "no account", modify: func(c *notify.SMSConfig) { c.AccountSID = "" }},
		{name: "account with path", modify: func(c *notify.SMSConfig) { c.AccountSID = "../../x" }},
		{name: "no token", modify: func(c *notify.SMSConfig) { c.AuthToken = "" }},
		{name: "bad from", modify: func(c *notify.SMSConfig) { c.From = "Taskforge" }},
		{name: "bad base", modify: func(c *notify.SMSConfig) { c.BaseURL = "ftp://x" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			cfg := good
			tt.modify(&cfg)
			_, err := notify.NewSMS(http.DefaultClient, cfg)
			require.ErrorIs(t, err, notify.ErrInvalid)
			require.NotContains(t, err.Error(), "t0k3n")
		})
	}
}

func TestPushSend(t *testing.T) {
	t.Parallel()

	const token = "tk_s3cr3t_push"
	p := newFakeProvider(t, func(r recorded) (int, string) {
		if got := r.Header.Get("Authorization"); got != "Bearer "+token {
			return http.StatusForbidden, `{"error":"forbidden: ` + got + `"}`
		}
		return http.StatusOK, `{"id":"x"}`
	})
	push, err := notify.NewPush(guardedClient(t), notify.PushConfig{URL: p.srv.URL + "/", Token: token, Topic: "ops"})
	require.NoError(t, err)

	type message struct {
		Topic    string   `json:"topic"`
		Title    string   `json:"title"`
		Message  string   `json:"message"`
		Priority int      `json:"priority"`
		Tags     []string `json:"tags"`
	}
	tests := []struct {
		name  string
		alert notify.Alert
		want  []message
	}{
		{
			name:  "default topic",
			alert: notify.Alert{Title: "Backup done", Message: "all good"},
			want:  []message{{Topic: "ops", Title: "Backup done", Message: "all good", Priority: 3, Tags: []string{"info"}}},
		},
		{
			name:  "recipients are topics",
			alert: notify.Alert{Title: "Down", Message: "api down", Severity: notify.SeverityCritical, Recipients: []string{"oncall", "mgmt"}},
			want: []message{
				{Topic: "oncall", Title: "Down", Message: "api down", Priority: 5, Tags: []string{"critical"}},
				{Topic: "mgmt", Title: "Down", Message: "api down", Priority: 5, Tags: []string{"critical"}},
			},
		},
		{
			name:  "warning",
			alert: notify.Alert{Title: "Slow", Message: "p99 up", Severity: notify.SeverityWarning},
			want:  []message{{Topic: "ops", Title: "Slow", Message: "p99 up", Priority: 4, Tags: []string{"warning"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(p.requests())
			require.NoError(t, push.Send(t.Context(), tt.alert))
			reqs := p.requests()[before:]
			require.Len(t, reqs, len(tt.want))
			for i, r := range reqs {
				require.Equal(t, http.MethodPost, r.Method)
				require.Equal(t, "application/json", r.Header.Get("Content-Type"))
				var got message
				require.NoError(t, json.Unmarshal(r.Body, &got))
				require.Equal(t, tt.want[i], got)
			}
		})
	}

	t.Run("bad token", func(t *testing.T) {
		bad, err := notify.NewPush(guardedClient(t), notify.PushConfig{URL: p.srv.URL, Token: "nope-" + token, Topic: "ops"})
		require.NoError(t, err)
		err = bad.Send(t.Context(), notify.Alert{Title: "t", Message: "m"})
		require.True(t, notify.IsPermanent(err))
		require.NotContains(t, err.Error(), token)
		require.Contains(t, err.Error(), "[redacted]")
	})
}

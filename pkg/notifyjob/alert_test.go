package notifyjob_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notifyjob"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// Canaries: credentials that must never leave the request that carries them.
const (
	slackPath   = "/services/T000/B000/slackCANARYpath"
	smsAccount  = "AC0123456789abcdef"
	smsToken    = "smsTOKEN-CANARY-31337"
	smsFrom     = "+15550001111"
	pushToken   = "pushTOKEN-CANARY-4242"
	smtpCanary  = "smtpPASSWORD-CANARY-99"
	okRecipient = "+15551230001"
)

// alertBundle is a Service whose alert channels post to local fake providers,
// built from configuration as the worker builds it.
type alertBundle struct {
	svc                  *notifyjob.Service
	slack, sms, push     *fakeServer
	slackURL, smsBaseURL string
}

func setupAlerts(t *testing.T) alertBundle {
	t.Helper()
	b := alertBundle{}
	b.slack = newFakeServer(t, nil)
	b.sms = newFakeServer(t, func(r recorded) (int, string) {
		user, pass, ok := (&http.Request{Header: r.Header}).BasicAuth()
		if !ok || user != smsAccount || pass != smsToken {
			return http.StatusUnauthorized, `{"message":"bad credentials ` + pass + `"}`
		}
		form, _ := url.ParseQuery(string(r.Body))
		switch form.Get("To") {
		case "+15559990000":
			return http.StatusBadRequest, `{"message":"invalid To"}`
		case "+15558880000":
			return http.StatusServiceUnavailable, `{"message":"try later"}`
		}
		return http.StatusCreated, `{"sid":"SM1"}`
	})
	b.push = newFakeServer(t, func(r recorded) (int, string) {
		if r.Header.Get("Authorization") != "Bearer "+pushToken {
			return http.StatusForbidden, "forbidden " + r.Header.Get("Authorization")
		}
		return http.StatusOK, `{"id":"p1"}`
	})
	b.slackURL = b.slack.srv.URL + slackPath
	b.smsBaseURL = b.sms.srv.URL
	client := guardedClient(t, true)
	senders, err := notifyjob.SendersFromConfig(config.SMTPConfig{}, config.AlertsConfig{
		SlackWebhookURL: b.slackURL,
		SMSURL:          b.smsBaseURL, SMSAccount: smsAccount, SMSToken: smsToken, SMSFrom: smsFrom,
		PushURL: b.push.srv.URL + "/push", PushToken: pushToken,
	}, client)
	require.NoError(t, err)
	require.Nil(t, senders.Mailer)
	require.Nil(t, senders.EmailSender())
	pg := testenv.NewPostgres(t)
	b.svc = newService(t, notifyjob.Options{DB: pg.DB, HTTPClient: client, Mailer: senders.EmailSender(), Alerts: senders.Alerts})
	return b
}

// requireNoCredentials checks every canary.
func requireNoCredentials(t *testing.T, rec *job.Recorder, err error) {
	t.Helper()
	for _, c := range []string{slackPath, "slackCANARYpath", smsToken, pushToken,
		base64.StdEncoding.EncodeToString([]byte(smsAccount + ":" + smsToken))} {
		requireNoSecret(t, rec, err, c)
	}
}

func TestSendAlertDelivers(t *testing.T) {
	t.Parallel()
	b := setupAlerts(t)

	t.Run("slack", func(t *testing.T) {
		rec := &job.Recorder{ID: "task_alert_slack"}
		err := b.svc.SendAlert(t.Context(), rec, &taskpb.SendAlertParams{
			Channel: "slack", Title: "Backup failed", Message: "disk <full> & more", Severity: "critical",
		})
		require.NoError(t, err)
		reqs := b.slack.requests()
		require.Len(t, reqs, 1)
		require.Equal(t, http.MethodPost, reqs[0].Method)
		require.Equal(t, slackPath, reqs[0].Path)
		require.Equal(t, "application/json", reqs[0].Header.Get("Content-Type"))
		var body struct {
			Text   string `json:"text"`
			Blocks []struct {
				Text struct{ Text string } `json:"text"`
			} `json:"blocks"`
		}
		require.NoError(t, json.Unmarshal(reqs[0].Body, &body))
		require.Equal(t, "[CRITICAL] Backup failed: disk &lt;full&gt; &amp; more", body.Text)
		require.Len(t, body.Blocks, 1)
		require.Contains(t, body.Blocks[0].Text.Text, "*Backup failed*")
		require.JSONEq(t, `{"channel":"slack","recipients":0}`, string(rec.Result()))
		requireNoCredentials(t, rec, nil)
	})

	t.Run("sms", func(t *testing.T) {
		rec := &job.Recorder{ID: "task_alert_sms"}
		recipients := []string{okRecipient, "+15551230002"}
		err := b.svc.SendAlert(t.Context(), rec, &taskpb.SendAlertParams{
			Channel: "sms", Title: "Job failed", Message: "nightly export", Severity: "warning", Recipients: recipients,
		})
		require.NoError(t, err)
		reqs := b.sms.requests()
		require.Len(t, reqs, 2)
		for i, r := range reqs {
			require.Equal(t, "/2010-04-01/Accounts/"+smsAccount+"/Messages.json", r.Path)
			user, pass, ok := (&http.Request{Header: r.Header}).BasicAuth()
			require.True(t, ok)
			require.Equal(t, smsAccount, user)
			require.Equal(t, smsToken, pass)
			form, err := url.ParseQuery(string(r.Body))
			require.NoError(t, err)
			require.Equal(t, recipients[i], form.Get("To"))
			require.Equal(t, smsFrom, form.Get("From"))
			require.Equal(t, "[WARNING] Job failed: nightly export", form.Get("Body"))
		}
		require.JSONEq(t, `{"channel":"sms","recipients":2}`, string(rec.Result()))
		requireNoCredentials(t, rec, nil)
	})

	t.Run("push", func(t *testing.T) {
		rec := &job.Recorder{ID: "task_alert_push"}
		err := b.svc.SendAlert(t.Context(), rec, &taskpb.SendAlertParams{
			Channel: "push", Title: "Deploy", Message: "v2 is live", Recipients: []string{"ops", "dev"},
		})
		require.NoError(t, err)
		reqs := b.push.requests()
		require.Len(t, reqs, 2)
		for i, r := range reqs {
			require.Equal(t, "/push", r.Path)
			require.Equal(t, "Bearer "+pushToken, r.Header.Get("Authorization"))
			var m struct {
				Topic, Title, Message string
				Priority              int
			}
			require.NoError(t, json.Unmarshal(r.Body, &m))
			require.Equal(t, []string{"ops", "dev"}[i], m.Topic)
			require.Equal(t, "Deploy", m.Title)
			require.Equal(t, "v2 is live", m.Message)
			require.Equal(t, 3, m.Priority)
		}
		require.JSONEq(t, `{"channel":"push","recipients":2}`, string(rec.Result()))
		requireNoCredentials(t, rec, nil)
	})
}

func TestSendAlertFailures(t *testing.T) {
	t.Parallel()
	b := setupAlerts(t)
	pg := testenv.NewPostgres(t)
	bare := newService(t, notifyjob.Options{DB: pg.DB})

	tests := []struct {
		name      string
		svc       *notifyjob.Service
		params    *taskpb.SendAlertParams
		permanent bool
		target    error
		contains  string
	}{
		{name: "slack not configured", svc: bare, params: &taskpb.SendAlertParams{Channel: "slack", Title: "t", Message: "m"},
			permanent: true, target: notifyjob.ErrChannelNotConfigured, contains: "alerts.slack_webhook_url"},
		{name: "sms not configured", svc: bare, params: &taskpb.SendAlertParams{Channel: "sms", Title: "t", Message: "m", Recipients: []string{okRecipient}},
			permanent: true, target: notifyjob.ErrChannelNotConfigured, contains: "alerts.sms_token"},
		{name: "push not configured", svc: bare, params: &taskpb.SendAlertParams{Channel: "push", Title: "t", Message: "m"},
			permanent: true, target: notifyjob.ErrChannelNotConfigured, contains: "alerts.push_url"},
		{name: "unknown channel", svc: b.svc, params: &taskpb.SendAlertParams{Channel: "pager", Title: "t", Message: "m"},
			permanent: true, target: notifyjob.ErrUnknownChannel},
		{name: "sms rejected number", svc: b.svc, params: &taskpb.SendAlertParams{Channel: "sms", Title: "t", Message: "m", Recipients: []string{"+15559990000"}},
			permanent: true, contains: "status 400"},
		{name: "sms provider down", svc: b.svc, params: &taskpb.SendAlertParams{Channel: "sms", Title: "t", Message: "m", Recipients: []string{"+15558880000"}},
			permanent: false, contains: "status 503"},
		{name: "push without topic", svc: b.svc, params: &taskpb.SendAlertParams{Channel: "push", Title: "t", Message: "m"},
			permanent: true, contains: "no default topic"},
		{name: "empty title", svc: b.svc, params: &taskpb.SendAlertParams{Channel: "slack", Message: "m"},
			permanent: true, contains: "title"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &job.Recorder{ID: "task_alert_fail"}
			err := tt.svc.SendAlert(t.Context(), rec, tt.params)
			require.Error(t, err)
			require.Equal(t, tt.permanent, job.IsPermanent(err), "error: %v", err)
			if tt.target != nil {
				require.ErrorIs(t, err, tt.target)
			}
			require.Contains(t, err.Error(), tt.contains)
			require.Nil(t, rec.Result())
			requireNoCredentials(t, rec, err)
		})
	}

	t.Run("wrong credentials are not echoed", func(t *testing.T) {
		client := guardedClient(t, true)
		senders, err := notifyjob.SendersFromConfig(config.SMTPConfig{}, config.AlertsConfig{
			SMSURL: b.smsBaseURL, SMSAccount: smsAccount, SMSToken: "wrong-" + smsToken, SMSFrom: smsFrom,
			PushURL: b.push.srv.URL, PushToken: "wrong-" + pushToken,
		}, client)
		require.NoError(t, err)
		svc := newService(t, notifyjob.Options{DB: pg.DB, HTTPClient: client, Alerts: senders.Alerts})
		for _, p := range []*taskpb.SendAlertParams{
			{Channel: "sms", Title: "t", Message: "m", Recipients: []string{okRecipient}},
			{Channel: "push", Title: "t", Message: "m", Recipients: []string{"ops"}},
		} {
			rec := &job.Recorder{ID: "task_alert_creds"}
			err := svc.SendAlert(t.Context(), rec, p)
			require.Error(t, err)
			require.True(t, job.IsPermanent(err), "error: %v", err)
			requireNoCredentials(t, rec, err)
		}
	})

	t.Run("slack blocked without the allow list", func(t *testing.T) {
		client := guardedClient(t, false)
		senders, err := notifyjob.SendersFromConfig(config.SMTPConfig{}, config.AlertsConfig{SlackWebhookURL: b.slackURL}, client)
		require.NoError(t, err)
		svc := newService(t, notifyjob.Options{DB: pg.DB, HTTPClient: client, Alerts: senders.Alerts})
		before := len(b.slack.requests())
		rec := &job.Recorder{ID: "task_alert_blocked"}
		err = svc.SendAlert(t.Context(), rec, &taskpb.SendAlertParams{Channel: "slack", Title: "t", Message: "m"})
		require.True(t, job.IsPermanent(err), "error: %v", err)
		require.Len(t, b.slack.requests(), before)
		requireNoCredentials(t, rec, err)
	})
}

func TestSendersFromConfig(t *testing.T) {
	t.Parallel()
	client := guardedClient(t, true)

	t.Run("defaults", func(t *testing.T) {
		s, err := notifyjob.SendersFromConfig(config.Defaults().SMTP, config.Defaults().Alerts, client)
		require.NoError(t, err)
		require.NotNil(t, s.Mailer, "smtp has a default host")
		require.Empty(t, s.Alerts, "no alert channel is configured by default")
	})

	tests := []struct {
		name   string
		smtp   config.SMTPConfig
		alerts config.AlertsConfig
	}{
		{name: "smtp password without user", smtp: config.SMTPConfig{Host: "mail.test", Password: smtpCanary, From: "a@b.test"}},
		{name: "smtp bad tls", smtp: config.SMTPConfig{Host: "mail.test", Password: smtpCanary, Username: "u", From: "a@b.test", TLS: "ssl3"}},
		{name: "sms without token", alerts: config.AlertsConfig{SMSAccount: smsAccount, SMSFrom: smsFrom}},
		{name: "sms without from", alerts: config.AlertsConfig{SMSAccount: smsAccount, SMSToken: smsToken}},
		{name: "slack not a url", alerts: config.AlertsConfig{SlackWebhookURL: "hooks.slack.test" + slackPath}},
		{name: "push token without url", alerts: config.AlertsConfig{PushToken: pushToken}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := notifyjob.SendersFromConfig(tt.smtp, tt.alerts, client)
			require.Error(t, err)
			for _, c := range []string{smtpCanary, smsToken, pushToken, "slackCANARYpath"} {
				require.NotContains(t, err.Error(), c)
			}
		})
	}
}

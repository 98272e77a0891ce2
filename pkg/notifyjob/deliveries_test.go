package notifyjob_test

import (
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notifyjob"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// TestSendAlertRetrySkipsReached sends an SMS alert to three numbers through
// a local Twilio-style fake whose answer for one of them is 503 the first
// time: the attempt fails retryably, and the retry texts only that number,
// not the two already reached. A third run sends nothing.
func TestSendAlertRetrySkipsReached(t *testing.T) {
	t.Parallel()
	const flaky = "+15551230003"
	var flakyCalls atomic.Int32
	sms := newFakeServer(t, func(r recorded) (int, string) {
		form, _ := url.ParseQuery(string(r.Body))
		if form.Get("To") == flaky && flakyCalls.Add(1) == 1 {
			return http.StatusServiceUnavailable, `{"message":"try later"}`
		}
		return http.StatusCreated, `{"sid":"SM1"}`
	})
	client := guardedClient(t, true)
	senders, err := notifyjob.SendersFromConfig(config.SMTPConfig{}, config.AlertsConfig{
		SMSURL: sms.srv.URL, SMSAccount: smsAccount, SMSToken: smsToken, SMSFrom: smsFrom,
	}, client)
	require.NoError(t, err)
	pg := testenv.NewPostgres(t)
	svc := newService(t, notifyjob.Options{DB: pg.DB, HTTPClient: client, Alerts: senders.Alerts})
	insertTask(t, pg.DB, taskRow{ID: "task_sms_retry", Type: "send_alert", Status: "running", CreatedBy: "key_op"})

	params := &taskpb.SendAlertParams{Channel: "sms", Title: "t", Message: "m",
		Recipients: []string{"+15551230001", "+15551230002", flaky}}
	to := func() []string {
		var out []string
		for _, r := range sms.requests() {
			form, _ := url.ParseQuery(string(r.Body))
			out = append(out, form.Get("To"))
		}
		return out
	}

	err = svc.SendAlert(t.Context(), &job.Recorder{ID: "task_sms_retry"}, params)
	require.Error(t, err)
	require.False(t, job.IsPermanent(err), "a 503 is worth a retry: %v", err)
	require.Equal(t, []string{"+15551230001", "+15551230002", flaky}, to())

	rec := &job.Recorder{ID: "task_sms_retry"}
	require.NoError(t, svc.SendAlert(t.Context(), rec, params))
	require.Equal(t, []string{"+15551230001", "+15551230002", flaky, flaky}, to(), "the retry texts only the number not reached")
	require.JSONEq(t, `{"channel":"sms","recipients":3}`, string(rec.Result()))

	require.NoError(t, svc.SendAlert(t.Context(), &job.Recorder{ID: "task_sms_retry"}, params))
	require.Len(t, to(), 4, "every number was reached: nothing is sent again")
}

// TestSendEmailRetryDoesNotResend runs send_email twice for one task against
// a local SMTP server, as a retry after a failure past the send would: the
// second run sends nothing, another task's mail still goes out.
func TestSendEmailRetryDoesNotResend(t *testing.T) {
	t.Parallel()
	b := setupEmail(t)
	svc := newService(t, notifyjob.Options{DB: b.db, Mailer: b.mailer, Results: b.results})
	insertTask(t, b.db, taskRow{ID: "task_email_once", Type: "send_email", Status: "running", CreatedBy: "key_alice"})
	insertTask(t, b.db, taskRow{ID: "task_email_other", Type: "send_email", Status: "running", CreatedBy: "key_alice"})
	params := &taskpb.SendEmailParams{To: []string{"alice@example.test"}, Cc: []string{"bob@example.test"}, Subject: "Once", BodyText: "x"}

	require.NoError(t, svc.SendEmail(t.Context(), &job.Recorder{ID: "task_email_once"}, params))
	b.mp.MessageBySubject(t, "Once")
	require.Equal(t, 1, b.mp.Count(t))
	require.NoError(t, svc.SendEmail(t.Context(), &job.Recorder{ID: "task_email_once"}, params))
	require.NoError(t, svc.SendEmail(t.Context(), &job.Recorder{ID: "task_email_other"}, params))
	require.Eventually(t, func() bool { return b.mp.Count(t) == 2 }, 10*time.Second, 20*time.Millisecond,
		"the other task's mail arrives, the retried one is not sent again")
	require.Equal(t, 2, b.mp.Count(t))
}

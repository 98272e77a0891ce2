package notifyjob_test

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/notify/notifytest"
	"github.com/taskforge/taskforge/pkg/notifyjob"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// emailBundle is a database, a result store, an SMTP server and a mailer.
type emailBundle struct {
	db      *gorm.DB
	results *result.Store
	mp      *notifytest.Server
	mailer  *notify.Mailer
}

func setupEmail(t *testing.T) emailBundle {
	t.Helper()
	pg := testenv.NewPostgres(t)
	backend, err := result.NewLocal(t.TempDir())
	require.NoError(t, err)
	signer, err := result.NewSigner([]byte("0123456789abcdef0123456789abcdef"), "http://api.test", time.Minute)
	require.NoError(t, err)
	results, err := result.New(pg.DB, backend, result.Options{Signer: signer})
	require.NoError(t, err)
	mp := notifytest.Start(t)
	mailer, err := notify.NewMailer(notify.MailConfig{
		Host: "127.0.0.1", Port: mp.SMTPPort, From: "Taskforge <noreply@taskforge.test>", TLS: notify.MailTLSNone,
	})
	require.NoError(t, err)
	return emailBundle{db: pg.DB, results: results, mp: mp, mailer: mailer}
}

// putFile stores a result file of a task.
func (b emailBundle) putFile(t *testing.T, taskID, name, contentType string, data []byte) {
	t.Helper()
	_, err := b.results.Put(t.Context(), taskID, name, contentType, bytes.NewReader(data))
	require.NoError(t, err)
}

// binaryData is n bytes covering every byte value.
func binaryData(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(i * 7)
	}
	return out
}

func TestSendEmailDeliversWithAttachments(t *testing.T) {
	t.Parallel()
	b := setupEmail(t)
	svc := newService(t, notifyjob.Options{DB: b.db, Mailer: b.mailer, Results: b.results})

	csv := []byte("symbol,close\nAAPL,190.5\nMSFT,410.25\n")
	bin := binaryData(3000)
	const jsonResult = `{"market_value": 1234.5, "portfolio_id": "pf_main"}`
	insertTask(t, b.db, taskRow{ID: "task_email_ok", Type: "send_email", Status: "running", CreatedBy: "key_alice"})
	insertTask(t, b.db, taskRow{ID: "task_report_1", Type: "generate_reports", CreatedBy: "key_alice", Result: `{"files":2}`})
	b.putFile(t, "task_report_1", "report.csv", "text/csv", csv)
	b.putFile(t, "task_report_1", "report.bin", "application/octet-stream", bin)
	insertTask(t, b.db, taskRow{ID: "task_value_1", CreatedBy: "key_alice", Result: jsonResult})

	rec := &job.Recorder{ID: "task_email_ok"}
	params := &taskpb.SendEmailParams{
		To:       []string{"Alice <alice@example.test>", "bob@example.test"},
		Cc:       []string{"carol@example.test"},
		Subject:  "Monthly report ✓",
		BodyText: "See the attached report.",
		BodyHtml: "<p>See the <b>attached</b> report.</p>",
		// A repeated id is attached once.
		Attachments: []string{"task_report_1", "task_value_1", "task_report_1"},
	}
	require.NoError(t, svc.SendEmail(t.Context(), rec, params))

	got := b.mp.MessageBySubject(t, params.Subject)
	require.Equal(t, "noreply@taskforge.test", got.From.Address)
	require.Equal(t, []string{"alice@example.test", "bob@example.test"}, notifytest.Addresses(got.To))
	require.Equal(t, []string{"carol@example.test"}, notifytest.Addresses(got.Cc))
	require.Equal(t, params.BodyText, strings.TrimSpace(got.Text))
	require.Contains(t, got.HTML, params.BodyHtml)

	require.Len(t, got.Attachments, 3)
	want := []struct {
		name, contentType string
		data              []byte
	}{
		{"report.csv", "text/csv", csv},
		{"report.bin", "application/octet-stream", bin},
		{"task_value_1.json", "application/json", nil},
	}
	for i, w := range want {
		a := got.Attachments[i]
		require.Equal(t, w.name, a.FileName)
		require.Equal(t, w.contentType, a.ContentType)
		data := b.mp.Part(t, got.ID, a.PartID)
		if w.data != nil {
			require.Equal(t, w.data, data)
		} else {
			require.JSONEq(t, jsonResult, string(data))
		}
	}
	var total int
	for _, a := range got.Attachments {
		total += a.Size
	}
	require.JSONEq(t, `{"recipients":3,"attachments":3,"attachment_bytes":`+itoa(total)+`}`, string(rec.Result()))
	require.Equal(t, 1.0, rec.Fraction())
}

func TestSendEmailAttachmentRules(t *testing.T) {
	t.Parallel()
	b := setupEmail(t)
	svc := newService(t, notifyjob.Options{DB: b.db, Mailer: b.mailer, Results: b.results, MaxAttachmentBytes: 1000})

	insertKey(t, b.db, "key_admin", "admin", false)
	insertKey(t, b.db, "key_revoked_admin", "admin", true)
	insertKey(t, b.db, "key_bob", "operator", false)
	insertTask(t, b.db, taskRow{ID: "task_of_bob", CreatedBy: "key_bob", Result: `{"secret_figure":42}`})
	insertTask(t, b.db, taskRow{ID: "task_of_alice", CreatedBy: "key_alice", Result: `{"n":1}`})
	insertTask(t, b.db, taskRow{ID: "task_of_nobody", CreatedBy: "", Result: `{"n":1}`})
	insertTask(t, b.db, taskRow{ID: "task_running", Status: "running", CreatedBy: "key_alice"})
	insertTask(t, b.db, taskRow{ID: "task_failed", Status: "failed", CreatedBy: "key_alice"})
	insertTask(t, b.db, taskRow{ID: "task_empty", CreatedBy: "key_alice"})
	insertTask(t, b.db, taskRow{ID: "task_big", CreatedBy: "key_alice"})
	b.putFile(t, "task_big", "big.bin", "", binaryData(1500))
	insertTask(t, b.db, taskRow{ID: "task_medium", CreatedBy: "key_alice"})
	b.putFile(t, "task_medium", "a.bin", "", binaryData(600))
	b.putFile(t, "task_medium", "b.bin", "", binaryData(600))

	tests := []struct {
		name        string
		creator     string
		attachments []string
		permanent   bool
		target      error
		contains    string
		delivered   bool
	}{
		{name: "another caller's task", creator: "key_alice", attachments: []string{"task_of_bob"},
			permanent: true, target: notifyjob.ErrAttachmentNotVisible, contains: "task_of_bob"},
		{name: "missing task", creator: "key_alice", attachments: []string{"task_missing"},
			permanent: true, target: notifyjob.ErrAttachmentNotVisible, contains: "task_missing"},
		{name: "own and another's", creator: "key_alice", attachments: []string{"task_of_alice", "task_of_bob"},
			permanent: true, target: notifyjob.ErrAttachmentNotVisible, contains: "task_of_bob"},
		{name: "no creator", creator: "", attachments: []string{"task_of_nobody"},
			permanent: true, target: notifyjob.ErrAttachmentNotVisible, contains: "task_of_nobody"},
		{name: "revoked admin", creator: "key_revoked_admin", attachments: []string{"task_of_bob"},
			permanent: true, target: notifyjob.ErrAttachmentNotVisible, contains: "task_of_bob"},
		{name: "admin sees every task", creator: "key_admin", attachments: []string{"task_of_bob", "task_of_alice"}, delivered: true},
		{name: "not finished yet", creator: "key_alice", attachments: []string{"task_running"},
			permanent: false, contains: "task_running has not finished"},
		{name: "failed task", creator: "key_alice", attachments: []string{"task_failed"},
			permanent: true, target: notifyjob.ErrAttachmentFailed, contains: "task_failed"},
		{name: "no result", creator: "key_alice", attachments: []string{"task_empty"},
			permanent: true, target: notifyjob.ErrNoAttachmentResult, contains: "task_empty"},
		{name: "one file over the cap", creator: "key_alice", attachments: []string{"task_big"},
			permanent: true, target: notifyjob.ErrAttachmentsTooLarge, contains: "task_big"},
		{name: "files together over the cap", creator: "key_alice", attachments: []string{"task_medium"},
			permanent: true, target: notifyjob.ErrAttachmentsTooLarge, contains: "task_medium"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "task_email_rule_" + itoa(i)
			insertTask(t, b.db, taskRow{ID: id, Type: "send_email", Status: "running", CreatedBy: tt.creator})
			rec := &job.Recorder{ID: id}
			subject := "Rule " + tt.name
			err := svc.SendEmail(t.Context(), rec, &taskpb.SendEmailParams{
				To: []string{"ops@example.test"}, Subject: subject, BodyText: "x", Attachments: tt.attachments,
			})
			if tt.delivered {
				require.NoError(t, err)
				got := b.mp.MessageBySubject(t, subject)
				require.Len(t, got.Attachments, len(tt.attachments))
				require.Equal(t, "task_of_bob.json", got.Attachments[0].FileName)
				require.JSONEq(t, `{"secret_figure":42}`, string(b.mp.Part(t, got.ID, got.Attachments[0].PartID)))
				return
			}
			require.Error(t, err)
			require.Equal(t, tt.permanent, job.IsPermanent(err), "error: %v", err)
			if tt.target != nil {
				require.ErrorIs(t, err, tt.target)
			}
			require.Contains(t, err.Error(), tt.contains)
			require.Nil(t, rec.Result())
		})
	}
	// Only the admin's mail went out.
	require.Equal(t, 1, b.mp.Count(t))
}

func TestSendEmailConfigurationAndSecrets(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	params := &taskpb.SendEmailParams{To: []string{"ops@example.test"}, Subject: "s", BodyText: "b"}

	t.Run("no mailer", func(t *testing.T) {
		svc := newService(t, notifyjob.Options{DB: pg.DB})
		err := svc.SendEmail(t.Context(), &job.Recorder{ID: "task_email_nomailer"}, params)
		require.ErrorIs(t, err, notifyjob.ErrEmailNotConfigured)
		require.True(t, job.IsPermanent(err))
	})

	t.Run("smtp down is retryable and hides the password", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := ln.Addr().(*net.TCPAddr).Port
		require.NoError(t, ln.Close())
		mailer, err := notify.NewMailer(notify.MailConfig{
			Host: "127.0.0.1", Port: port, Username: "taskforge", Password: smtpCanary,
			From: "noreply@taskforge.test", TLS: notify.MailTLSNone,
		})
		require.NoError(t, err)
		svc := newService(t, notifyjob.Options{DB: pg.DB, Mailer: mailer})
		rec := &job.Recorder{ID: "task_email_down"}
		err = svc.SendEmail(t.Context(), rec, params)
		require.Error(t, err)
		require.False(t, job.IsPermanent(err), "error: %v", err)
		requireNoSecret(t, rec, err, smtpCanary)
	})

	t.Run("rejected login is permanent and hides the password", func(t *testing.T) {
		// the server accepts only this password; the mailer sends the canary.
		mp := notifytest.Start(t, notifytest.WithAuth("taskforge", "the-right-password"))
		mailer, err := notify.NewMailer(notify.MailConfig{
			Host: "127.0.0.1", Port: mp.SMTPPort, Username: "taskforge", Password: smtpCanary,
			From: "noreply@taskforge.test", TLS: notify.MailTLSNone,
		})
		require.NoError(t, err)
		svc := newService(t, notifyjob.Options{DB: pg.DB, Mailer: mailer})
		rec := &job.Recorder{ID: "task_email_login"}
		err = svc.SendEmail(t.Context(), rec, params)
		require.Error(t, err)
		require.True(t, job.IsPermanent(err), "error: %v", err)
		requireNoSecret(t, rec, err, smtpCanary)
		require.Zero(t, mp.Count(t))
	})

	t.Run("invalid address is permanent", func(t *testing.T) {
		b := setupEmail(t)
		svc := newService(t, notifyjob.Options{DB: b.db, Mailer: b.mailer})
		err := svc.SendEmail(t.Context(), &job.Recorder{ID: "task_email_bad"},
			&taskpb.SendEmailParams{To: []string{"not an address"}, Subject: "s", BodyText: "b"})
		require.ErrorIs(t, err, notify.ErrInvalid)
		require.True(t, job.IsPermanent(err))
	})
}

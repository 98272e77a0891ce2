package notify_test

import (
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/notify/notifytest"
)

func newMailer(t *testing.T, cfg notify.MailConfig) *notify.Mailer {
	t.Helper()
	m, err := notify.NewMailer(cfg)
	require.NoError(t, err)
	return m
}

func TestMailerDeliversOverSMTP(t *testing.T) {
	t.Parallel()

	mp := notifytest.Start(t)
	mailer := newMailer(t, notify.MailConfig{
		Host: "127.0.0.1", Port: mp.SMTPPort, From: "Taskforge <noreply@taskforge.test>", TLS: notify.MailTLSNone,
	})

	binary := make([]byte, 3000)
	for i := range binary {
		binary[i] = byte(i * 7)
	}
	csv := []byte("symbol,close\nAAPL,190.5\nMSFT,410.25\n")

	tests := []struct {
		name string
		msg  notify.Message
	}{
		{
			name: "text html and attachments",
			msg: notify.Message{
				To:      []string{"Alice <alice@example.test>", "bob@example.test"},
				Cc:      []string{"carol@example.test"},
				Subject: "Daily digest – 28 Nov ✓",
				Text:    "Portfolio up 1.2%.\nThree tasks failed.",
				HTML:    "<p>Portfolio up <b>1.2%</b>.</p>",
				Attachments: []notify.Attachment{
					{Name: "prices.csv", ContentType: "text/csv", Data: csv},
					{Name: "report.pdf", ContentType: "application/pdf", Data: binary},
				},
			},
		},
		{
			name: "text only",
			msg:  notify.Message{To: []string{"dave@example.test"}, Subject: "Text only", Text: "plain body"},
		},
		{
			name: "html only",
			msg:  notify.Message{To: []string{"erin@example.test"}, Subject: "HTML only", HTML: "<h1>hello</h1>"},
		},
		{
			name: "attachment without content type",
			msg: notify.Message{
				To: []string{"frank@example.test"}, Subject: "Blob", Text: "see attached",
				Attachments: []notify.Attachment{{Name: "blob.bin", Data: []byte{0, 1, 2, 3}}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			require.NoError(t, mailer.Send(t.Context(), tt.msg))

			got := mp.MessageBySubject(t, tt.msg.Subject)
			require.Equal(t, "noreply@taskforge.test", got.From.Address)
			require.Equal(t, "Taskforge", got.From.Name)
			require.Equal(t, addressesOf(t, tt.msg.To), notifytest.Addresses(got.To))
			require.Equal(t, addressesOf(t, tt.msg.Cc), notifytest.Addresses(got.Cc))
			if tt.msg.Text != "" {
				require.Equal(t, tt.msg.Text, strings.TrimSpace(strings.ReplaceAll(got.Text, "\r\n", "\n")))
			}
			if tt.msg.HTML != "" {
				require.Contains(t, got.HTML, tt.msg.HTML)
			} else {
				require.Empty(t, got.HTML)
			}
			require.Len(t, got.Attachments, len(tt.msg.Attachments))
			for i, want := range tt.msg.Attachments {
				a := got.Attachments[i]
				require.Equal(t, want.Name, a.FileName)
				require.Equal(t, len(want.Data), a.Size)
				wantType := want.ContentType
				if wantType == "" {
					wantType = "application/octet-stream"
				}
				require.Equal(t, wantType, a.ContentType)
				require.Equal(t, want.Data, mp.Part(t, got.ID, a.PartID))
			}
		})
	}
}

// addressesOf returns the bare addresses of a list like the one passed to Send.
func addressesOf(t *testing.T, list []string) []string {
	t.Helper()
	out := []string{}
	for _, s := range list {
		if i := strings.LastIndex(s, "<"); i >= 0 {
			s = strings.TrimSuffix(s[i+1:], ">")
		}
		out = append(out, s)
	}
	return out
}

func TestMailerAuth(t *testing.T) {
	t.Parallel()

	const (
		user     = "taskforge"
		password = "pa55-Word-s3cr3t"
	)
	mp := notifytest.Start(t, notifytest.WithAuth(user, password))

	cfg := notify.MailConfig{
		Host: "127.0.0.1", Port: mp.SMTPPort, Username: user, Password: password,
		From: "noreply@taskforge.test", TLS: notify.MailTLSNone,
	}

	t.Run("right password", func(t *testing.T) {
		t.Parallel()

		msg := notify.Message{To: []string{"ops@example.test"}, Subject: "Authenticated", Text: "hi"}
		require.NoError(t, newMailer(t, cfg).Send(t.Context(), msg))
		got := mp.MessageBySubject(t, "Authenticated")
		require.Equal(t, []string{"ops@example.test"}, notifytest.Addresses(got.To))
	})

	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()

		bad := cfg
		bad.Password = "wrong-" + password
		err := newMailer(t, bad).Send(t.Context(), notify.Message{To: []string{"ops@example.test"}, Subject: "Refused", Text: "hi"})
		require.Error(t, err)
		t.Logf("wrong password: %v", err)
		require.NotContains(t, err.Error(), "s3cr3t")
		var ne *notify.Error
		require.ErrorAs(t, err, &ne)
		require.Equal(t, notify.ChannelEmail, ne.Channel)
		require.True(t, notify.IsPermanent(err), "a rejected login is permanent: %v", err)
		require.NotContains(t, ne.Unwrap().Error(), "s3cr3t")
	})

	t.Run("no credentials", func(t *testing.T) {
		t.Parallel()

		anon := cfg
		anon.Username, anon.Password = "", ""
		err := newMailer(t, anon).Send(t.Context(), notify.Message{To: []string{"ops@example.test"}, Subject: "Anonymous", Text: "hi"})
		require.Error(t, err)
		t.Logf("no credentials: %v", err)
	})
}

func TestMailerStartTLSRequired(t *testing.T) {
	t.Parallel()

	// The test server has no certificate, so it offers no STARTTLS: the default
	// mode must refuse to send in clear text.
	mp := notifytest.Start(t)
	mailer := newMailer(t, notify.MailConfig{
		Host: "127.0.0.1", Port: mp.SMTPPort, Username: "u", Password: "s3cr3t-pw", From: "noreply@taskforge.test",
	})
	err := mailer.Send(t.Context(), notify.Message{To: []string{"ops@example.test"}, Subject: "Clear", Text: "hi"})
	require.Error(t, err)
	t.Logf("no starttls: %v", err)
	require.NotContains(t, err.Error(), "s3cr3t")
}

func TestMailerUnreachableIsRetryable(t *testing.T) {
	t.Parallel()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())

	mailer := newMailer(t, notify.MailConfig{
		Host: "127.0.0.1", Port: port, Username: "u", Password: "s3cr3t-pw", From: "noreply@taskforge.test", TLS: notify.MailTLSNone,
	})
	err = mailer.Send(t.Context(), notify.Message{To: []string{"ops@example.test"}, Subject: "x", Text: "y"})
	require.Error(t, err)
	require.True(t, notify.IsRetryable(err), "error: %v", err)
	require.NotContains(t, err.Error(), "s3cr3t")
}

func TestMailerRejectsInvalidMessages(t *testing.T) {
	t.Parallel()

	// Nothing listens on this port: validation must fail before any dial.
	mailer := newMailer(t, notify.MailConfig{Host: "127.0.0.1", Port: 1, From: "noreply@taskforge.test", TLS: notify.MailTLSNone})
	good := notify.Message{To: []string{"a@example.test"}, Subject: "s", Text: "t"}

	tests := []struct {
		name   string
		modify func(m *notify.Message)
	}{
		{name: "no recipients", modify: func(m *notify.Message) { m.To = nil }},
		{name: "bad to", modify: func(m *notify.Message) { m.To = []string{"not an address"} }},
		{name: "header injection in to", modify: func(m *notify.Message) { m.To = []string{"a@example.test\r\nBcc: x@example.test"} }},
		{name: "bad cc", modify: func(m *notify.Message) { m.Cc = []string{"@example.test"} }},
		{name: "empty subject", modify: func(m *notify.Message) { m.Subject = " " }},
		{name: "subject with newline", modify: func(m *notify.Message) { m.Subject = "hi\r\nBcc: x@example.test" }},
		{name: "no body", modify: func(m *notify.Message) { m.Text = "" }},
		{name: "attachment without name", modify: func(m *notify.Message) { m.Attachments = []notify.Attachment{{Data: []byte("x")}} }},
		{name: "attachment path", modify: func(m *notify.Message) { m.Attachments = []notify.Attachment{{Name: "../etc/passwd"}} }},
		{name: "attachment bad type", modify: func(m *notify.Message) {
			m.Attachments = []notify.Attachment{{Name: "a.txt", ContentType: "text/"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			msg := good
			tt.modify(&msg)
			err := mailer.Send(t.Context(), msg)
			require.ErrorIs(t, err, notify.ErrInvalid)
			require.True(t, notify.IsPermanent(err))
		})
	}
}

func TestNewMailerValidatesConfig(t *testing.T) {
	t.Parallel()

	good := notify.MailConfig{Host: "smtp.example.test", From: "noreply@taskforge.test", Username: "u", Password: "s3cr3t-pw"}
	tests := []struct {
		name   string
		modify func(c *notify.MailConfig)
		ok     bool
	}{
		{name: "defaults", modify: func(*notify.MailConfig) {}, ok: true},
		{name: "implicit tls", modify: func(c *notify.MailConfig) { c.TLS = "TLS" }, ok: true},
		{name: "no host", modify: func(c *notify.MailConfig) { c.Host = "" }},
		{name: "bad from", modify: func(c *notify.MailConfig) { c.From = "noreply" }},
		{name: "bad tls", modify: func(c *notify.MailConfig) { c.TLS = "ssl3" }},
		{name: "bad port", modify: func(c *notify.MailConfig) { c.Port = 70000 }},
		{name: "password without user", modify: func(c *notify.MailConfig) { c.Username = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			cfg := good
			tt.modify(&cfg)
			_, err := notify.NewMailer(cfg)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, notify.ErrInvalid)
			require.NotContains(t, err.Error(), "s3cr3t")
		})
	}
}

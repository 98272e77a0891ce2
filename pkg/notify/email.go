package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/mail"
	"net/textproto"
	"strings"

	gomail "github.com/wneessen/go-mail"
)

// TLS modes for MailConfig.TLS.
const (
	// MailTLSStartTLS upgrades a plain connection with STARTTLS and fails if
	// the server does not offer it.
	MailTLSStartTLS = "starttls"
	// MailTLSImplicit speaks TLS from the first byte (SMTPS, usually port 465).
	MailTLSImplicit = "tls"
	// MailTLSNone sends in clear text; for a local relay or a test server only.
	MailTLSNone = "none"
)

// MailConfig configures a Mailer.
type MailConfig struct {
	// Host is the SMTP server's host name. Required.
	Host string
	// Port is the SMTP port. If zero, 587 is used for starttls, 465 for tls
	// and 25 for none.
	Port int
	// Username enables SMTP AUTH when set. With starttls or tls the strongest
	// mechanism the server offers is used; with none, PLAIN is sent in clear.
	Username string
	// Password is the SMTP AUTH password; it never appears in errors.
	Password string
	// From is the sender address, such as "Taskforge <noreply@example.com>".
	// Required.
	From string
	// TLS is starttls, tls or none. If empty, starttls is used.
	TLS string
}

// Attachment is a file attached to a Message.
type Attachment struct {
	// Name is the file name shown to the recipient. Required.
	Name string
	// ContentType is the MIME type. If empty, application/octet-stream is used.
	ContentType string
	// Data is the file's content.
	Data []byte
}

// Message is one email.
type Message struct {
	// To lists the recipients; at least one is required.
	To []string
	// Cc lists carbon-copy recipients.
	Cc []string
	// Subject is required.
	Subject string
	// Text is the plain-text body. Text or HTML is required; with both, the
	// message is multipart/alternative.
	Text string
	// HTML is the HTML body.
	HTML string
	// Attachments are attached in order.
	Attachments []Attachment
}

// EmailSender sends email. *Mailer implements it.
type EmailSender interface {
	Send(ctx context.Context, msg Message) error
}

// Mailer sends email over SMTP, one connection per message.
type Mailer struct {
	cfg  MailConfig
	from string
	opts []gomail.Option
	red  redactor
}

// NewMailer validates cfg and returns a Mailer. It does not connect.
func NewMailer(cfg MailConfig) (*Mailer, error) {
	if strings.TrimSpace(cfg.Host) == "" {
		return nil, invalidf(ChannelEmail, "smtp host is empty")
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, invalidf(ChannelEmail, "smtp port %d is out of range", cfg.Port)
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, invalidf(ChannelEmail, "from address: %v", err)
	}
	if cfg.Password != "" && cfg.Username == "" {
		return nil, invalidf(ChannelEmail, "smtp password set without a username")
	}

	var opts []gomail.Option
	auth := gomail.SMTPAuthAutoDiscover
	switch strings.ToLower(cfg.TLS) {
	case "", MailTLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory), gomail.WithPort(portOr(cfg.Port, 587)))
	case MailTLSImplicit:
		opts = append(opts, gomail.WithSSL(), gomail.WithPort(portOr(cfg.Port, 465)))
	case MailTLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS), gomail.WithPort(portOr(cfg.Port, 25)))
		auth = gomail.SMTPAuthPlainNoEnc
	default:
		return nil, invalidf(ChannelEmail, "smtp tls mode %q is not starttls, tls or none", cfg.TLS)
	}
	if cfg.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(auth),
			gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password))
	} else {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthNoAuth))
	}
	// Build a client once so that option errors surface now, not at send time.
	if _, err := gomail.NewClient(cfg.Host, opts...); err != nil {
		return nil, invalidf(ChannelEmail, "smtp client: %v", redactor(nil).with(cfg.Password).apply(err.Error()))
	}
	return &Mailer{cfg: cfg, from: from.String(), opts: opts, red: redactor(nil).with(cfg.Password)}, nil
}

func portOr(port, def int) int {
	if port == 0 {
		return def
	}
	return port
}

// Send validates msg and delivers it. SMTP 5xx replies are permanent errors;
// 4xx replies, network errors and timeouts are retryable.
func (m *Mailer) Send(ctx context.Context, msg Message) error {
	gm, err := m.build(msg)
	if err != nil {
		return err
	}
	client, err := gomail.NewClient(m.cfg.Host, m.opts...)
	if err != nil {
		return invalidf(ChannelEmail, "smtp client: %s", m.red.apply(err.Error()))
	}
	if err := client.DialAndSendWithContext(ctx, gm); err != nil {
		return m.sendError(err)
	}
	return nil
}

// sendError classifies and redacts an SMTP failure.
func (m *Mailer) sendError(err error) error {
	e := &Error{
		Channel: ChannelEmail,
		msg:     m.red.apply(fmt.Sprintf("notify: email: send via %s: %v", m.cfg.Host, err)),
		err:     redactedError{msg: m.red.apply(err.Error()), cause: err},
	}
	var sendErr *gomail.SendError
	var tpErr *textproto.Error
	switch {
	case errors.As(err, &sendErr) && sendErr.ErrorCode() != 0:
		e.StatusCode = sendErr.ErrorCode()
	case errors.As(err, &tpErr):
		e.StatusCode = tpErr.Code
	}
	e.Permanent = e.StatusCode >= 500
	return e
}

// redactedError keeps a cause reachable for errors.Is and errors.As while its
// text is redacted.
type redactedError struct {
	msg   string
	cause error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.cause }

// build validates msg and turns it into a go-mail message.
func (m *Mailer) build(msg Message) (*gomail.Msg, error) {
	to, err := parseAddresses("to", msg.To)
	if err != nil {
		return nil, err
	}
	if len(to) == 0 {
		return nil, invalidf(ChannelEmail, "no recipients")
	}
	cc, err := parseAddresses("cc", msg.Cc)
	if err != nil {
		return nil, err
	}
	subject := strings.TrimSpace(msg.Subject)
	if subject == "" {
		return nil, invalidf(ChannelEmail, "subject is empty")
	}
	if strings.ContainsAny(subject, "\r\n") {
		return nil, invalidf(ChannelEmail, "subject contains a line break")
	}
	if msg.Text == "" && msg.HTML == "" {
		return nil, invalidf(ChannelEmail, "message has neither a text nor an html body")
	}

	gm := gomail.NewMsg()
	if err := gm.From(m.from); err != nil {
		return nil, invalidf(ChannelEmail, "from address: %v", err)
	}
	if err := gm.To(to...); err != nil {
		return nil, invalidf(ChannelEmail, "to address: %v", err)
	}
	if len(cc) > 0 {
		if err := gm.Cc(cc...); err != nil {
			return nil, invalidf(ChannelEmail, "cc address: %v", err)
		}
	}
	gm.Subject(subject)
	gm.SetMessageID()
	gm.SetDate()
	switch {
	case msg.Text != "" && msg.HTML != "":
		gm.SetBodyString(gomail.TypeTextPlain, msg.Text)
		gm.AddAlternativeString(gomail.TypeTextHTML, msg.HTML)
	case msg.Text != "":
		gm.SetBodyString(gomail.TypeTextPlain, msg.Text)
	default:
		gm.SetBodyString(gomail.TypeTextHTML, msg.HTML)
	}
	for i, a := range msg.Attachments {
		if err := validateAttachment(a); err != nil {
			return nil, invalidf(ChannelEmail, "attachment %d: %v", i+1, err)
		}
		ct := a.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		if err := gm.AttachReader(a.Name, bytes.NewReader(a.Data),
			gomail.WithFileContentType(gomail.ContentType(ct))); err != nil {
			return nil, invalidf(ChannelEmail, "attachment %d: %v", i+1, err)
		}
	}
	return gm, nil
}

// parseAddresses validates addresses with net/mail and returns them normalised.
func parseAddresses(field string, addrs []string) ([]string, error) {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		parsed, err := mail.ParseAddress(a)
		if err != nil {
			return nil, invalidf(ChannelEmail, "%s address %q: %v", field, a, err)
		}
		out = append(out, parsed.String())
	}
	return out, nil
}

// validateAttachment checks an attachment's name and content type.
func validateAttachment(a Attachment) error {
	if strings.TrimSpace(a.Name) == "" {
		return errors.New("name is empty")
	}
	if strings.ContainsAny(a.Name, "/\\\r\n\x00") {
		return errors.New("name contains a path separator or control character")
	}
	if a.ContentType != "" {
		if _, _, err := mime.ParseMediaType(a.ContentType); err != nil {
			return fmt.Errorf("content type %q: %w", a.ContentType, err)
		}
	}
	return nil
}

// Mailer implements EmailSender.
var _ EmailSender = (*Mailer)(nil)

// String formats the configuration with the password masked, so that it can
// be logged.
func (c MailConfig) String() string {
	return fmt.Sprintf("{Host:%s Port:%d Username:%s Password:%s From:%s TLS:%s}",
		c.Host, c.Port, c.Username, mask(c.Password), c.From, c.TLS)
}

// GoString masks the password in %#v output too.
func (c MailConfig) GoString() string { return "notify.MailConfig" + c.String() }

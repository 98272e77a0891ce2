// Package notifytest helps tests of code that sends email: it runs a real SMTP
// server (github.com/emersion/go-smtp) on a free loopback port inside the test
// process, parses every delivered message (MIME, transfer encodings) and lets
// the test read it back.
//
// The server speaks plain SMTP without STARTTLS, so a client that insists on
// TLS is refused, as by any server without a certificate. WithAuth makes it
// require AUTH PLAIN with one user name and password.
package notifytest

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
)

// Server is a running SMTP server started by a test.
type Server struct {
	// SMTPPort is the loopback port the server accepts SMTP on.
	SMTPPort int

	user, password string

	mu       sync.Mutex
	messages []*stored
}

// Address is a parsed address of a delivered message's header.
type Address struct {
	Name    string
	Address string
}

// Attachment describes one attachment of a delivered message.
type Attachment struct {
	// PartID names the attachment for Part.
	PartID      string
	FileName    string
	ContentType string
	Size        int
}

// Message is a delivered message, parsed.
type Message struct {
	ID string
	// From is the header's first From address.
	From Address
	// To and Cc are the header's recipients (not the envelope's).
	To          []Address
	Cc          []Address
	Subject     string
	Text        string
	HTML        string
	Attachments []Attachment
}

// stored is a message with its attachments' decoded contents.
type stored struct {
	msg   Message
	parts map[string][]byte
}

// Option configures Start.
type Option func(*Server)

// WithAuth makes the server require AUTH PLAIN (allowed without TLS) with
// user and password; a session that has not authenticated cannot send.
func WithAuth(user, password string) Option {
	return func(s *Server) { s.user, s.password = user, password }
}

// Addresses returns the bare addresses of list.
func Addresses(list []Address) []string {
	out := []string{}
	for _, a := range list {
		out = append(out, a.Address)
	}
	return out
}

// Start starts the server on a free loopback port and stops it at cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{}
	for _, o := range opts {
		o(s)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{server: s}, nil
	}))
	srv.Domain = "notifytest.localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.MaxMessageBytes = 32 << 20
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.SMTPPort = ln.Addr().(*net.TCPAddr).Port
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		// Close may run before Serve has registered the listener; closing it
		// here too ends Serve's Accept either way.
		_ = ln.Close()
		<-done
	})
	return s
}

// MessageBySubject waits for the message with subject and returns it.
func (s *Server) MessageBySubject(t testing.TB, subject string) Message {
	t.Helper()
	var got Message
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, m := range s.messages {
			if m.msg.Subject == subject {
				got = m.msg
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "message %q not delivered", subject)
	return got
}

// Count returns the number of messages delivered so far.
func (s *Server) Count(t testing.TB) int {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.messages)
}

// Part returns the decoded content of one attachment of a delivered message.
func (s *Server) Part(t testing.TB, id, partID string) []byte {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.messages {
		if m.msg.ID == id {
			data, ok := m.parts[partID]
			require.True(t, ok, "message %s has no part %q", id, partID)
			return data
		}
	}
	t.Fatalf("no message %q", id)
	return nil
}

// deliver parses and stores one message.
func (s *Server) deliver(r io.Reader) error {
	mr, err := mail.CreateReader(r)
	if err != nil {
		return err
	}
	defer mr.Close()
	st := &stored{parts: map[string][]byte{}}
	st.msg.Subject, err = mr.Header.Subject()
	if err != nil {
		return err
	}
	if from, err := mr.Header.AddressList("From"); err == nil && len(from) > 0 {
		st.msg.From = Address{Name: from[0].Name, Address: from[0].Address}
	}
	st.msg.To, err = addressList(mr.Header, "To")
	if err != nil {
		return err
	}
	st.msg.Cc, err = addressList(mr.Header, "Cc")
	if err != nil {
		return err
	}
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		body, err := io.ReadAll(p.Body)
		if err != nil {
			return err
		}
		switch h := p.Header.(type) {
		case *mail.InlineHeader:
			ct, _, _ := h.ContentType()
			switch ct {
			case "text/html":
				st.msg.HTML += string(body)
			case "text/plain", "":
				st.msg.Text += string(body)
			}
		case *mail.AttachmentHeader:
			name, _ := h.Filename()
			ct, _, _ := h.ContentType()
			id := strconv.Itoa(len(st.msg.Attachments) + 1)
			st.msg.Attachments = append(st.msg.Attachments, Attachment{PartID: id, FileName: name, ContentType: ct, Size: len(body)})
			st.parts[id] = body
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.msg.ID = strconv.Itoa(len(s.messages) + 1)
	s.messages = append(s.messages, st)
	return nil
}

func addressList(h mail.Header, key string) ([]Address, error) {
	list, err := h.AddressList(key)
	if err != nil {
		return nil, err
	}
	out := []Address{}
	for _, a := range list {
		out = append(out, Address{Name: a.Name, Address: a.Address})
	}
	return out, nil
}

// session is one SMTP connection.
type session struct {
	server *Server
	authed bool
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if ss.server.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, password string) error {
		if user != ss.server.user || password != ss.server.password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authentication failed"}
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) allowed() error {
	if ss.server.user != "" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (ss *session) Mail(string, *smtp.MailOptions) error { return ss.allowed() }
func (ss *session) Rcpt(string, *smtp.RcptOptions) error { return ss.allowed() }
func (ss *session) Data(r io.Reader) error {
	if err := ss.allowed(); err != nil {
		return err
	}
	return ss.server.deliver(r)
}
func (ss *session) Reset()        {}
func (ss *session) Logout() error { return nil }

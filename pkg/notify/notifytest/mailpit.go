// Package notifytest helps tests of code that sends email: it starts a real
// mailpit SMTP server on free loopback ports and reads delivered messages back
// through mailpit's HTTP API.
//
// The mailpit binary is found through the TASKFORGE_MAILPIT environment
// variable (set by scripts/test.sh) or at bin/mailpit in the repository, which
// scripts/install-mailpit.sh builds. Without one a test fails, telling how to
// install it, except under -short, where it is skipped.
package notifytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// MailpitEnv names the mailpit binary to use instead of <repo>/bin/mailpit.
const MailpitEnv = "TASKFORGE_MAILPIT"

// Mailpit is a running mailpit server started by a test.
type Mailpit struct {
	// SMTPPort is the loopback port mailpit accepts SMTP on (no TLS, no auth).
	SMTPPort int
	// API is the base URL of mailpit's HTTP API.
	API    string
	client *http.Client
}

// Address is mailpit's JSON form of an address.
type Address struct {
	Name    string
	Address string
}

// Attachment is mailpit's JSON form of an attachment.
type Attachment struct {
	PartID      string
	FileName    string
	ContentType string
	Size        int
}

// Message is mailpit's JSON form of a delivered message.
type Message struct {
	ID          string
	From        Address
	To          []Address
	Cc          []Address
	Subject     string
	Text        string
	HTML        string
	Attachments []Attachment
}

// Addresses returns the bare addresses of list.
func Addresses(list []Address) []string {
	out := []string{}
	for _, a := range list {
		out = append(out, a.Address)
	}
	return out
}

// Start starts mailpit on free loopback ports with a database in a temporary
// directory, waits until it is ready and stops it at cleanup. A start that loses
// a port race to another process is retried on new ports.
func Start(t testing.TB, extraArgs ...string) *Mailpit {
	t.Helper()
	bin := binary(t)
	var output string
	for range 3 {
		mp, out, ok := tryStart(t, bin, extraArgs)
		if ok {
			return mp
		}
		output = out
	}
	t.Fatalf("mailpit did not start: %s", output)
	return nil
}

// binary finds the mailpit binary.
func binary(t testing.TB) string {
	t.Helper()
	path := os.Getenv(MailpitEnv)
	if path == "" {
		path = filepath.Join(repoRoot(), "bin", "mailpit")
	}
	if info, err := os.Stat(path); err == nil && !info.IsDir() {
		abs, err := filepath.Abs(path)
		require.NoError(t, err)
		return abs
	}
	msg := fmt.Sprintf("mailpit not found at %q: run scripts/install-mailpit.sh "+
		"(builds it into bin/mailpit) or set %s to a mailpit binary", path, MailpitEnv)
	if testing.Short() {
		t.Skip(msg)
	}
	t.Fatal(msg)
	return ""
}

// repoRoot is the nearest directory above the working directory holding
// go.work, or the working directory if there is none.
func repoRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return wd
		}
		dir = parent
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

// lockedBuffer collects a process's output for failure messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tryStart makes one start attempt. It reports false, with the process's
// output, if mailpit exits before it is ready.
func tryStart(t testing.TB, bin string, extraArgs []string) (*Mailpit, string, bool) {
	t.Helper()
	smtpPort, httpPort := freePort(t), freePort(t)
	args := append([]string{
		"--smtp", "127.0.0.1:" + strconv.Itoa(smtpPort),
		"--listen", "127.0.0.1:" + strconv.Itoa(httpPort),
		"--database", filepath.Join(t.TempDir(), "mailpit.db"),
		"--disable-version-check",
		"--smtp-disable-rdns",
	}, extraArgs...)
	cmd := exec.Command(bin, args...)
	// Keep the caller's MP_* settings from changing the server under test.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MP_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	mp := &Mailpit{
		SMTPPort: smtpPort,
		API:      "http://127.0.0.1:" + strconv.Itoa(httpPort),
		client:   &http.Client{Timeout: 5 * time.Second},
	}
	require.Eventually(t, func() bool {
		select {
		case <-exited:
			return true // Reported below.
		default:
		}
		resp, err := mp.client.Get(mp.API + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "mailpit did not become ready: %s", out)
	select {
	case <-exited:
		return nil, out.String(), false
	default:
		return mp, "", true
	}
}

// getJSON decodes a mailpit API response.
func (mp *Mailpit) getJSON(t testing.TB, path string, v any) {
	t.Helper()
	resp, err := mp.client.Get(mp.API + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s", path)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

// MessageBySubject waits for the message with subject and returns it in full.
func (mp *Mailpit) MessageBySubject(t testing.TB, subject string) Message {
	t.Helper()
	var id string
	require.Eventually(t, func() bool {
		var list struct {
			Messages []struct {
				ID      string
				Subject string
			}
		}
		mp.getJSON(t, "/api/v1/messages?limit=500", &list)
		for _, m := range list.Messages {
			if m.Subject == subject {
				id = m.ID
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "message %q not delivered", subject)
	var msg Message
	mp.getJSON(t, "/api/v1/message/"+url.PathEscape(id), &msg)
	return msg
}

// Count returns the number of messages mailpit holds.
func (mp *Mailpit) Count(t testing.TB) int {
	t.Helper()
	var list struct {
		Total int `json:"total"`
	}
	mp.getJSON(t, "/api/v1/messages?limit=1", &list)
	return list.Total
}

// Part downloads one MIME part (such as an attachment) of a stored message.
func (mp *Mailpit) Part(t testing.TB, id, partID string) []byte {
	t.Helper()
	resp, err := mp.client.Get(mp.API + "/api/v1/message/" + url.PathEscape(id) + "/part/" + url.PathEscape(partID))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return data
}

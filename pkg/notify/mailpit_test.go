package notify_test

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // htpasswd's {SHA} scheme, for a throwaway test password.
	"encoding/base64"
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

// mailpitEnv names the mailpit binary to use instead of <repo>/bin/mailpit.
const mailpitEnv = "TASKFORGE_MAILPIT"

// mailpit is a running mailpit SMTP server started by a test.
type mailpit struct {
	smtpPort int
	api      string
	client   *http.Client
}

// mailpitBinary finds the mailpit binary. Without one the test fails, telling
// how to install it, except under -short, where it is skipped.
func mailpitBinary(t *testing.T) string {
	t.Helper()
	path := os.Getenv(mailpitEnv)
	if path == "" {
		path = filepath.Join("..", "..", "bin", "mailpit")
	}
	if info, err := os.Stat(path); err == nil && !info.IsDir() {
		abs, err := filepath.Abs(path)
		require.NoError(t, err)
		return abs
	}
	msg := fmt.Sprintf("mailpit not found at %q: run scripts/install-mailpit.sh "+
		"(builds it into bin/mailpit) or set %s to a mailpit binary", path, mailpitEnv)
	if testing.Short() {
		t.Skip(msg)
	}
	t.Fatal(msg)
	return ""
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
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

// startMailpit starts mailpit on free loopback ports with a database in a
// temporary directory, waits until it is ready and stops it at cleanup. A start
// that loses a port race to another process is retried on new ports.
func startMailpit(t *testing.T, extraArgs ...string) *mailpit {
	t.Helper()
	bin := mailpitBinary(t)
	var output string
	for range 3 {
		mp, out, ok := tryStartMailpit(t, bin, extraArgs)
		if ok {
			return mp
		}
		output = out
	}
	t.Fatalf("mailpit did not start: %s", output)
	return nil
}

// tryStartMailpit makes one start attempt. It reports false, with the
// process's output, if mailpit exits before it is ready.
func tryStartMailpit(t *testing.T, bin string, extraArgs []string) (*mailpit, string, bool) {
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

	mp := &mailpit{
		smtpPort: smtpPort,
		api:      "http://127.0.0.1:" + strconv.Itoa(httpPort),
		client:   &http.Client{Timeout: 5 * time.Second},
	}
	require.Eventually(t, func() bool {
		select {
		case <-exited:
			return true // Reported below.
		default:
		}
		resp, err := mp.client.Get(mp.api + "/readyz")
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

// address is mailpit's JSON form of an address.
type address struct {
	Name    string
	Address string
}

// storedAttachment is mailpit's JSON form of an attachment.
type storedAttachment struct {
	PartID      string
	FileName    string
	ContentType string
	Size        int
}

// storedMessage is mailpit's JSON form of a delivered message.
type storedMessage struct {
	ID          string
	From        address
	To          []address
	Cc          []address
	Subject     string
	Text        string
	HTML        string
	Attachments []storedAttachment
}

// getJSON decodes a mailpit API response.
func (mp *mailpit) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := mp.client.Get(mp.api + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s", path)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

// messageBySubject waits for the message with subject and returns it in full.
func (mp *mailpit) messageBySubject(t *testing.T, subject string) storedMessage {
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
	var msg storedMessage
	mp.getJSON(t, "/api/v1/message/"+url.PathEscape(id), &msg)
	return msg
}

// part downloads one MIME part of a stored message.
func (mp *mailpit) part(t *testing.T, id, partID string) []byte {
	t.Helper()
	resp, err := mp.client.Get(mp.api + "/api/v1/message/" + url.PathEscape(id) + "/part/" + url.PathEscape(partID))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return data
}

// htpasswdSHA returns an htpasswd line in the {SHA} scheme.
func htpasswdSHA(user, password string) string {
	sum := sha1.Sum([]byte(password)) //nolint:gosec // See import.
	return user + ":{SHA}" + base64.StdEncoding.EncodeToString(sum[:]) + "\n"
}

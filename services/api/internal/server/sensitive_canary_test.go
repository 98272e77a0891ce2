package server

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/notify/notifytest"
	"github.com/taskforge/taskforge/pkg/notifyjob"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/worker"
)

// alertGateway is a local SMS provider (Twilio-style form posts) and push
// gateway (JSON posts) recording every body it receives.
type alertGateway struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newAlertGateway(t *testing.T) *alertGateway {
	t.Helper()
	g := &alertGateway{}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if strings.HasPrefix(req.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			if v, err := url.QueryUnescape(string(body)); err == nil {
				body = []byte(v)
			}
		}
		g.mu.Lock()
		g.bodies = append(g.bodies, req.URL.Path+" "+string(body))
		g.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"sid":"SM1"}`))
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *alertGateway) received() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Join(g.bodies, "\n")
}

// notifyBundle is an API with a worker running the real notification
// handlers against a local SMTP server and a local alert gateway.
type notifyBundle struct {
	testBundle
	logs *lockedBuffer
	smtp *notifytest.Server
	gw   *alertGateway
}

func setupNotify(t *testing.T, keys *secret.Keyring) notifyBundle {
	t.Helper()
	logs := &lockedBuffer{}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), logs, zap.DebugLevel))
	b := setupWith(t, setupOptions{secure: true, bootstrap: testBootstrap, sealer: keys, log: log})
	smtpSrv := notifytest.Start(t)
	gw := newAlertGateway(t)

	guard, err := egress.New(egress.Config{AllowCIDRs: []string{"127.0.0.0/8"}})
	require.NoError(t, err)
	mailer, err := notify.NewMailer(notify.MailConfig{Host: "127.0.0.1", Port: smtpSrv.SMTPPort, From: "taskforge@example.test", TLS: "none"})
	require.NoError(t, err)
	sms, err := notify.NewSMS(guard.Client(), notify.SMSConfig{BaseURL: gw.srv.URL, AccountSID: "AC1", AuthToken: "sms-token", From: "+15550000001"})
	require.NoError(t, err)
	push, err := notify.NewPush(guard.Client(), notify.PushConfig{URL: gw.srv.URL + "/push"})
	require.NoError(t, err)
	notifications, err := notifyjob.New(notifyjob.Options{DB: b.pg.DB, HTTPClient: guard.Client(), Mailer: mailer,
		Alerts: map[string]notify.AlertSender{"sms": sms, "push": push}, Log: log, RecipientMAC: keys.MAC})
	require.NoError(t, err)

	rc := queue.Client(b.rd.Opt())
	t.Cleanup(func() { _ = rc.Close() })
	rt, err := worker.New(b.pg.DB, rc, b.inspector, log, worker.Options{Handlers: notifications.Handlers(), Opener: keyringOpener{keys}})
	require.NoError(t, err)
	serveTasks(t, b, rt, 4)
	return notifyBundle{testBundle: b, logs: logs, smtp: smtpSrv, gw: gw}
}

// create posts a task as the bootstrap admin and returns its id.
func (nb notifyBundle) create(t *testing.T, typ, params string) string {
	t.Helper()
	code, out, _ := nb.call(t, http.MethodPost, "/api/v1/tasks", testBootstrap, `{"type":"`+typ+`","params":`+params+`}`)
	require.Equal(t, http.StatusCreated, code, out)
	var c struct {
		TaskID string `json:"task_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &c))
	return c.TaskID
}

// waitCompleted waits for every task to complete, showing the error of one
// that fails.
func (nb notifyBundle) waitCompleted(t *testing.T, ids ...string) {
	t.Helper()
	for _, id := range ids {
		require.Eventually(t, func() bool {
			var r store.Task
			require.NoError(t, nb.pg.DB.Take(&r, "id = ?", id).Error)
			require.NotEqual(t, tasks.StatusFailed, r.Status, "task %s failed: %v", id, r.Error)
			return r.Status == tasks.StatusCompleted
		}, 20*time.Second, 20*time.Millisecond, id)
	}
}

// nowhereInClear checks PostgreSQL (every column of tasks, schedules,
// task_logs, notification_deliveries and audit_log), every Redis key and the
// captured logs.
func (nb notifyBundle) nowhereInClear(t *testing.T, canaries ...string) {
	t.Helper()
	rows := rowsText(t, nb.testBundle, "tasks") + rowsText(t, nb.testBundle, "schedules") + rowsText(t, nb.testBundle, "task_logs") +
		rowsText(t, nb.testBundle, "notification_deliveries") + rowsText(t, nb.testBundle, "audit_log")
	dump := redisDump(t, nb.testBundle)
	logs := nb.logs.String()
	for _, c := range canaries {
		require.NotContains(t, rows, c, "PostgreSQL")
		require.NotContains(t, dump, c, "Redis")
		require.NotContains(t, logs, c, "logs")
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

func randomDigits(t *testing.T, n int) string {
	t.Helper()
	var sb strings.Builder
	for range n {
		d, err := rand.Int(rand.Reader, big.NewInt(10))
		require.NoError(t, err)
		sb.WriteString(d.String())
	}
	return sb.String()
}

// TestSensitiveParamsCanary puts a canary in a sensitive param of every
// notification type — send_email's to, cc and body, an SMS's phone number
// (send_alert over sms), send_alert's push recipient, generate_digest's
// recipient — and in a send_email schedule's recipient: none is in
// PostgreSQL (tasks, schedules, task_logs, notification_deliveries), Redis or the logs in clear, nor
// in an API answer; the local SMTP server and alert gateway receive the real
// values from the worker.
func TestSensitiveParamsCanary(t *testing.T) {
	t.Parallel()
	k1, err := secret.NewKeyring(map[string][]byte{"k1": testKey(11)}, "k1")
	require.NoError(t, err)
	nb := setupNotify(t, k1)

	id := randomHex(t, 6)
	emailTo, emailCc := "to-"+id+"@canary.example", "cc-"+id+"@canary.example"
	bodyCanary := "BODY-" + id
	phone := "+1555" + randomDigits(t, 8)
	topic := "topic-" + id
	digestTo := "digest-" + id + "@canary.example"
	scheduleTo := "sched-" + id + "@canary.example"
	canaries := []string{emailTo, emailCc, bodyCanary, phone, topic, digestTo, scheduleTo}

	ids := []string{
		nb.create(t, tasks.TypeSendEmail, `{"to":["`+emailTo+`"],"cc":["`+emailCc+`"],"subject":"statement `+id+`","body_text":"Dear `+bodyCanary+`"}`),
		nb.create(t, tasks.TypeSendAlert, `{"channel":"sms","title":"sms `+id+`","message":"disk full","recipients":["`+phone+`"]}`),
		nb.create(t, tasks.TypeSendAlert, `{"channel":"push","title":"push `+id+`","message":"disk full","recipients":["`+topic+`"]}`),
		nb.create(t, tasks.TypeGenerateDigest, `{"period":"daily","date":"2026-11-20","recipients":["`+digestTo+`"]}`),
	}
	code, out, _ := nb.call(t, http.MethodPost, "/api/v1/schedules", testBootstrap,
		`{"name":"statements","cron":"0 6 * * *","type":"send_email","params":{"to":["`+scheduleTo+`"],"subject":"s"}}`)
	require.Equal(t, http.StatusCreated, code, out)
	answers := []string{out}

	// Sealed at rest before the worker runs.
	nb.nowhereInClear(t, canaries...)
	var row store.Task
	require.NoError(t, nb.pg.DB.Take(&row, "id = ?", ids[0]).Error)
	require.Equal(t, "k1", row.KeyID)
	require.Contains(t, string(row.Params), "enc:v1:k1:")
	require.Contains(t, string(row.Params), "statement "+id, "a field that is not sensitive (the subject) stays readable")

	nb.waitCompleted(t, ids...)
	require.Contains(t, rowsText(t, nb.testBundle, "notification_deliveries"), ids[0], "the deliveries were recorded (and are read below)")

	// The receivers got the real values.
	mail := nb.smtp.MessageBySubject(t, "statement "+id)
	require.Equal(t, []string{emailTo}, notifytest.Addresses(mail.To))
	require.Equal(t, []string{emailCc}, notifytest.Addresses(mail.Cc))
	require.Contains(t, mail.Text, bodyCanary)
	digest := nb.smtp.MessageBySubject(t, "Taskforge daily digest for 2026-11-20")
	require.Equal(t, []string{digestTo}, notifytest.Addresses(digest.To))
	got := nb.gw.received()
	require.Contains(t, got, phone, "the SMS provider gets the phone number")
	require.Contains(t, got, topic, "the push gateway gets the topic")

	// API answers mask them; nothing in clear anywhere after the runs.
	for _, tid := range ids {
		code, out, _ := nb.call(t, http.MethodGet, "/api/v1/tasks/"+tid, testBootstrap, "")
		require.Equal(t, http.StatusOK, code, out)
		require.Contains(t, out, secret.Redacted)
		answers = append(answers, out)
		code, out, _ = nb.call(t, http.MethodGet, "/api/v1/tasks/"+tid+"/logs", testBootstrap, "")
		require.Equal(t, http.StatusOK, code, out)
		answers = append(answers, out)
	}
	code, out, _ = nb.call(t, http.MethodGet, "/api/v1/tasks", testBootstrap, "")
	require.Equal(t, http.StatusOK, code, out)
	answers = append(answers, out)
	for _, a := range answers {
		for _, c := range canaries {
			require.NotContains(t, a, c)
		}
		require.NotContains(t, a, "enc:v1:")
	}
	nb.nowhereInClear(t, canaries...)
	require.Contains(t, nb.logs.String(), `"msg":"request"`, "the request log was captured")
}

// TestSealAllParamsCanary runs send_alert with crypto.seal_all_params: its
// title, which no registry entry marks sensitive, is sealed in PostgreSQL and
// Redis and absent from the logs, and the push gateway still receives it.
func TestSealAllParamsCanary(t *testing.T) {
	t.Parallel()
	k1, err := secret.NewKeyring(map[string][]byte{"k1": testKey(12)}, "k1")
	require.NoError(t, err)
	nb := setupNotify(t, k1.WithSealAll(true))

	title := "TITLE-" + randomHex(t, 6)
	taskID := nb.create(t, tasks.TypeSendAlert, `{"channel":"push","title":"`+title+`","message":"disk full","recipients":["ops"]}`)
	var row store.Task
	require.NoError(t, nb.pg.DB.Take(&row, "id = ?", taskID).Error)
	var stored map[string]any
	require.NoError(t, json.Unmarshal(row.Params, &stored))
	require.True(t, secret.IsSealed(stored["title"].(string)), "the title is sealed: %s", row.Params)
	require.True(t, secret.IsSealed(stored["channel"].(string)), "every string is: %s", row.Params)
	nb.nowhereInClear(t, title)

	nb.waitCompleted(t, taskID)
	require.Contains(t, nb.gw.received(), title, "the task ran with the opened title")
	code, out, _ := nb.call(t, http.MethodGet, "/api/v1/tasks/"+taskID, testBootstrap, "")
	require.Equal(t, http.StatusOK, code, out)
	require.NotContains(t, out, title)
	require.NotContains(t, out, "enc:v1:")
	nb.nowhereInClear(t, title)
}

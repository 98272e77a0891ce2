package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/callbackkey"
	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notifyjob"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/worker"
)

// receiver is a local webhook and callback receiver: it records the
// Authorization header of every webhook call and the body of every
// completion callback.
type receiver struct {
	srv       *httptest.Server
	mu        sync.Mutex
	auth      []string
	callbacks []string
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		switch req.URL.Path {
		case "/hook":
			r.auth = append(r.auth, req.Header.Get("Authorization"))
		case "/callback":
			r.callbacks = append(r.callbacks, string(body))
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) seen() (auth, callbacks []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.auth...), append([]string(nil), r.callbacks...)
}

// redisDump reads every key of the test's Redis database, whatever its type,
// as text (never DUMP, whose compression could hide a string).
func redisDump(t *testing.T, b testBundle) string {
	t.Helper()
	ctx := context.Background()
	rc := b.rd.Client
	var out strings.Builder
	var cursor uint64
	for {
		keys, next, err := rc.Scan(ctx, cursor, "*", 500).Result()
		require.NoError(t, err)
		for _, k := range keys {
			typ, err := rc.Type(ctx, k).Result()
			require.NoError(t, err)
			out.WriteString(k + "\n")
			var v any
			switch typ {
			case "string":
				v, err = rc.Get(ctx, k).Result()
			case "hash":
				v, err = rc.HGetAll(ctx, k).Result()
			case "list":
				v, err = rc.LRange(ctx, k, 0, -1).Result()
			case "set":
				v, err = rc.SMembers(ctx, k).Result()
			case "zset":
				v, err = rc.ZRangeWithScores(ctx, k, 0, -1).Result()
			case "stream":
				v, err = rc.XRange(ctx, k, "-", "+").Result()
			case "none":
				continue // expired between SCAN and TYPE
			default:
				t.Fatalf("redis key %s has unexpected type %s", k, typ)
			}
			require.NoError(t, err, k)
			out.WriteString(strings.ReplaceAll(strings.ReplaceAll(fmtAny(v), "\x00", ""), "\n", " ") + "\n")
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	return out.String()
}

func fmtAny(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	// JSON escapes bytes that are not valid UTF-8 but keeps ASCII as is, so a
	// canary inside a protobuf payload stays findable.
	return string(b)
}

// rowsText renders every row of a table, every column, as PostgreSQL's JSON.
func rowsText(t *testing.T, b testBundle, table string) string {
	t.Helper()
	var rows []string
	require.NoError(t, b.pg.DB.Raw("SELECT row_to_json(r)::text FROM "+table+" r").Scan(&rows).Error)
	return strings.Join(rows, "\n")
}

// TestWebhookHeaderCanary follows a credential in webhook_callback's headers
// (Authorization: Bearer CANARY-…) through a task created by an operator and a
// schedule created by an admin: it is in neither PostgreSQL row, no Redis key
// (the Asynq envelope included, nor Asynqmon's rendering of it), no log line,
// no API answer (to a viewer, to the owner, to an admin: the values read
// "***", the header names kept) and no completion callback; the webhook
// receiver gets the real header, from the task and from the schedule's fire.
func TestWebhookHeaderCanary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k1, err := secret.NewKeyring(map[string][]byte{"k1": testKey(7)}, "k1")
	require.NoError(t, err)
	logs := &lockedBuffer{}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), logs, zap.DebugLevel))
	b := setupWith(t, setupOptions{secure: true, bootstrap: testBootstrap, sealer: k1, log: log})
	opKey, err := b.keys.Create(ctx, auth.NewKey{Name: "op", Role: auth.Operator})
	require.NoError(t, err)
	viewerKey, err := b.keys.Create(ctx, auth.NewKey{Name: "viewer", Role: auth.Viewer})
	require.NoError(t, err)
	op, viewer := opKey.Plaintext, viewerKey.Plaintext

	rnd := make([]byte, 12)
	_, _ = rand.Read(rnd)
	canary := "CANARY-" + hex.EncodeToString(rnd)
	bearer := "Bearer " + canary
	rcv := newReceiver(t)

	var bodies []string
	call := func(method, path, token, body string, want int) string {
		t.Helper()
		code, out, _ := b.call(t, method, path, token, body)
		require.Equal(t, want, code, "%s %s: %s", method, path, out)
		bodies = append(bodies, out)
		return out
	}
	params := `{"url":"` + rcv.srv.URL + `/hook","headers":{"Authorization":"` + bearer + `","X-Trace":"t-1"},"payload":{"n":1}}`
	headersOf := func(body string) map[string]any {
		t.Helper()
		var v struct {
			Params struct {
				Headers map[string]any `json:"headers"`
			} `json:"params"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &v), body)
		return v.Params.Headers
	}
	masked := map[string]any{"Authorization": secret.Redacted, "X-Trace": secret.Redacted}

	// The task, by an operator, with a completion callback.
	created := call(http.MethodPost, "/api/v1/tasks", op,
		`{"type":"webhook_callback","callback_url":"`+rcv.srv.URL+`/callback","params":`+params+`}`, 201)
	var c struct {
		TaskID string `json:"task_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(created), &c))
	taskID := c.TaskID

	// The schedule, by an admin.
	sch := call(http.MethodPost, "/api/v1/schedules", testBootstrap,
		`{"name":"hook","cron":"*/5 * * * *","type":"webhook_callback","params":`+params+`}`, 201)
	var s struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal([]byte(sch), &s))
	require.Equal(t, masked, headersOf(sch), "the creation answer masks the headers too")

	// API reads: the owner and an admin see the header names with masked
	// values, as the secret field reads; a viewer sees the schedule masked
	// and cannot see the task at all.
	require.Equal(t, masked, headersOf(call(http.MethodGet, "/api/v1/tasks/"+taskID, op, "", 200)))
	require.Equal(t, masked, headersOf(call(http.MethodGet, "/api/v1/tasks/"+taskID, testBootstrap, "", 200)))
	call(http.MethodGet, "/api/v1/tasks/"+taskID, viewer, "", 404)
	call(http.MethodGet, "/api/v1/tasks", op, "", 200)
	call(http.MethodGet, "/api/v1/tasks", testBootstrap, "", 200)
	require.Equal(t, masked, headersOf(call(http.MethodGet, "/api/v1/schedules/"+s.ID, viewer, "", 200)))
	require.Equal(t, masked, headersOf(call(http.MethodGet, "/api/v1/schedules/"+s.ID, op, "", 200)))
	require.Equal(t, masked, headersOf(call(http.MethodGet, "/api/v1/schedules/"+s.ID, testBootstrap, "", 200)))
	call(http.MethodGet, "/api/v1/schedules", viewer, "", 200)

	// PostgreSQL, read raw: every column of every row of both tables holds
	// the header sealed, never in clear.
	taskRows, schedRows := rowsText(t, b, "tasks"), rowsText(t, b, "schedules")
	require.Contains(t, taskRows, taskID, "the task row was read")
	require.Contains(t, schedRows, s.ID, "the schedule row was read")
	require.NotContains(t, taskRows, canary)
	require.NotContains(t, schedRows, canary)
	var row store.Task
	require.NoError(t, b.pg.DB.Take(&row, "id = ?", taskID).Error)
	var stored struct {
		Headers map[string]string `json:"headers"`
	}
	require.NoError(t, json.Unmarshal(row.Params, &stored))
	require.True(t, secret.IsSealed(stored.Headers["Authorization"]), "stored sealed: %s", row.Params)
	require.Equal(t, "k1", row.KeyID)

	// Redis: the Asynq envelope and every other key; Asynqmon's rendering of
	// the envelope masks the header too.
	dump := redisDump(t, b)
	require.Contains(t, dump, "asynq:{high}:t:"+taskID, "the task's key was read")
	require.NotContains(t, dump, canary)
	msg, err := b.rd.Client.HGet(ctx, "asynq:{high}:t:"+taskID, "msg").Bytes()
	require.NoError(t, err)
	require.Contains(t, string(msg), "enc:v1:k1:")
	info, err := b.inspector.GetTaskInfo("high", taskID)
	require.NoError(t, err)
	shown := secret.FormatPayload(info.Type, info.Payload)
	require.Contains(t, shown, `"Authorization": "`+secret.Redacted+`"`)
	require.NotContains(t, shown, canary)

	// The schedule fires once (its next tick, as the scheduler would).
	srow, err := b.schedules.Row(ctx, s.ID)
	require.NoError(t, err)
	next := schedule.NextRun(srow, time.Now())
	require.NotNil(t, next)
	firer, err := schedule.NewFirer(b.pg.DB, b.svc, log, schedule.FireOptions{Keyring: k1,
		Now: func() time.Time { return next.Add(time.Second) }})
	require.NoError(t, err)
	fired, err := firer.FireJob(ctx, s.ID)
	require.NoError(t, err)
	require.Len(t, fired.Created, 1)
	firedID := fired.Created[0].ID
	require.NotContains(t, redisDump(t, b), canary)

	// A worker runs both with the real webhook handler through an egress
	// guard that allows the loopback receiver, and delivers the callback.
	guard, err := egress.New(egress.Config{AllowCIDRs: []string{"127.0.0.0/8"}})
	require.NoError(t, err)
	notifications, err := notifyjob.New(notifyjob.Options{DB: b.pg.DB, HTTPClient: guard.Client(), Log: log})
	require.NoError(t, err)
	hook := notifications.Handlers()[tasks.TypeWebhookCallback]
	require.NotNil(t, hook)
	callbackKeys, err := callbackkey.New(b.pg.DB, k1, time.Minute)
	require.NoError(t, err)
	callbacks, err := worker.NewCallbacks(b.pg.DB, guard.Client(), callbackKeys, log,
		worker.CallbackOptions{Redact: taskservice.RedactParams})
	require.NoError(t, err)
	rc := queue.Client(b.rd.Opt())
	t.Cleanup(func() { _ = rc.Close() })
	rt, err := worker.New(b.pg.DB, rc, b.inspector, log, worker.Options{
		Handlers: map[string]job.Handler{tasks.TypeWebhookCallback: hook}, Opener: keyringOpener{k1},
	})
	require.NoError(t, err)
	serveTasks(t, b, rt, 2)
	status := func(id string) string {
		var r store.Task
		require.NoError(t, b.pg.DB.Take(&r, "id = ?", id).Error)
		return r.Status
	}
	for _, id := range []string{taskID, firedID} {
		require.Eventually(t, func() bool { return status(id) == tasks.StatusCompleted }, 20*time.Second, 20*time.Millisecond, id)
	}
	require.Eventually(t, func() bool {
		_, err := callbacks.DeliverDue(ctx)
		require.NoError(t, err)
		_, cbs := rcv.seen()
		return len(cbs) > 0
	}, 20*time.Second, 20*time.Millisecond, "the completion callback arrives")

	// The receiver got the real header, once per task; the callback carries
	// the params masked.
	got, cbs := rcv.seen()
	require.Equal(t, []string{bearer, bearer}, got)
	require.Len(t, cbs, 1)
	require.NotContains(t, cbs[0], canary)
	require.Equal(t, masked, headersOf(cbs[0]), "the callback's params are masked: %s", cbs[0])

	// After the runs: still nothing in clear anywhere.
	call(http.MethodGet, "/api/v1/tasks/"+firedID, testBootstrap, "", 200)
	call(http.MethodGet, "/api/v1/tasks/"+taskID+"/logs", op, "", 200)
	require.NotContains(t, rowsText(t, b, "tasks"), canary)
	require.NotContains(t, rowsText(t, b, "task_logs"), canary)
	require.NotContains(t, rowsText(t, b, "schedules"), canary)
	require.NotContains(t, redisDump(t, b), canary)
	for _, body := range bodies {
		require.NotContains(t, body, canary)
		require.NotContains(t, body, "enc:v1:")
	}
	require.Contains(t, logs.String(), `"msg":"request"`, "the request log was captured")
	require.NotContains(t, logs.String(), canary)
}

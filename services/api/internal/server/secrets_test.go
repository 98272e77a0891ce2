package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/queue"
	"github.com/taskforge/taskforge/pkg/schedule"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/worker"
)

// keyringOpener adapts a keyring to the worker runtime, as the worker does.
type keyringOpener struct{ k *secret.Keyring }

func (o keyringOpener) Open(_ string, msg proto.Message) error { return o.k.Open(msg) }

func testKey(b byte) []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

// TestSecretParamsNeverLeak follows secret params (canary strings) through
// the API, the schedules, PostgreSQL, Redis, the logs and the worker: they are
// stored and queued only sealed, never returned or logged, sealed exactly once
// when a schedule fires, opened by a worker whose keyring has rotated (tasks
// sealed under k1 still run once k2 is active), and a tampered value fails
// its task at once with a clear error.
func TestSecretParamsNeverLeak(t *testing.T) {
	t.Parallel()
	k1, err := secret.NewKeyring(map[string][]byte{"k1": testKey(1)}, "k1")
	require.NoError(t, err)
	logs := &lockedBuffer{}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), logs, zap.DebugLevel))
	b := setupWith(t, setupOptions{secure: true, bootstrap: testBootstrap, sealer: k1, log: log})
	opKey, err := b.keys.Create(ctx, auth.NewKey{Name: "op", Role: auth.Operator})
	require.NoError(t, err)
	op := opKey.Plaintext

	const (
		canary      = "canary-task-secret-7d41e9"
		canaryTamp  = "canary-tampered-secret-51aa0c"
		canarySched = "canary-schedule-secret-b2c8f0"
		canaryK2    = "canary-rotated-secret-09e3d7"
	)
	var bodies []string
	call := func(method, path, token, body string, want int) string {
		t.Helper()
		code, out, _ := b.call(t, method, path, token, body)
		require.Equal(t, want, code, "%s %s: %s", method, path, out)
		bodies = append(bodies, out)
		return out
	}
	webhook := func(secretValue string) string {
		return `{"type":"webhook_callback","params":{"url":"https://hooks.example/in","secret":"` + secretValue + `"}}`
	}
	idOf := func(body, field string) string {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &m))
		return m[field].(string)
	}

	// A task with a secret, through the API; a replay with the same body is
	// the same task, with another secret a conflict (the keyed hash).
	created := call(http.MethodPost, "/api/v1/tasks", op, `{"type":"webhook_callback","idempotency_key":"idem-1","params":{"url":"https://hooks.example/in","secret":"`+canary+`"}}`, 201)
	taskID := idOf(created, "task_id")
	replay := call(http.MethodPost, "/api/v1/tasks", op, `{"type":"webhook_callback","idempotency_key":"idem-1","params":{"url":"https://hooks.example/in","secret":"`+canary+`"}}`, 200)
	require.Equal(t, taskID, idOf(replay, "task_id"))
	call(http.MethodPost, "/api/v1/tasks", op, `{"type":"webhook_callback","idempotency_key":"idem-1","params":{"url":"https://hooks.example/in","secret":"other"}}`, 409)
	got := call(http.MethodGet, "/api/v1/tasks/"+taskID, op, "", 200)
	require.Contains(t, got, `"secret":"`+secret.Redacted+`"`)
	call(http.MethodGet, "/api/v1/tasks", op, "", 200)
	tampID := idOf(call(http.MethodPost, "/api/v1/tasks", op, webhook(canaryTamp), 201), "task_id")

	// PostgreSQL holds ciphertext and a keyed request hash.
	var row store.Task
	require.NoError(t, b.pg.DB.Take(&row, "id = ?", taskID).Error)
	require.NotContains(t, string(row.Params), canary)
	require.Contains(t, string(row.Params), "enc:v1:k1:")
	require.Equal(t, "k1", row.KeyID)
	require.True(t, strings.HasPrefix(row.RequestHash, "hmac:"), row.RequestHash)

	// Redis holds the sealed envelope only.
	msg, err := b.rd.Client.HGet(ctx, "asynq:{high}:t:"+taskID, "msg").Bytes()
	require.NoError(t, err)
	require.Contains(t, string(msg), "enc:v1:k1:", "the right field was read")
	require.NotContains(t, string(msg), canary)

	// A schedule with a secret keeps it sealed, across an edit.
	sch := call(http.MethodPost, "/api/v1/schedules", testBootstrap,
		`{"name":"hook","cron":"*/5 * * * *","type":"webhook_callback","params":{"url":"https://hooks.example/s","secret":"`+canarySched+`"}}`, 201)
	schID := idOf(sch, "id")
	call(http.MethodPatch, "/api/v1/schedules/"+schID, testBootstrap, `{"enabled":false}`, 200)
	call(http.MethodPatch, "/api/v1/schedules/"+schID, testBootstrap, `{"enabled":true,"priority":"high"}`, 200)
	got = call(http.MethodGet, "/api/v1/schedules/"+schID, op, "", 200)
	require.Contains(t, got, `"secret":"`+schedule.Redacted+`"`)
	call(http.MethodGet, "/api/v1/schedules", op, "", 200)
	srow, err := b.schedules.Row(ctx, schID)
	require.NoError(t, err)
	require.NotContains(t, string(srow.Params), canarySched)
	require.Equal(t, 1, strings.Count(string(srow.Params), "enc:v1:k1:"))
	stored := &taskpb.WebhookCallbackParams{}
	require.NoError(t, protojson.Unmarshal(srow.Params, stored))
	require.NoError(t, k1.Open(stored))
	require.Equal(t, canarySched, stored.GetSecret(), "sealed once: one Open gives the plaintext")

	// The schedule fires (its next tick, as the scheduler would): the task is
	// sealed once, not twice.
	next := schedule.NextRun(srow, time.Now())
	require.NotNil(t, next)
	firer, err := schedule.NewFirer(b.pg.DB, b.svc, log, schedule.FireOptions{Keyring: k1,
		Now: func() time.Time { return next.Add(time.Second) }})
	require.NoError(t, err)
	out, err := firer.FireJob(ctx, schID)
	require.NoError(t, err)
	require.Len(t, out.Created, 1)
	fired := out.Created[0]
	require.NotContains(t, string(fired.Params), canarySched)
	firedParams := &taskpb.WebhookCallbackParams{}
	require.NoError(t, protojson.Unmarshal(fired.Params, firedParams))
	require.NoError(t, k1.Open(firedParams))
	require.Equal(t, canarySched, firedParams.GetSecret(), "the fired task's secret is sealed exactly once")
	msg, err = b.rd.Client.HGet(ctx, "asynq:{high}:t:"+fired.ID, "msg").Bytes()
	require.NoError(t, err)
	require.NotContains(t, string(msg), canarySched)

	// Rotation: k2 becomes active. A task sealed under k2 (a task service of a
	// replica that has the new keyring) runs beside those sealed under k1.
	k2, err := secret.NewKeyring(map[string][]byte{"k1": testKey(1), "k2": testKey(2)}, "k2")
	require.NoError(t, err)
	ac, insp := asynq.NewClient(b.rd.Opt()), asynq.NewInspector(b.rd.Opt())
	t.Cleanup(func() { _ = ac.Close(); _ = insp.Close() })
	svc2, err := taskservice.New(b.pg.DB, ac, insp, log, taskservice.Options{Sealer: k2})
	require.NoError(t, err)
	t.Cleanup(svc2.Close)
	c2, err := svc2.Create(ctx, taskservice.CreateRequest{Type: tasks.TypeWebhookCallback, CreatedBy: opKey.Key.ID,
		Params: json.RawMessage(`{"url":"https://hooks.example/k2","secret":"` + canaryK2 + `"}`)})
	require.NoError(t, err)
	require.Equal(t, "k2", c2.Task.KeyID)

	// Tampering: the queued envelope of one task gets a corrupted ciphertext.
	var trow store.Task
	require.NoError(t, b.pg.DB.Take(&trow, "id = ?", tampID).Error)
	tp := &taskpb.WebhookCallbackParams{}
	require.NoError(t, protojson.Unmarshal(trow.Params, tp))
	sealed := tp.GetSecret()
	tp.Secret = sealed[:len(sealed)-6] + flip(sealed[len(sealed)-6:])
	payload, err := tasks.EncodeEnvelope(tampID, tasks.TypeWebhookCallback, tp, tasks.DefaultRetry, trow.TimeoutSeconds, trow.KeyID, 0)
	require.NoError(t, err)
	require.NoError(t, insp.DeleteTask("high", tampID))
	_, err = ac.Enqueue(asynq.NewTask(tasks.TypeWebhookCallback, payload), asynq.TaskID(tampID), asynq.Queue("high"), asynq.MaxRetry(3))
	require.NoError(t, err)

	// A worker with the rotated keyring runs them all.
	var mu sync.Mutex
	opened := map[string]string{}
	handler := job.Typed(func(_ context.Context, _ job.Reporter, p *taskpb.WebhookCallbackParams) error {
		mu.Lock()
		defer mu.Unlock()
		opened[p.GetUrl()+"#"+p.GetSecret()] = p.GetSecret()
		return nil
	})
	rc := queue.Client(b.rd.Opt())
	t.Cleanup(func() { _ = rc.Close() })
	rt, err := worker.New(b.pg.DB, rc, insp, log, worker.Options{
		Handlers: map[string]job.Handler{tasks.TypeWebhookCallback: handler}, Opener: keyringOpener{k2},
	})
	require.NoError(t, err)
	serveTasks(t, b, rt, 2)
	status := func(id string) store.Task {
		var r store.Task
		require.NoError(t, b.pg.DB.Take(&r, "id = ?", id).Error)
		return r
	}
	for _, id := range []string{taskID, fired.ID, c2.Task.ID} {
		require.Eventually(t, func() bool { return status(id).Status == tasks.StatusCompleted }, 20*time.Second, 50*time.Millisecond, id)
	}
	require.Eventually(t, func() bool { return status(tampID).Status == tasks.StatusFailed }, 20*time.Second, 50*time.Millisecond)
	failed := status(tampID)
	require.Contains(t, string(failed.Error), "tampered")
	require.Contains(t, string(failed.Error), "secret", "the error names the field")
	require.Equal(t, 1, failed.Attempt, "no retry: tampering is permanent")
	mu.Lock()
	require.ElementsMatch(t, []string{canary, canarySched, canaryK2}, values(opened), "handlers got the plaintext; the tampered task never ran")
	mu.Unlock()

	// Nothing returned or logged holds a secret, its ciphertext or a credential.
	call(http.MethodGet, "/api/v1/tasks/"+tampID, op, "", 200)
	call(http.MethodGet, "/api/v1/tasks?limit=50", testBootstrap, "", 200)
	for _, s := range []string{canary, canaryTamp, canarySched, canaryK2} {
		for _, body := range bodies {
			require.NotContains(t, body, s)
		}
		require.NotContains(t, logs.String(), s)
	}
	for _, body := range bodies {
		require.NotContains(t, body, "enc:v1:")
	}
	require.NotContains(t, logs.String(), op)
	require.NotContains(t, logs.String(), testBootstrap)
	require.NotContains(t, logs.String(), "enc:v1:")
	require.Contains(t, logs.String(), `"msg":"request"`, "the request log was captured")
}

// flip changes every character of s to another of the base64url alphabet.
func flip(s string) string {
	out := []byte(s)
	for i, c := range out {
		if c == 'A' {
			out[i] = 'B'
		} else {
			out[i] = 'A'
		}
	}
	return string(out)
}

func values(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

package notifyjob_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/notifyjob"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/testenv"
)

// webhookSecret is a canary: it must never show up outside the signature.
const webhookSecret = "whsec-CANARY-7f3a9b21"

// verifying answers 200 to requests signed with webhookSecret and 401 to others.
func verifying(r recorded) (int, string) {
	if err := notify.Verify([]byte(webhookSecret), r.Header.Get(notify.SignatureHeader), r.Body, time.Now(), 0); err != nil {
		return http.StatusUnauthorized, err.Error()
	}
	return http.StatusOK, `{"received":true}`
}

func TestWebhookCallbackDelivers(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	svc := newService(t, notifyjob.Options{DB: pg.DB})

	t.Run("signed POST", func(t *testing.T) {
		t.Parallel()
		srv := newFakeServer(t, verifying)
		want := map[string]any{"event": "task.completed", "count": 3.0, "nested": map[string]any{"ok": true, "tags": []any{"a", "b"}}}
		payload, err := structpb.NewValue(want)
		require.NoError(t, err)
		rec := &job.Recorder{ID: "task_webhook_1"}
		err = svc.WebhookCallback(t.Context(), rec, &taskpb.WebhookCallbackParams{
			Url: srv.srv.URL + "/hooks/in?token=abc", Headers: map[string]string{"X-Custom": "value-1"},
			Payload: payload, Secret: webhookSecret,
		})
		require.NoError(t, err)

		reqs := srv.requests()
		require.Len(t, reqs, 1)
		r := reqs[0]
		require.Equal(t, http.MethodPost, r.Method)
		require.Equal(t, "/hooks/in?token=abc", r.Path)
		require.Equal(t, "application/json", r.Header.Get("Content-Type"))
		require.Equal(t, "value-1", r.Header.Get("X-Custom"))
		require.Equal(t, "task_webhook_1", r.Header.Get("Idempotency-Key"))
		require.NoError(t, notify.Verify([]byte(webhookSecret), r.Header.Get(notify.SignatureHeader), r.Body, time.Now(), time.Minute))
		var got map[string]any
		require.NoError(t, json.Unmarshal(r.Body, &got))
		require.Equal(t, want, got)

		require.JSONEq(t, `{"status":200}`, string(rec.Result()))
		require.Equal(t, 1.0, rec.Fraction())
		requireNoSecret(t, rec, nil, webhookSecret)
		requireNoSecret(t, rec, nil, "token=abc")
	})

	t.Run("PUT without payload or secret", func(t *testing.T) {
		t.Parallel()
		srv := newFakeServer(t, func(recorded) (int, string) { return http.StatusNoContent, "" })
		rec := &job.Recorder{ID: "task_webhook_2"}
		err := svc.WebhookCallback(t.Context(), rec, &taskpb.WebhookCallbackParams{
			Url: srv.srv.URL, Method: "PUT", Headers: map[string]string{"idempotency-key": "caller-key"},
		})
		require.NoError(t, err)
		reqs := srv.requests()
		require.Len(t, reqs, 1)
		require.Equal(t, []string{"caller-key"}, reqs[0].Header.Values("Idempotency-Key"))
		require.Equal(t, http.MethodPut, reqs[0].Method)
		require.Equal(t, "{}", string(reqs[0].Body))
		require.Empty(t, reqs[0].Header.Get(notify.SignatureHeader))
		require.JSONEq(t, `{"status":204}`, string(rec.Result()))
	})

	t.Run("same payload same body", func(t *testing.T) {
		t.Parallel()
		srv := newFakeServer(t, verifying)
		payload, err := structpb.NewValue(map[string]any{"a": 1.0, "b": []any{"x", 2.0}})
		require.NoError(t, err)
		p := &taskpb.WebhookCallbackParams{Url: srv.srv.URL, Payload: payload, Secret: webhookSecret}
		for range 3 {
			require.NoError(t, svc.WebhookCallback(t.Context(), &job.Recorder{ID: "task_webhook_3"}, p))
		}
		reqs := srv.requests()
		require.Len(t, reqs, 3)
		for _, r := range reqs[1:] {
			require.Equal(t, string(reqs[0].Body), string(r.Body))
		}
	})
}

func TestWebhookCallbackRetryRules(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	svc := newService(t, notifyjob.Options{DB: pg.DB})

	tests := []struct {
		status    int
		permanent bool
	}{
		{http.StatusBadRequest, true},
		{http.StatusUnauthorized, true},
		{http.StatusForbidden, true},
		{http.StatusNotFound, true},
		{http.StatusGone, true},
		{http.StatusUnprocessableEntity, true},
		{http.StatusRequestTimeout, false},
		{http.StatusTooManyRequests, false},
		{http.StatusInternalServerError, false},
		{http.StatusBadGateway, false},
		{http.StatusServiceUnavailable, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			// A careless receiver that echoes the secret and the URL's token.
			srv := newFakeServer(t, func(r recorded) (int, string) {
				return tt.status, "rejected " + webhookSecret + " at " + r.Path
			})
			rec := &job.Recorder{ID: "task_webhook_rules"}
			err := svc.WebhookCallback(t.Context(), rec, &taskpb.WebhookCallbackParams{
				Url: srv.srv.URL + "/cb?token=tok-CANARY-q", Secret: webhookSecret,
			})
			require.Error(t, err)
			require.Equal(t, tt.permanent, job.IsPermanent(err), "error: %v", err)
			require.Contains(t, err.Error(), fmt.Sprintf("status %d", tt.status))
			require.Len(t, srv.requests(), 1, "the handler itself never retries")
			require.Nil(t, rec.Result())
			requireNoSecret(t, rec, err, webhookSecret)
			requireNoSecret(t, rec, err, "tok-CANARY-q")
		})
	}

	t.Run("network error", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close()) // Connection refused.
		rec := &job.Recorder{ID: "task_webhook_net"}
		err = svc.WebhookCallback(t.Context(), rec, &taskpb.WebhookCallbackParams{Url: "http://" + addr + "/x", Secret: webhookSecret})
		require.Error(t, err)
		require.False(t, job.IsPermanent(err), "error: %v", err)
		requireNoSecret(t, rec, err, webhookSecret)
	})

	t.Run("retried until the receiver recovers", func(t *testing.T) {
		t.Parallel()
		var calls atomic.Int32
		srv := newFakeServer(t, func(r recorded) (int, string) {
			if calls.Add(1) < 3 {
				return http.StatusServiceUnavailable, "busy"
			}
			return verifying(r)
		})
		p := &taskpb.WebhookCallbackParams{Url: srv.srv.URL, Secret: webhookSecret}
		// The worker calls the handler again while the error is retryable.
		var err error
		attempts := 0
		for attempt := 1; attempt <= 4; attempt++ {
			attempts = attempt
			err = svc.WebhookCallback(t.Context(), &job.Recorder{ID: "task_webhook_retry", N: attempt}, p)
			if err == nil || job.IsPermanent(err) {
				break
			}
		}
		require.NoError(t, err)
		require.Equal(t, 3, attempts)
		for _, r := range srv.requests() {
			require.NoError(t, notify.Verify([]byte(webhookSecret), r.Header.Get(notify.SignatureHeader), r.Body, time.Now(), 0))
			require.Equal(t, "task_webhook_retry", r.Header.Get("Idempotency-Key"), "the same key on every attempt")
		}
	})

	t.Run("forbidden header", func(t *testing.T) {
		t.Parallel()
		srv := newFakeServer(t, nil)
		err := svc.WebhookCallback(t.Context(), &job.Recorder{ID: "task_webhook_hdr"}, &taskpb.WebhookCallbackParams{
			Url: srv.srv.URL, Headers: map[string]string{"X-Taskforge-Signature": "t=1,v1=00"},
		})
		require.ErrorIs(t, err, notify.ErrForbiddenHeader)
		require.True(t, job.IsPermanent(err))
		require.Empty(t, srv.requests())
	})
}

func TestWebhookCallbackBlockedDestinations(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)

	// dialCounter counts the connections the guard opens.
	var dials atomic.Int32
	countingDial := func(ctx context.Context, network, address string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
	newGuarded := func(t *testing.T, allow []string) *notifyjob.Service {
		g, err := egress.New(egress.Config{AllowCIDRs: allow}, egress.WithDialFunc(countingDial))
		require.NoError(t, err)
		return newService(t, notifyjob.Options{DB: pg.DB, HTTPClient: g.Client()})
	}
	srv := newFakeServer(t, nil)

	tests := []struct {
		name  string
		allow []string
		url   string
	}{
		{name: "loopback without the allow list", url: srv.srv.URL + "/hook?token=s3cr3t-path"},
		{name: "localhost by name", url: "http://localhost:" + portOf(t, srv.srv.URL) + "/hook"},
		{name: "metadata address", allow: []string{"127.0.0.0/8"}, url: "http://169.254.169.254/latest/meta-data/"},
		{name: "private address", allow: []string{"127.0.0.0/8"}, url: "http://10.0.0.1:8080/hook"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newGuarded(t, tt.allow)
			rec := &job.Recorder{ID: "task_webhook_blocked"}
			err := svc.WebhookCallback(t.Context(), rec, &taskpb.WebhookCallbackParams{Url: tt.url, Secret: webhookSecret})
			require.ErrorIs(t, err, egress.ErrBlocked)
			require.True(t, job.IsPermanent(err), "error: %v", err)
			require.NotContains(t, err.Error(), "s3cr3t-path")
			requireNoSecret(t, rec, err, webhookSecret)
		})
	}
	require.Zero(t, dials.Load(), "no connection may be opened to a blocked address")
	require.Empty(t, srv.requests())

	// The same guard reaches the server once loopback is allowed: the counter
	// above did count real dials.
	svc := newGuarded(t, []string{"127.0.0.0/8"})
	require.NoError(t, svc.WebhookCallback(t.Context(), &job.Recorder{ID: "task_webhook_allowed"},
		&taskpb.WebhookCallbackParams{Url: srv.srv.URL}))
	require.Equal(t, int32(1), dials.Load())
	require.Len(t, srv.requests(), 1)
}

// portOf returns the port of a test server's URL.
func portOf(t *testing.T, rawURL string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(rawURL[len("http://"):])
	require.NoError(t, err)
	return port
}

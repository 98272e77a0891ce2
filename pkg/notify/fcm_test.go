package notify_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/notify"
)

// TestFCMTokenExchangeFailures: a token endpoint refusing the credentials is
// permanent, one that is down retryable; neither error quotes the private key
// or the endpoint's reply, and no message is sent without a token.
func TestFCMTokenExchangeFailures(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	var sent atomic.Int32
	fcm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { sent.Add(1) }))
	t.Cleanup(fcm.Close)
	for _, tc := range []struct {
		status    int
		permanent bool
	}{
		{http.StatusUnauthorized, true},
		{http.StatusBadRequest, true},
		{http.StatusServiceUnavailable, false},
		{http.StatusTooManyRequests, false},
	} {
		tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"REPLY-CANARY"}`))
		}))
		t.Cleanup(tokens.Close)
		creds, err := json.Marshal(map[string]string{
			"type": "service_account", "project_id": "p", "private_key": keyPEM,
			"client_email": "a@p.iam.gserviceaccount.com", "token_uri": tokens.URL + "/token",
		})
		require.NoError(t, err)
		f, err := notify.NewFCM(http.DefaultClient, notify.FCMConfig{CredentialsJSON: string(creds), BaseURL: fcm.URL})
		require.NoError(t, err)
		err = f.Send(t.Context(), "tok", notify.Alert{Title: "t", Message: "m"})
		require.Error(t, err)
		require.Equal(t, tc.permanent, notify.IsPermanent(err), "status %d: %v", tc.status, err)
		var ne *notify.Error
		require.True(t, errors.As(err, &ne))
		require.Equal(t, tc.status, ne.StatusCode)
		require.False(t, notify.IsGone(err), "a token refusal is not a gone registration")
		require.NotContains(t, err.Error(), "REPLY-CANARY")
		require.NotContains(t, err.Error(), "PRIVATE KEY")
	}
	require.Zero(t, sent.Load())
}

// TestWebPushKeys: the subscription keys must be a P-256 point and 16 bytes.
func TestWebPushKeys(t *testing.T) {
	t.Parallel()
	const p256dh = "BMJqMermh_5su9VmeuD4uD48JfReguczXdS2ZCMbOVocAzdueogZK9UN1s_MtK6ILvuWDxXx2x2ymlLeqDWqHIk"
	const auth = "vPklkqtZpdJNYgzSC0Wy_w"
	for _, tc := range []struct{ p256dh, auth, field string }{
		{p256dh, auth, ""},
		{p256dh + "==", auth + "==", ""},
		{"", auth, "keys.p256dh"},
		{"not base64!", auth, "keys.p256dh"},
		{"AAAA", auth, "keys.p256dh"},
		{p256dh, "", "keys.auth"},
		{p256dh, "AAAAAAAA", "keys.auth"},
	} {
		field, _ := notify.CheckWebPushKeys(tc.p256dh, tc.auth)
		require.Equal(t, tc.field, field, "%q %q", tc.p256dh, tc.auth)
	}
}

package notify_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/notify"
)

// TestVerifyWebhook holds the Standard Webhooks verifier to the
// specification: the published test vector verifies; another secret, a
// changed body or id, and a timestamp outside the tolerance are refused.
func TestVerifyWebhook(t *testing.T) {
	t.Parallel()
	// The vector of the specification's reference libraries.
	key, err := notify.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	body := []byte(`{"test": 2432232314}`)
	at := time.Unix(1614265330, 0)
	h := http.Header{}
	h.Set(notify.HeaderWebhookID, "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set(notify.HeaderWebhookTimestamp, "1614265330")
	h.Set(notify.HeaderWebhookSignature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", notify.SignWebhook("msg_p5jXN8AQM9LWM0D4loKWxJek", at, body, key))
	require.NoError(t, notify.VerifyWebhook(key, h, body, at, 0))

	other, err := notify.ParseSecret(notify.FormatSecret(notify.NewSecret()))
	require.NoError(t, err)
	require.ErrorIs(t, notify.VerifyWebhook(other, h, body, at, 0), notify.ErrBadSignature)
	require.ErrorIs(t, notify.VerifyWebhook(key, h, []byte(`{"test": 1}`), at, 0), notify.ErrBadSignature)

	// Two signatures (a rotation's overlap): either secret verifies.
	both := h.Clone()
	both.Set(notify.HeaderWebhookSignature, notify.SignWebhook("msg_p5jXN8AQM9LWM0D4loKWxJek", at, body, other, key))
	require.NoError(t, notify.VerifyWebhook(key, both, body, at, 0))
	require.NoError(t, notify.VerifyWebhook(other, both, body, at, 0))

	changedID := h.Clone()
	changedID.Set(notify.HeaderWebhookID, "msg_other")
	require.ErrorIs(t, notify.VerifyWebhook(key, changedID, body, at, 0), notify.ErrBadSignature)

	// Outside the tolerance, in either direction, even with a good signature.
	require.ErrorIs(t, notify.VerifyWebhook(key, h, body, at.Add(6*time.Minute), 0), notify.ErrSignatureExpired)
	require.ErrorIs(t, notify.VerifyWebhook(key, h, body, at.Add(-6*time.Minute), 0), notify.ErrSignatureExpired)
	require.ErrorIs(t, notify.VerifyWebhook(key, h, body, at.Add(2*time.Minute), time.Minute), notify.ErrSignatureExpired)
	require.NoError(t, notify.VerifyWebhook(key, h, body, at.Add(4*time.Minute), 0))

	for name, mut := range map[string]func(http.Header){
		"no id":        func(h http.Header) { h.Del(notify.HeaderWebhookID) },
		"no timestamp": func(h http.Header) { h.Del(notify.HeaderWebhookTimestamp) },
		"bad time":     func(h http.Header) { h.Set(notify.HeaderWebhookTimestamp, "soon") },
		"no signature": func(h http.Header) { h.Del(notify.HeaderWebhookSignature) },
		"v2 only": func(h http.Header) {
			h.Set(notify.HeaderWebhookSignature, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
		},
		"garbage": func(h http.Header) { h.Set(notify.HeaderWebhookSignature, "v1,!!!") },
	} {
		c := h.Clone()
		mut(c)
		require.ErrorIs(t, notify.VerifyWebhook(key, c, body, at, 0), notify.ErrBadSignature, name)
	}
}

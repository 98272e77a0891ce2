package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/config"
)

// TestPushValidate: the VAPID keys come as a pair with a subject; the private
// key and the FCM credentials are masked when the configuration is printed.
func TestPushValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		push config.PushConfig
		keys []string
	}{
		{"off", config.PushConfig{}, nil},
		{"web push", config.PushConfig{VAPIDPublicKey: "pub", VAPIDPrivateKey: "priv", VAPIDSubject: "mailto:ops@example.com"}, nil},
		{"private key alone", config.PushConfig{VAPIDPrivateKey: "priv", VAPIDSubject: "https://example.com"}, []string{"push.vapid_public_key"}},
		{"no subject", config.PushConfig{VAPIDPublicKey: "pub", VAPIDPrivateKey: "priv"}, []string{"push.vapid_subject"}},
		{"bad fcm url", config.PushConfig{FCMCredentials: "{}", FCMBaseURL: "fcm.googleapis.com"}, []string{"push.fcm_base_url"}},
		{"negative ttl", config.PushConfig{TTL: -1}, []string{"push.ttl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := config.Defaults()
			c.Push = tc.push
			err := c.Validate()
			if len(tc.keys) == 0 {
				if err != nil {
					require.NotContains(t, err.Error(), "push.")
				}
				return
			}
			require.Error(t, err)
			for _, k := range tc.keys {
				require.Contains(t, err.Error(), k)
			}
		})
	}
	c := config.Defaults()
	c.Push = config.PushConfig{VAPIDPrivateKey: "vapid-PRIVATE-canary", FCMCredentials: `{"private_key":"fcm-canary"}`}
	require.NotContains(t, c.String(), "vapid-PRIVATE-canary")
	require.NotContains(t, c.String(), "fcm-canary")
}

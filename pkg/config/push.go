package config

import (
	"fmt"
	"strings"
	"time"
)

// PushConfig configures send_alert's push providers beside the ntfy gateway
// (alerts.push_url): Web Push to browsers (VAPID, RFC 8292) and FCM HTTP v1 to
// apps. Each is enabled by its keys; every field is empty by default, which
// leaves both off. Generate VAPID keys with any Web Push library (for example
// `npx web-push generate-vapid-keys`); the console subscribes with
// VAPIDPublicKey.
type PushConfig struct {
	// VAPIDPublicKey is the uncompressed P-256 public key, base64url, that
	// browsers subscribe with (applicationServerKey). Default empty.
	VAPIDPublicKey string `mapstructure:"vapid_public_key"`
	// VAPIDPrivateKey is the matching 32-byte private key, base64url. It signs
	// every push request's VAPID JWT. Default empty.
	VAPIDPrivateKey string `mapstructure:"vapid_private_key" secret:"true"`
	// VAPIDSubject is the contact push services see: a mailto: or https: URL.
	// Default empty (required with the keys).
	VAPIDSubject string `mapstructure:"vapid_subject"`
	// TTL is how long a push service keeps an undelivered Web Push message. If
	// zero, 24h.
	TTL time.Duration `mapstructure:"ttl"`
	// FCMCredentials is a Google service account key file's JSON; its private
	// key obtains the OAuth access tokens of FCM HTTP v1. Default empty (FCM
	// off).
	FCMCredentials string `mapstructure:"fcm_credentials" secret:"true"`
	// FCMProjectID overrides the credentials' project_id. Default empty.
	FCMProjectID string `mapstructure:"fcm_project_id"`
	// FCMTokenURL overrides the credentials' token_uri. If both are empty,
	// https://oauth2.googleapis.com/token.
	FCMTokenURL string `mapstructure:"fcm_token_url"`
	// FCMBaseURL is the FCM API's base URL. If empty, https://fcm.googleapis.com.
	FCMBaseURL string `mapstructure:"fcm_base_url"`
}

// WebPushEnabled reports whether the VAPID keys are set.
func (p PushConfig) WebPushEnabled() bool {
	return p.VAPIDPublicKey != "" || p.VAPIDPrivateKey != ""
}

// FCMEnabled reports whether FCM credentials are set.
func (p PushConfig) FCMEnabled() bool { return p.FCMCredentials != "" }

// validate checks the push section; errors name the key. The keys' contents
// (a P-256 pair, a service account) are checked when the worker builds its
// senders.
func (p PushConfig) validate() []error {
	var errs []error
	bad := func(key string, value any, why string) {
		errs = append(errs, fmt.Errorf("%w: %s = %v: %s", ErrInvalid, key, value, why))
	}
	if p.WebPushEnabled() {
		if p.VAPIDPublicKey == "" {
			bad("push.vapid_public_key", `""`, "must be set with push.vapid_private_key")
		}
		if p.VAPIDPrivateKey == "" {
			bad("push.vapid_private_key", `""`, "must be set with push.vapid_public_key")
		}
		if !strings.HasPrefix(p.VAPIDSubject, "mailto:") && !strings.HasPrefix(p.VAPIDSubject, "https://") {
			bad("push.vapid_subject", fmt.Sprintf("%q", p.VAPIDSubject), "must be a mailto: or https: URL when the VAPID keys are set")
		}
	}
	if p.TTL < 0 {
		bad("push.ttl", p.TTL, "must not be negative")
	}
	for key, v := range map[string]string{"push.fcm_token_url": p.FCMTokenURL, "push.fcm_base_url": p.FCMBaseURL} {
		if v != "" && !strings.HasPrefix(v, "https://") && !strings.HasPrefix(v, "http://") {
			bad(key, fmt.Sprintf("%q", v), "must be an http(s) URL")
		}
	}
	return errs
}

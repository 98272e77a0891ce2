package notify

import (
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"
)

// Push subscription kinds, as stored in push_subscriptions.kind.
const (
	// KindWebPush is a browser's Web Push subscription (RFC 8030, messages
	// encrypted per RFC 8291, VAPID per RFC 8292).
	KindWebPush = "webpush"
	// KindFCM is an app's Firebase Cloud Messaging registration token.
	KindFCM = "fcm"
)

// DefaultWebPushTTL is how long a push service keeps an undelivered message
// when WebPushConfig.TTL is zero.
const DefaultWebPushTTL = 24 * time.Hour

// WebPushConfig configures the Web Push sender.
type WebPushConfig struct {
	// PublicKey is the VAPID public key: an uncompressed P-256 point, base64url
	// (the applicationServerKey a browser subscribes with). Required.
	PublicKey string
	// PrivateKey is the VAPID private key: the 32-byte P-256 scalar,
	// base64url. It signs the VAPID JWT and never appears in errors. Required.
	PrivateKey string
	// Subject is the VAPID JWT's sub: a mailto: or https: URL a push service
	// may contact. Required.
	Subject string
	// TTL is the TTL header (seconds a push service keeps the message). If
	// zero, DefaultWebPushTTL (24 hours).
	TTL time.Duration
}

// WebPush sends alerts to browsers' Web Push subscriptions. The message is a
// JSON document (title, body, severity) encrypted with aes128gcm for the
// subscription's keys by github.com/SherClockHolmes/webpush-go; the request
// carries a VAPID Authorization header ("vapid t=<JWT>, k=<public key>").
type WebPush struct {
	client *http.Client
	cfg    WebPushConfig
	red    redactor
}

// NewWebPush returns a Web Push sender using client, the egress guard's.
func NewWebPush(client *http.Client, cfg WebPushConfig) (*WebPush, error) {
	if client == nil {
		return nil, errors.New("notify: new web push: nil http client")
	}
	if err := checkVAPIDKeys(cfg.PublicKey, cfg.PrivateKey); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(cfg.Subject, "mailto:") && !strings.HasPrefix(cfg.Subject, "https://") {
		return nil, invalidf(ChannelPush, "vapid subject must be a mailto: or https: URL")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultWebPushTTL
	}
	return &WebPush{client: client, cfg: cfg, red: redactor(nil).with(cfg.PrivateKey)}, nil
}

// checkVAPIDKeys checks that the private key is a P-256 scalar whose public
// key is the configured one, so that a worker does not start with keys that
// every push service will refuse.
func checkVAPIDKeys(public, private string) error {
	priv, err := decodeB64(private)
	if err != nil {
		return invalidf(ChannelPush, "vapid private key is not base64url")
	}
	key, err := ecdh.P256().NewPrivateKey(priv)
	if err != nil {
		return invalidf(ChannelPush, "vapid private key is not a P-256 key")
	}
	pub, err := decodeB64(public)
	if err != nil || string(pub) != string(key.PublicKey().Bytes()) {
		return invalidf(ChannelPush, "vapid public key does not match the private key")
	}
	return nil
}

// decodeB64 decodes base64url or standard base64, padded or not, as browsers
// and key generators variously write them.
func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// WebPushSubscription is a browser's subscription, as PushSubscription.toJSON()
// gives it.
type WebPushSubscription struct {
	// Endpoint is the push service URL of the subscription.
	Endpoint string
	// P256dh is the browser's P-256 public key (65 bytes uncompressed), base64url.
	P256dh string
	// Auth is the 16-byte authentication secret, base64url.
	Auth string
}

// CheckWebPushKeys reports which of the subscription keys is malformed:
// "keys.p256dh" must be an uncompressed P-256 point and "keys.auth" 16 bytes.
// It returns the field name and why, or "" when both are valid.
func CheckWebPushKeys(p256dh, auth string) (field, why string) {
	pub, err := decodeB64(p256dh)
	if err != nil {
		return "keys.p256dh", "must be base64url"
	}
	if _, err := ecdh.P256().NewPublicKey(pub); err != nil {
		return "keys.p256dh", "must be an uncompressed P-256 public key (65 bytes)"
	}
	a, err := decodeB64(auth)
	if err != nil {
		return "keys.auth", "must be base64url"
	}
	if len(a) != 16 {
		return "keys.auth", "must be 16 bytes"
	}
	return "", ""
}

// webPushMessage is the decrypted payload a service worker receives.
type webPushMessage struct {
	Title    string `json:"title"`
	Body     string `json:"body"`
	Severity string `json:"severity"`
}

// webPushUrgency maps a severity to the Urgency header (RFC 8030 §5.3).
func webPushUrgency(s Severity) webpush.Urgency {
	switch s {
	case SeverityCritical:
		return webpush.UrgencyHigh
	case SeverityWarning:
		return webpush.UrgencyNormal
	default:
		return webpush.UrgencyLow
	}
}

// Send encrypts the alert for sub and posts it to its endpoint. A 404 or 410
// reply is an *Error for which IsGone is true: the subscription has expired
// or been withdrawn and should be deleted.
func (w *WebPush) Send(ctx context.Context, sub WebPushSubscription, a Alert) error {
	a, err := a.validate(ChannelPush)
	if err != nil {
		return err
	}
	u, err := parseEndpoint(ChannelPush, "subscription endpoint", sub.Endpoint)
	if err != nil {
		return err
	}
	if field, why := CheckWebPushKeys(sub.P256dh, sub.Auth); field != "" {
		return invalidf(ChannelPush, "subscription %s %s", field, why)
	}
	body, err := json.Marshal(webPushMessage{Title: a.Title, Body: a.Message, Severity: string(a.Severity)})
	if err != nil {
		return invalidf(ChannelPush, "encode message: %v", err)
	}
	// The endpoint's path is the subscription's capability: it is redacted.
	red := w.red.withURL(sub.Endpoint, u)
	resp, err := webpush.SendNotificationWithContext(ctx, body, &webpush.Subscription{
		Endpoint: sub.Endpoint, Keys: webpush.Keys{P256dh: sub.P256dh, Auth: sub.Auth},
	}, &webpush.Options{
		// The library adds the mailto: scheme itself.
		HTTPClient: w.client, Subscriber: strings.TrimPrefix(w.cfg.Subject, "mailto:"),
		VAPIDPublicKey: w.cfg.PublicKey, VAPIDPrivateKey: w.cfg.PrivateKey,
		TTL: int(w.cfg.TTL / time.Second), Urgency: webPushUrgency(a.Severity),
	})
	return classify(resp, err, describeURL(u), red)
}

// classify turns a response or a transport error into nil or an *Error, as do
// does for requests this package sends itself.
func classify(resp *http.Response, err error, target string, red redactor) error {
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return transportError(ChannelPush, target, err, red)
		}
		// Any other error comes from building the message: it cannot succeed
		// later either.
		return invalidf(ChannelPush, "%s", red.apply(err.Error()))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &Error{
		Channel:    ChannelPush,
		StatusCode: resp.StatusCode,
		Permanent:  permanentStatus(resp.StatusCode),
		msg:        red.apply(fmt.Sprintf("notify: %s: send to %s: status %d", ChannelPush, target, resp.StatusCode)),
	}
}

// IsGone reports whether err is a push service's 404 or 410 reply: the
// subscription or registration token no longer exists.
func IsGone(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.StatusCode == http.StatusGone || e.StatusCode == http.StatusNotFound)
}

// String formats the configuration with the private key masked.
func (c WebPushConfig) String() string {
	return fmt.Sprintf("{PublicKey:%s PrivateKey:%s Subject:%s TTL:%s}", c.PublicKey, mask(c.PrivateKey), c.Subject, c.TTL)
}

// GoString masks the private key in %#v output too.
func (c WebPushConfig) GoString() string { return "notify.WebPushConfig" + c.String() }

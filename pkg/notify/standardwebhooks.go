package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Headers of a message signed as the Standard Webhooks specification says
// (https://www.standardwebhooks.com): completion callbacks carry them.
const (
	// HeaderWebhookID is the message id, the same on every retry of one
	// message, so that a receiver can drop duplicates.
	HeaderWebhookID = "webhook-id"
	// HeaderWebhookTimestamp is the signing time in Unix seconds.
	HeaderWebhookTimestamp = "webhook-timestamp"
	// HeaderWebhookSignature holds one or more space-separated signatures
	// "v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">"; during a secret
	// rotation there is one per secret.
	HeaderWebhookSignature = "webhook-signature"
)

// SecretPrefix starts a Standard Webhooks secret's text form.
const SecretPrefix = "whsec_"

// NewSecret returns a fresh 32-byte signing secret.
func NewSecret() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return b
}

// FormatSecret returns a secret's text form, "whsec_<base64>", as shown to
// its owner.
func FormatSecret(secret []byte) string {
	return SecretPrefix + base64.StdEncoding.EncodeToString(secret)
}

// ParseSecret returns the key bytes of a "whsec_<base64>" secret (the prefix
// is optional, as in the specification's libraries).
func ParseSecret(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, SecretPrefix))
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%w: secret is not whsec_<base64>", ErrInvalid)
	}
	return b, nil
}

// SignWebhook returns the HeaderWebhookSignature value of body sent as message
// id at timestamp: one "v1,<signature>" per secret, space-separated.
func SignWebhook(id string, timestamp time.Time, body []byte, secrets ...[]byte) string {
	ts := strconv.FormatInt(timestamp.Unix(), 10)
	parts := make([]string, 0, len(secrets))
	for _, s := range secrets {
		parts = append(parts, "v1,"+base64.StdEncoding.EncodeToString(webhookMAC(s, id, ts, body)))
	}
	return strings.Join(parts, " ")
}

func webhookMAC(secret []byte, id, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// VerifyWebhook checks a Standard Webhooks message as a receiver does: header
// holds its webhook-id, webhook-timestamp and webhook-signature; one of the
// v1 signatures must be body's under secret (the key bytes: ParseSecret of
// the whsec_ form), and the timestamp within tolerance of now in either
// direction (zero means DefaultTolerance, 5 minutes). It returns nil,
// ErrBadSignature or ErrSignatureExpired. The timestamp is checked first, so
// that a replayed old message is refused whatever its signature.
func VerifyWebhook(secret []byte, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	id, ts, sigs := header.Get(HeaderWebhookID), header.Get(HeaderWebhookTimestamp), header.Get(HeaderWebhookSignature)
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("%w: missing webhook-id, webhook-timestamp or webhook-signature", ErrBadSignature)
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: malformed timestamp", ErrBadSignature)
	}
	if age := now.Sub(time.Unix(unix, 0)); age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: signed %s ago", ErrSignatureExpired, age.Round(time.Second))
	}
	if len(secret) == 0 {
		return fmt.Errorf("%w: empty secret", ErrBadSignature)
	}
	want := webhookMAC(secret, id, ts, body)
	for _, part := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(part, ",")
		if !ok || version != "v1" {
			continue // other versions (v1a: asymmetric) are not ours
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("%w: no signature matches", ErrBadSignature)
}

// PostWebhook POSTs payload, which must be valid JSON, to rawURL signed as a
// Standard Webhooks message id with every secret (the first is the current
// one; during a rotation the previous one signs too). Replies are classified
// as PostJSON's; the error never contains the URL's path or query or a secret.
func PostWebhook(ctx context.Context, client *http.Client, rawURL, id string, payload []byte, secrets [][]byte) (int, error) {
	if client == nil {
		return 0, errors.New("notify: webhook: nil http client")
	}
	if id == "" || len(secrets) == 0 {
		return 0, invalidf(ChannelWebhook, "a signed message needs an id and a secret")
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return 0, invalidf(ChannelWebhook, "url is not an absolute http or https url")
	}
	red := redactor(nil).withURL(rawURL, u)
	for _, s := range secrets {
		red = red.with(string(s), FormatSecret(s))
	}
	req, err := newRequest(ctx, ChannelWebhook, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(HeaderWebhookID, id)
	now := time.Now()
	req.Header.Set(HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderWebhookSignature, SignWebhook(id, now, payload, secrets...))
	return do(client, req, ChannelWebhook, red)
}

package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// SignatureHeader carries a webhook body's signature.
const SignatureHeader = "X-Taskforge-Signature"

// DefaultTolerance is the signature age Verify accepts when given zero.
const DefaultTolerance = 5 * time.Minute

// userAgent identifies webhook callbacks.
const userAgent = "Taskforge-Webhook/1"

// Sign returns the SignatureHeader value for body sent at timestamp:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<unix seconds>.<body>">".
// Including the timestamp in the MAC lets receivers reject replays.
func Sign(secret []byte, timestamp time.Time, body []byte) string {
	ts := strconv.FormatInt(timestamp.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

// mac computes HMAC-SHA256 over "<ts>.<body>".
func mac(secret []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a SignatureHeader value against body, as a receiver would. The
// header may carry several v1 signatures (during secret rotation); one must
// match. The timestamp must be within tolerance of now, in either direction;
// a zero tolerance means DefaultTolerance. It returns nil, ErrBadSignature or
// ErrSignatureExpired.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: malformed header", ErrBadSignature)
		}
		switch key {
		case "t":
			if ts != "" {
				return fmt.Errorf("%w: more than one timestamp", ErrBadSignature)
			}
			ts = value
		case "v1":
			sig, err := hex.DecodeString(value)
			if err != nil || len(sig) != sha256.Size {
				return fmt.Errorf("%w: malformed v1 signature", ErrBadSignature)
			}
			sigs = append(sigs, sig)
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: missing or malformed timestamp", ErrBadSignature)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%w: no v1 signature", ErrBadSignature)
	}
	want := mac(secret, ts, body)
	matched := false
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			matched = true
		}
	}
	if !matched {
		return fmt.Errorf("%w: no signature matches", ErrBadSignature)
	}
	if age := now.Sub(time.Unix(unix, 0)); age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: signed %s ago", ErrSignatureExpired, age.Round(time.Second))
	}
	return nil
}

// forbiddenHeaders may not be set by a task's headers: they are set by the
// transport or by Taskforge, or they are hop-by-hop (RFC 9110 section 7.6.1).
var forbiddenHeaders = map[string]bool{
	"Host":                true,
	"Content-Length":      true,
	"Transfer-Encoding":   true,
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Upgrade":             true,
	"Expect":              true,
}

// ValidateHeaders checks caller-supplied webhook headers: names and values must
// be valid HTTP, and none may be a forbidden header (Host, Content-Length,
// hop-by-hop headers, or any X-Taskforge-* header, which Taskforge reserves).
// The API calls it when a task is created; PostJSON calls it again.
func ValidateHeaders(headers map[string]string) error {
	for name, value := range headers {
		if !httpguts.ValidHeaderFieldName(name) {
			return invalidf(ChannelWebhook, "header name %q is not valid", name)
		}
		canonical := textproto.CanonicalMIMEHeaderKey(name)
		if forbiddenHeaders[canonical] || strings.HasPrefix(canonical, "X-Taskforge-") {
			return &Error{
				Channel:   ChannelWebhook,
				Permanent: true,
				msg:       fmt.Sprintf("notify: webhook: header %q may not be set", canonical),
				err:       ErrForbiddenHeader,
			}
		}
		if !httpguts.ValidHeaderFieldValue(value) {
			return invalidf(ChannelWebhook, "header %q has an invalid value", canonical)
		}
	}
	return nil
}

// webhookMethods are the methods a webhook callback may use.
var webhookMethods = map[string]bool{http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true}

// PostJSON sends payload, which must be valid JSON, to rawURL with method
// (POST if empty; PUT and PATCH are also allowed) and the caller's headers. If
// secret is not empty the body is signed in SignatureHeader. It returns the
// response status, if any, and classifies failure: 2xx is success; other 4xx
// than 408 and 429 are permanent (IsPermanent); 5xx, 408, 429 and network
// errors are retryable. The error never contains the URL's path or query.
func PostJSON(ctx context.Context, client *http.Client, rawURL, method string, headers map[string]string, payload []byte, secret []byte) (int, error) {
	if client == nil {
		return 0, errors.New("notify: webhook: nil http client")
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return 0, invalidf(ChannelWebhook, "url is not an absolute http or https url")
	}
	red := redactor(nil).withURL(rawURL, u).with(string(secret))
	if method == "" {
		method = http.MethodPost
	}
	method = strings.ToUpper(method)
	if !webhookMethods[method] {
		return 0, invalidf(ChannelWebhook, "method %q is not POST, PUT or PATCH", method)
	}
	if err := ValidateHeaders(headers); err != nil {
		return 0, err
	}
	if !json.Valid(payload) {
		return 0, invalidf(ChannelWebhook, "payload is not valid JSON")
	}

	req, err := newRequest(ctx, ChannelWebhook, method, u, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	for name, value := range headers {
		req.Header.Set(name, value)
	}
	if len(secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(secret, time.Now(), payload))
	}
	return do(client, req, ChannelWebhook, red)
}

package client

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrCallbackSignature is returned by VerifyCallback when a completion
// callback's Standard Webhooks headers are missing or malformed, no signature
// matches, or the timestamp is outside the tolerance.
var ErrCallbackSignature = errors.New("taskforge client: callback signature not valid")

// DefaultCallbackTolerance is the timestamp skew VerifyCallback accepts when
// given zero.
const DefaultCallbackTolerance = 5 * time.Minute

// VerifyCallback checks a completion callback as its receiver must before
// trusting it: secret is the owner's signing secret ("whsec_<base64>", from
// POST /api/v1/callback-secret/rotate), header the request's headers
// (webhook-id, webhook-timestamp, webhook-signature) and body the raw body,
// read before it is decoded. One of the space-separated "v1,<signature>"
// values must be the HMAC-SHA256 of "{id}.{timestamp}.{body}" under the
// secret (during a rotation there is one per secret), and the timestamp must
// be within tolerance of now (zero means 5 minutes). Keep the webhook-ids of
// the last tolerance window to drop a replayed delivery. It returns nil or an
// error wrapping ErrCallbackSignature.
func VerifyCallback(secret string, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultCallbackTolerance
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(key) == 0 {
		return errors.Join(ErrCallbackSignature, errors.New("secret is not whsec_<base64>"))
	}
	id, ts := header.Get("webhook-id"), header.Get("webhook-timestamp")
	unix, err := strconv.ParseInt(ts, 10, 64)
	if id == "" || err != nil {
		return errors.Join(ErrCallbackSignature, errors.New("missing webhook-id or webhook-timestamp"))
	}
	if age := now.Sub(time.Unix(unix, 0)); age > tolerance || age < -tolerance {
		return errors.Join(ErrCallbackSignature, errors.New("timestamp outside the tolerance"))
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	want := m.Sum(nil)
	for _, part := range strings.Fields(header.Get("webhook-signature")) {
		if sig, ok := strings.CutPrefix(part, "v1,"); ok {
			if got, err := base64.StdEncoding.DecodeString(sig); err == nil && hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return errors.Join(ErrCallbackSignature, errors.New("no signature matches"))
}

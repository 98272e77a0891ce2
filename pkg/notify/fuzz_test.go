package notify

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzVerify checks the webhook signature verifier. A body signed with Sign
// verifies at its timestamp; the same signature never verifies a changed
// body, nor under another secret; and an arbitrary header is accepted only
// when it carries the HMAC of its own timestamp and the body, so a
// verifier never accepts a signature it did not compute.
func FuzzVerify(f *testing.F) {
	f.Add([]byte("whsec_test"), []byte(`{"task_id":"t1","status":"done"}`), int64(1700000000), "t=1700000000,v1=00", uint16(0))
	f.Fuzz(func(t *testing.T, secret, body []byte, unix int64, header string, flip uint16) {
		if unix < 0 || unix > 1<<40 {
			return // time.Time's Sub saturates far outside; signatures are never that old.
		}
		at := time.Unix(unix, 0)
		signed := Sign(secret, at, body)
		if err := Verify(secret, signed, body, at, 0); err != nil {
			t.Fatalf("signed body does not verify: %v", err)
		}
		changed := bytes.Clone(body)
		if len(changed) == 0 {
			changed = []byte{0}
		} else {
			changed[int(flip)%len(changed)] ^= byte(flip>>8) | 1
		}
		if err := Verify(secret, signed, changed, at, 0); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("changed body %q verifies (err %v)", changed, err)
		}
		other := append(bytes.Clone(secret), 'x')
		if err := Verify(other, signed, body, at, 0); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("signature verifies under another secret (err %v)", err)
		}

		if err := Verify(secret, header, body, at, time.Hour); err != nil {
			if !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrSignatureExpired) {
				t.Fatalf("error %v is neither ErrBadSignature nor ErrSignatureExpired", err)
			}
			return
		}
		var ts string
		var sigs []string
		for _, part := range strings.Split(header, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch k {
			case "t":
				ts = v
			case "v1":
				sigs = append(sigs, strings.ToLower(v))
			}
		}
		want := hex.EncodeToString(mac(secret, ts, body))
		found := false
		for _, s := range sigs {
			found = found || s == want
		}
		if !found {
			t.Fatalf("header %q accepted without the body's signature %s", header, want)
		}
	})
}

// FuzzVerifyWebhook checks the Standard Webhooks verifier: what SignWebhook
// signs verifies, a changed body or another secret does not, and no header
// value makes it panic.
func FuzzVerifyWebhook(f *testing.F) {
	f.Add([]byte(`{"task_id":"t"}`), "msg_1", "v1,AAAA", int64(1700000000))
	f.Add([]byte(``), "", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,x", int64(0))
	f.Fuzz(func(t *testing.T, body []byte, id, sigHeader string, unix int64) {
		secret, other := []byte("fuzz-secret-0123456789"), []byte("fuzz-other-0123456789")
		at := time.Unix(unix%(1<<40), 0)
		h := http.Header{}
		h.Set(HeaderWebhookID, id)
		h.Set(HeaderWebhookTimestamp, strconv.FormatInt(at.Unix(), 10))
		h.Set(HeaderWebhookSignature, sigHeader)
		_ = VerifyWebhook(secret, h, body, at, 0)
		if id == "" {
			return
		}
		h.Set(HeaderWebhookSignature, SignWebhook(id, at, body, secret))
		if err := VerifyWebhook(secret, h, body, at, 0); err != nil {
			t.Fatalf("signed message refused: %v", err)
		}
		if err := VerifyWebhook(other, h, body, at, 0); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("another secret verified: %v", err)
		}
		if err := VerifyWebhook(secret, h, append(body, 'x'), at, 0); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("changed body verified: %v", err)
		}
	})
}

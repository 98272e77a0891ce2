package client_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/taskforge/taskforge/services/api/client"
)

// Verify a completion callback in its receiver before trusting it.
func ExampleVerifyCallback() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // from POST /api/v1/callback-secret/rotate
	receiver := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
		if err != nil {
			http.Error(w, "unreadable", http.StatusBadRequest)
			return
		}
		if err := client.VerifyCallback(secret, r.Header, body, time.Now(), 0); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized) // a 4xx: Taskforge stops retrying
			return
		}
		// Decode body (the final task) and act on it; drop a webhook-id seen before.
		w.WriteHeader(http.StatusNoContent)
	})

	// The specification's test message, replayed long after it was signed, is refused.
	req := httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader(`{"test": 2432232314}`))
	req.Header.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	req.Header.Set("webhook-timestamp", "1614265330")
	req.Header.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	rec := httptest.NewRecorder()
	receiver.ServeHTTP(rec, req)
	fmt.Println(rec.Code)
	// Output: 401
}

func TestVerifyCallback(t *testing.T) {
	t.Parallel()
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	body := []byte(`{"test": 2432232314}`)
	at := time.Unix(1614265330, 0)
	if err := client.VerifyCallback(secret, h, body, at, 0); err != nil {
		t.Fatalf("the specification's vector: %v", err)
	}
	for name, c := range map[string]struct {
		secret string
		body   []byte
		now    time.Time
	}{
		"other secret": {"whsec_" + strings.Repeat("A", 32), body, at},
		"other body":   {secret, []byte(`{}`), at},
		"too late":     {secret, body, at.Add(6 * time.Minute)},
		"too early":    {secret, body, at.Add(-6 * time.Minute)},
	} {
		if err := client.VerifyCallback(c.secret, h, c.body, c.now, 0); !errors.Is(err, client.ErrCallbackSignature) {
			t.Errorf("%s: got %v, want ErrCallbackSignature", name, err)
		}
	}
}

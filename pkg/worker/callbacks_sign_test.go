package worker_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/callbackkey"
	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/pkg/worker"
)

// fixedSecrets signs every owner's callbacks with one secret (tests that are
// not about the owners).
type fixedSecrets struct{ secret []byte }

func (f fixedSecrets) Signing(context.Context, string) ([][]byte, error) {
	return [][]byte{f.secret}, nil
}

// received is one callback a receiver got.
type received struct {
	header http.Header
	body   []byte
}

// TestCallbackSignedPerOwner delivers the callbacks of two owners' tasks and
// holds each to its owner's secret: it verifies with its owner's secret and
// not with the other's. After a rotation the callback carries both the old
// and the new signature during the overlap, and only the new one after it.
func TestCallbackSignedPerOwner(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	got := map[string][]received{} // by path
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Path] = append(got[r.URL.Path], received{r.Header.Clone(), body})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	last := func(path string) (received, bool) {
		mu.Lock()
		defer mu.Unlock()
		if n := len(got[path]); n > 0 {
			return got[path][n-1], true
		}
		return received{}, false
	}

	var cbs *worker.Callbacks
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: func(context.Context, job.Reporter, proto.Message) error { return nil },
	}, func(o *worker.Options) { o.OnTerminal = func() { cbs.Poke() } })
	keyring, err := secret.NewKeyring(map[string][]byte{"k1": []byte("0123456789abcdef0123456789abcdef")}, "k1")
	require.NoError(t, err)
	const overlap = 2 * time.Second
	keys, err := callbackkey.New(h.pg.DB, keyring, overlap)
	require.NoError(t, err)
	guard, err := egress.New(egress.Config{AllowCIDRs: []string{"127.0.0.0/8"}})
	require.NoError(t, err)
	cbs, err = worker.NewCallbacks(h.pg.DB, guard.Client(), keys, zaptest.NewLogger(t), worker.CallbackOptions{Interval: 50 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go cbs.Run(ctx)

	// Each owner reads its secret by rotating (there was none yet).
	alice, err := keys.Rotate(ctx, "key_alice")
	require.NoError(t, err)
	require.Nil(t, alice.PreviousExpiresAt, "a first secret replaces none")
	bob, err := keys.Rotate(ctx, "key_bob")
	require.NoError(t, err)
	aliceKey, err := notify.ParseSecret(alice.Secret)
	require.NoError(t, err)
	bobKey, err := notify.ParseSecret(bob.Secret)
	require.NoError(t, err)
	require.NotEqual(t, aliceKey, bobKey)

	createAs := func(owner, path string) store.Task {
		c, err := h.svc.Create(ctx, taskservice.CreateRequest{Type: tasks.TypeRefreshPortfolio, Params: []byte(`{"all":true}`),
			RetryPolicy: &noRetry, CallbackURL: srv.URL + path, CreatedBy: owner})
		require.NoError(t, err)
		return c.Task
	}
	wait := func(path string) received {
		t.Helper()
		var r received
		require.Eventually(t, func() bool { var ok bool; r, ok = last(path); return ok }, 15*time.Second, 20*time.Millisecond)
		return r
	}
	createAs("key_alice", "/alice")
	createAs("key_bob", "/bob")
	a, b := wait("/alice"), wait("/bob")
	now := time.Now()
	require.NoError(t, notify.VerifyWebhook(aliceKey, a.header, a.body, now, 0))
	require.ErrorIs(t, notify.VerifyWebhook(bobKey, a.header, a.body, now, 0), notify.ErrBadSignature,
		"alice's callback must not verify with bob's secret")
	require.NoError(t, notify.VerifyWebhook(bobKey, b.header, b.body, now, 0))
	require.ErrorIs(t, notify.VerifyWebhook(aliceKey, b.header, b.body, now, 0), notify.ErrBadSignature)
	require.Empty(t, a.header.Get(notify.SignatureHeader), "the single-key header is gone")
	require.NotEmpty(t, a.header.Get(notify.HeaderWebhookID))

	// Rotation: during the overlap both secrets verify.
	alice2, err := keys.Rotate(ctx, "key_alice")
	require.NoError(t, err)
	require.NotNil(t, alice2.PreviousExpiresAt)
	alice2Key, err := notify.ParseSecret(alice2.Secret)
	require.NoError(t, err)
	createAs("key_alice", "/alice-overlap")
	o := wait("/alice-overlap")
	require.NoError(t, notify.VerifyWebhook(aliceKey, o.header, o.body, time.Now(), 0), "the old secret still verifies during the overlap")
	require.NoError(t, notify.VerifyWebhook(alice2Key, o.header, o.body, time.Now(), 0))
	require.Len(t, splitFields(o.header.Get(notify.HeaderWebhookSignature)), 2)

	// After the overlap only the new one does.
	require.Eventually(t, func() bool {
		s, err := keys.Signing(ctx, "key_alice")
		require.NoError(t, err)
		return len(s) == 1
	}, 10*time.Second, 50*time.Millisecond)
	createAs("key_alice", "/alice-after")
	n := wait("/alice-after")
	require.NoError(t, notify.VerifyWebhook(alice2Key, n.header, n.body, time.Now(), 0))
	err = notify.VerifyWebhook(aliceKey, n.header, n.body, time.Now(), 0)
	require.True(t, errors.Is(err, notify.ErrBadSignature), "the old secret no longer verifies: %v", err)
}

func splitFields(s string) []string { return strings.Fields(s) }

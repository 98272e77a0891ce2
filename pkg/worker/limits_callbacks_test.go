package worker_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/taskforge/taskforge/pkg/egress"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/notify"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/worker"
)

func TestTypeLimitDefersWithoutSpendingRetries(t *testing.T) {
	t.Parallel()
	var running, peak atomic.Int32
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeBackupData: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
			n := running.Add(1)
			defer running.Add(-1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(300 * time.Millisecond)
			return nil
		},
	}, func(o *worker.Options) { o.TypeLimits = map[string]int{tasks.TypeBackupData: 1} })
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, h.create(tasks.TypeBackupData, tasks.RetryPolicy{MaxRetries: 1, RetryDelay: 1, MaxRetryDelay: 1}, 0, "").ID)
	}
	// The last allowed delivery (max_retries 0) waits for its slot in place.
	ids = append(ids, h.create(tasks.TypeBackupData, noRetry, 0, "").ID)
	for _, id := range ids {
		row := h.waitStatus(id, tasks.StatusCompleted, 30*time.Second)
		require.Equal(t, 1, row.Attempt, "waiting for a slot spends no attempt")
		require.Len(t, h.attempts(id), 1)
	}
	require.EqualValues(t, 1, peak.Load(), "at most one backup_data at once")
	require.Positive(t, h.counter("taskforge_tasks_deferred_total", map[string]string{"type": tasks.TypeBackupData}))
}

func TestCallbackDeliveredSignedWithRetries(t *testing.T) {
	t.Parallel()
	secret := []byte("callback-secret-for-tests-0123456789")
	var calls atomic.Int32
	var mu sync.Mutex
	var got []byte
	var sigErr error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, sigErr = body, notify.VerifyWebhook(secret, r.Header, body, time.Now(), 0)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	refused := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) }))
	t.Cleanup(refused.Close)

	var cbs *worker.Callbacks
	h := newHarness(t, map[string]job.Handler{
		tasks.TypeRefreshPortfolio: func(ctx context.Context, r job.Reporter, _ proto.Message) error {
			return r.SetResult(map[string]int{"n": 7})
		},
	}, func(o *worker.Options) { o.OnTerminal = func() { cbs.Poke() } })
	guard, err := egress.New(egress.Config{AllowCIDRs: []string{"127.0.0.0/8"}})
	require.NoError(t, err)
	cbs, err = worker.NewCallbacks(h.pg.DB, guard.Client(), fixedSecrets{secret}, zaptest.NewLogger(t), worker.CallbackOptions{
		Interval: 100 * time.Millisecond, BaseDelay: 200 * time.Millisecond,
		Redact: func(string, store.JSON) store.JSON { return store.JSON(`{"all":true}`) },
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go cbs.Run(ctx)

	task := h.create("", fastRetry, 0, srv.URL+"/hook")
	gone := h.create("", fastRetry, 0, refused.URL+"/hook")
	h.waitStatus(task.ID, tasks.StatusCompleted, 10*time.Second)
	var row store.TaskCallback
	require.Eventually(t, func() bool {
		require.NoError(t, h.pg.DB.Where("task_id = ?", task.ID).Take(&row).Error)
		return row.DeliveredAt != nil
	}, 15*time.Second, 50*time.Millisecond)
	require.Equal(t, 2, row.Attempts, "the 503 was retried")
	mu.Lock()
	require.NoError(t, sigErr)
	var payload map[string]any
	require.NoError(t, json.Unmarshal(got, &payload))
	mu.Unlock()
	require.Equal(t, task.ID, payload["task_id"])
	require.Equal(t, "completed", payload["status"])
	require.Equal(t, map[string]any{"n": 7.0}, payload["result"])
	require.Equal(t, map[string]any{"all": true}, payload["params"])

	var other store.TaskCallback
	require.Eventually(t, func() bool {
		require.NoError(t, h.pg.DB.Where("task_id = ?", gone.ID).Take(&other).Error)
		return other.AbandonedAt != nil
	}, 15*time.Second, 50*time.Millisecond, "a 4xx is permanent")
	require.Equal(t, 1, other.Attempts)
	require.Contains(t, other.LastError, "410")
}

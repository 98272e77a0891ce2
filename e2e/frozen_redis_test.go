package e2e

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/api/client"
)

// answerBound is how fast the API must answer while Redis is frozen.
const answerBound = 2 * time.Second

// freezeFor is how long TestRedisFrozen suspends Redis:
// TASKFORGE_E2E_FREEZE (a Go duration), default 6s.
func freezeFor(t *testing.T) time.Duration {
	if v := os.Getenv("TASKFORGE_E2E_FREEZE"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "TASKFORGE_E2E_FREEZE")
		return d
	}
	return 6 * time.Second
}

// TestRedisFrozen suspends the stack's Redis (SIGSTOP) under creates and
// reads: every create answers within 2 s, either 503 (problem+json with a
// Retry-After of at most 2 s) or 201; reads of tasks keep answering from
// PostgreSQL; after SIGCONT every acknowledged task completes, and no task
// that was refused has a row or runs.
func TestRedisFrozen(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs redis-server and PostgreSQL")
	}
	srv := testenv.StartRedisServer(t)
	s := startStackOn(t, testenv.Redis{Addr: srv.Addr})
	admin := s.client(s.adminKey)
	hc := &http.Client{Timeout: 10 * time.Second} // the clients
	c, err := client.NewClientWithResponses(s.api, client.WithHTTPClient(hc),
		client.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+s.adminKey)
			return nil
		}))
	require.NoError(t, err)
	task := func() client.CreateTaskRequest {
		return newTask("webhook_callback", params{
			"url": s.hooks.srv.URL + "/webhook/frozen", "method": "POST", "payload": map[string]any{"event": "frozen"},
		})
	}
	before := create(t, admin, task())
	s.waitStatus(t, admin, before, client.StatusCompleted, 60*time.Second)

	var (
		mu                           sync.Mutex
		acked                        []string
		refused, reads, readFailures int
		slow                         []string
	)
	srv.Freeze()
	thawed := false
	t.Cleanup(func() {
		if !thawed {
			srv.Thaw()
		}
	})
	frozenUntil := time.Now().Add(freezeFor(t))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for time.Now().Before(frozenUntil) {
				start := time.Now()
				if w%2 == 0 {
					resp, err := c.CreateTaskWithResponse(context.Background(), nil, task())
					took := time.Since(start)
					mu.Lock()
					switch {
					case err != nil:
						slow = append(slow, "create: "+err.Error())
					case took > answerBound:
						slow = append(slow, "create took "+took.String())
					}
					if err == nil {
						switch resp.StatusCode() {
						case http.StatusCreated:
							acked = append(acked, resp.JSON201.TaskId)
						case http.StatusServiceUnavailable:
							refused++
							ra, aerr := strconv.Atoi(resp.HTTPResponse.Header.Get("Retry-After"))
							if aerr != nil || ra < 1 || ra > 2 || resp.HTTPResponse.Header.Get("Content-Type") != "application/problem+json" {
								slow = append(slow, "503 without problem+json and Retry-After ≤ 2: "+resp.HTTPResponse.Header.Get("Retry-After"))
							}
						default:
							slow = append(slow, "create answered "+resp.Status()+": "+string(resp.Body))
						}
					}
					mu.Unlock()
				} else {
					resp, err := c.GetTaskWithResponse(context.Background(), before)
					took := time.Since(start)
					list, lerr := c.ListTasksWithResponse(context.Background(), nil)
					mu.Lock()
					reads++
					switch {
					case err != nil || lerr != nil:
						readFailures++
						slow = append(slow, "read failed")
					case took > answerBound:
						slow = append(slow, "read took "+took.String())
					case resp.StatusCode() != http.StatusOK || list.StatusCode() != http.StatusOK:
						readFailures++
						slow = append(slow, "read answered "+resp.Status()+" / "+list.Status())
					}
					mu.Unlock()
				}
				<-tick.C
			}
		}()
	}
	wg.Wait()
	srv.Thaw()
	thawed = true
	t.Logf("while Redis was frozen: %d creates acknowledged, %d refused with 503, %d reads", len(acked), refused, reads)
	require.Empty(t, slow, "every answer within %s, 201 or 503, reads 200%s", answerBound, s.logTails())
	require.Positive(t, refused+len(acked))
	require.Positive(t, reads)
	require.Zero(t, readFailures)

	// Nothing acknowledged is lost.
	for _, id := range acked {
		s.waitStatus(t, admin, id, client.StatusCompleted, 90*time.Second)
	}
	// No refused task has a row: the rows are exactly the acknowledged ones.
	var ids []string
	require.NoError(t, s.pg.DB.Raw(`SELECT id FROM tasks`).Scan(&ids).Error)
	require.ElementsMatch(t, append([]string{before}, acked...), ids)
	// A refused task's delivery that Redis took in after it resumed finds no
	// row and is dropped unrun: the queues drain with no new row.
	waitQueuesDrained(t, admin, 60*time.Second)
	var n int64
	require.NoError(t, s.pg.DB.Raw(`SELECT count(*) FROM tasks`).Scan(&n).Error)
	require.EqualValues(t, 1+len(acked), n)
	// Each acknowledged webhook was delivered once; no refused one was.
	require.Len(t, s.hooks.received("/webhook/frozen"), 1+len(acked))
}

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/api/client"
)

// clusterEnv configures the services for a Redis Cluster.
func clusterEnv(rc *testenv.RedisCluster) []string {
	return []string{
		"TASKFORGE_REDIS_MODE=cluster",
		"TASKFORGE_REDIS_ADDRS=" + strings.Join(rc.Addrs, ","),
		"TASKFORGE_REDIS_DB=0",
	}
}

// TestCluster runs the four services with redis.mode cluster on a 3-master
// Redis Cluster and goes through the end-to-end scenario on it: every task
// type, cancel of a running task, failure and manual retry, schedules, the
// event streams, a type limit shared by two workers, the rate limits, the
// monitor's Asynqmon and /metrics. Then it lists every key on every master
// and checks that each is one the project knows and that the keys of every
// multi-key script share a slot.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs redis-server, redis-cli and PostgreSQL")
	}
	began := time.Now()
	rc := testenv.StartRedisCluster(t, 3)
	// webhook_callback limited to 2 at once across both workers (each runs
	// 6 tasks at once), for the type-limit check.
	s := startStackOn(t, testenv.Redis{Addr: rc.Addrs[0]}, append(clusterEnv(rc),
		"TASKFORGE_WORKER_TYPE_LIMITS=backup_data=2,webhook_callback=2")...)
	t.Logf("cluster and stack ready in %s", time.Since(began).Round(100*time.Millisecond))

	admin := s.client(s.adminKey)
	operator := s.client(s.newKey(t, admin, "e2e-operator", client.CreateAPIKeyRequestRoleOperator))
	viewer := s.client(s.newKey(t, admin, "e2e-viewer", client.CreateAPIKeyRequestRoleViewer))

	t.Run("parts", func(t *testing.T) { s.lifecycle(t, admin, operator, viewer) })
	t.Run("event streams", func(t *testing.T) { s.eventStreams(t) })
	t.Run("type limit across workers", func(t *testing.T) { s.typeLimit(t, operator) })
	t.Run("rate limits", func(t *testing.T) { s.rateLimits(t, admin) })
	t.Run("monitoring", func(t *testing.T) {
		s.monitoring(t, admin, operator)
		// Asynqmon's pages that read the servers' and the cluster's state.
		for _, path := range []string{"/monitoring/api/servers", "/monitoring/api/redis_info", "/monitoring/api/queue_stats"} {
			code, body := s.get(t, s.monitor+path, s.adminKey)
			require.Equalf(t, http.StatusOK, code, "%s: %s", path, body)
		}
		code, body := s.get(t, s.monitor+"/monitoring/api/servers", s.adminKey)
		require.Equal(t, http.StatusOK, code)
		var servers struct {
			Servers []struct {
				Queues map[string]int `json:"queue_priorities"`
			} `json:"servers"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &servers), body)
		require.Len(t, servers.Servers, 2, "Asynqmon lists both workers' Asynq servers: %s", body)
	})
	t.Run("keys and slots", func(t *testing.T) { checkClusterKeys(t, rc.Client(t)) })
	require.Empty(t, s.errorLines(), "no service logs an error while the stack runs on a Redis Cluster")
	t.Logf("cluster run took %s", time.Since(began).Round(100*time.Millisecond))
}

// eventStreams follows a webhook_callback through GET /api/v1/events (all
// tasks of the type) and GET /api/v1/tasks/{id}/events (WatchTask) to its
// completion: both read the Redis streams the workers write.
func (s *stack) eventStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), eventWithin)
	defer cancel()
	c, err := client.NewClient(s.api, client.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
		r.Header.Set("Authorization", "Bearer "+s.adminKey)
		return nil
	}))
	require.NoError(t, err)
	all, err := c.Events(ctx, client.EventFilter{Type: "webhook_callback"}, "")
	require.NoError(t, err)
	defer all.Close()

	admin := s.client(s.adminKey)
	id := create(t, admin, newTask("webhook_callback", params{"url": s.hooks.srv.URL + "/webhook/events", "payload": map[string]any{"e": 1}}))
	seen := map[client.Status]bool{}
	for !seen[client.StatusCompleted] {
		ev, err := all.Next()
		require.NoErrorf(t, err, "the shared stream ended before the task completed (saw %v)%s", seen, s.logTails())
		if ev.Task != nil && ev.Task.TaskId == id {
			seen[ev.Task.Status] = true
		}
	}
	require.NotEmpty(t, all.LastEventID())

	task, err := c.WatchTask(ctx, id, client.WatchOptions{})
	require.NoError(t, err)
	require.Equal(t, client.StatusCompleted, task.Status)
	// A task's own stream replays its history: the snapshot, then its end.
	one, err := c.TaskEvents(ctx, id, "")
	require.NoError(t, err)
	defer one.Close()
	ev, err := one.Next()
	require.NoError(t, err)
	require.Equal(t, client.EventTask, ev.Type)
	require.Equal(t, id, ev.Task.TaskId)
}

// typeLimit runs six webhook_callbacks against a receiver that holds each
// request 400 ms: with webhook_callback limited to 2 across both workers,
// at most two are ever in flight, and two are (the semaphore's sorted set
// lives on one Cluster slot).
func (s *stack) typeLimit(t *testing.T, operator *client.ClientWithResponses) {
	var mu sync.Mutex
	inFlight, peak := 0, 0
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		time.Sleep(400 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
	}))
	t.Cleanup(slow.Close)
	var ids []string
	for i := range 6 {
		ids = append(ids, create(t, operator, newTask("webhook_callback", params{"url": slow.URL + "/limited", "payload": map[string]any{"i": i}})))
	}
	for _, id := range ids {
		s.waitStatus(t, operator, id, client.StatusCompleted, taskWithin)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 2, peak, "webhook_callback limited to 2 at once across both workers")
}

// rateLimits spends a fresh viewer's budget (burst 40, 20/s): the requests
// past it answer 429 with Retry-After, counted in Redis (not by the API's
// local fallback, which would log and count its decisions).
func (s *stack) rateLimits(t *testing.T, admin *client.ClientWithResponses) {
	viewer := s.client(s.newKey(t, admin, "e2e-limited-viewer", client.CreateAPIKeyRequestRoleViewer))
	ok, limited := 0, 0
	for range 80 {
		resp, err := viewer.ListQueuesWithResponse(context.Background())
		require.NoError(t, err)
		switch resp.StatusCode() {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			require.NotEmpty(t, resp.HTTPResponse.Header.Get("Retry-After"))
		default:
			t.Fatalf("list queues answered %s: %s", resp.Status(), resp.Body)
		}
	}
	require.Positive(t, limited, "80 requests at once past a burst of 40")
	require.GreaterOrEqual(t, ok, 40)
	metrics, err := admin.MetricsWithResponse(context.Background())
	require.NoError(t, err)
	for _, line := range strings.Split(string(metrics.Body), "\n") {
		if strings.HasPrefix(line, "taskforge_ratelimit_local_decisions_total") {
			require.True(t, strings.HasSuffix(line, " 0"), "the limiter fell back to local limits on the cluster: %s", line)
		}
	}
	t.Logf("rate limits: %d answered, %d refused with 429", ok, limited)
}

// clusterKey is a pattern of the keys found in the cluster; together, if
// set, names the key that shares a multi-key script with it, from the
// pattern's submatches: both must be on one slot.
type clusterKey struct {
	what     string
	re       *regexp.Regexp
	together func(m []string) string
}

// knownKeys are the keys Asynq and Taskforge write. A key matching none
// fails the test: classify it, and any script that uses it with others.
var knownKeys = []clusterKey{
	// Asynq's keys of one queue all carry the queue's hash tag: its scripts
	// (enqueue, dequeue, done, retry, forward, …) use several at once.
	{what: "asynq queue key", re: regexp.MustCompile(`^asynq:\{(critical|high|normal|low)\}:.+$`),
		together: func(m []string) string { return "asynq:{" + m[1] + "}:pending" }},
	{what: "asynq set of queues", re: regexp.MustCompile(`^asynq:queues$`)},
	{what: "asynq sets of servers, workers, schedulers", re: regexp.MustCompile(`^asynq:(servers|workers|schedulers)$`)},
	// A server's state and its workers are written by one script.
	{what: "asynq server state", re: regexp.MustCompile(`^asynq:servers:(\{[^}]+\})$`),
		together: func(m []string) string { return "asynq:workers:" + m[1] }},
	{what: "asynq server workers", re: regexp.MustCompile(`^asynq:workers:(\{[^}]+\})$`),
		together: func(m []string) string { return "asynq:servers:" + m[1] }},
	{what: "asynq scheduler entries", re: regexp.MustCompile(`^asynq:schedulers:\{[^}]+\}$`)},
	{what: "asynq scheduler history", re: regexp.MustCompile(`^asynq:scheduler_history:.+$`)},
	// Single-key scripts.
	{what: "rate limit (GCRA)", re: regexp.MustCompile(`^taskforge:ratelimit:.+$`)},
	{what: "type-limit semaphore", re: regexp.MustCompile(`^taskforge:typelimit:.+$`)},
	{what: "result cache", re: regexp.MustCompile(`^taskforge:result-cache:.+$`)},
	// The live events: one script appends to the shared stream and to the
	// task's own.
	{what: "shared event stream", re: regexp.MustCompile(`^` + regexp.QuoteMeta(event.Options{}.AllKey()) + `$`)},
	{what: "task event stream", re: regexp.MustCompile(`^` + regexp.QuoteMeta(event.Options{}.AllKey()) + `:task:(.+)$`),
		together: func([]string) string { return event.Options{}.AllKey() }},
}

// checkClusterKeys scans every master, classifies every key and checks that
// each key shares its slot with the keys its scripts use it with.
func checkClusterKeys(t *testing.T, cc *redis.ClusterClient) {
	ctx := context.Background()
	var mu sync.Mutex
	var all []string
	require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		iter := m.Scan(ctx, 0, "*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		mu.Lock()
		all = append(all, keys...)
		mu.Unlock()
		return iter.Err()
	}))
	sort.Strings(all)
	slotOf := func(key string) int64 {
		n, err := cc.ClusterKeySlot(ctx, key).Result()
		require.NoError(t, err)
		return n
	}
	counts := map[string]int{}
	var unknown, split []string
	for _, key := range all {
		var kind *clusterKey
		var m []string
		for i := range knownKeys {
			if m = knownKeys[i].re.FindStringSubmatch(key); m != nil {
				kind = &knownKeys[i]
				break
			}
		}
		if kind == nil {
			unknown = append(unknown, key)
			continue
		}
		counts[kind.what]++
		if kind.together != nil {
			if other := kind.together(m); slotOf(other) != slotOf(key) {
				split = append(split, fmt.Sprintf("%s (slot %d) and %s (slot %d)", key, slotOf(key), other, slotOf(other)))
			}
		}
	}
	t.Logf("%d keys on the cluster's masters: %v", len(all), counts)
	require.Empty(t, unknown, "keys no pattern of knownKeys describes: classify them and their scripts")
	require.Empty(t, split, "keys used by one script on different slots")
	// Keys that outlive the scenario (rate-limit and semaphore keys expire
	// within seconds of their last use, a server's workers hash is deleted
	// when it runs nothing).
	for _, what := range []string{"asynq queue key", "asynq server state", "shared event stream", "task event stream"} {
		require.Positivef(t, counts[what], "no %s found", what)
	}
}

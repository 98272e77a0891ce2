package live_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/taskforge/taskforge/pkg/event"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/testenv"
	"github.com/taskforge/taskforge/services/api/internal/live"
)

// TestInterests: a subscription with an Owner hears only its owner's rows
// (even without a filter), one without hears every row its filter accepts,
// a task's subscription hears that task, and Close ends every kind.
func TestInterests(t *testing.T) {
	t.Parallel()
	rd := testenv.NewRedis(t)
	opts := event.Options{Prefix: "test:live"}
	pub, err := event.NewPublisher(rd.Client, zaptest.NewLogger(t), nil, opts)
	require.NoError(t, err)
	defer pub.Close(context.Background())
	rdr, err := event.NewReader(rd.Client, opts)
	require.NoError(t, err)

	var mu sync.Mutex
	rows := map[string]store.Task{}
	load := func(_ context.Context, ids []string) (map[string]store.Task, error) {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]store.Task{}
		for _, id := range ids {
			if r, ok := rows[id]; ok {
				out[id] = r
			}
		}
		return out, nil
	}
	render := func(r store.Task) ([]byte, error) {
		return json.Marshal(map[string]string{"id": r.ID, "status": r.Status})
	}
	hub, err := live.New(rdr, load, render, zaptest.NewLogger(t), live.Options{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	alice, err := hub.Subscribe("alice", live.Interest{Owner: "alice"})
	require.NoError(t, err)
	bob, err := hub.Subscribe("bob", live.Interest{Owner: "bob"})
	require.NoError(t, err)
	failedOnly, err := hub.Subscribe("admin", live.Interest{Filter: func(r store.Task) bool { return r.Status == "failed" }})
	require.NoError(t, err)
	everyone, err := hub.Subscribe("admin", live.Interest{})
	require.NoError(t, err)
	oneTask, err := hub.Subscribe("admin", live.Interest{TaskID: "task_b"})
	require.NoError(t, err)
	hub.Start(ctx)
	// The hub reads from the stream's end once started: publish until an
	// event reaches the subscription of every row.
	mu.Lock()
	rows["task_w"] = store.Task{ID: "task_w", CreatedBy: "walt", Status: "pending", Version: 1}
	mu.Unlock()
	require.Eventually(t, func() bool {
		pub.Publish(event.Task("task_w", 1, "pending"))
		select {
		case <-everyone.C:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	}, 5*time.Second, time.Millisecond)

	mu.Lock()
	rows["task_a"] = store.Task{ID: "task_a", CreatedBy: "alice", Status: "running", Version: 2}
	rows["task_b"] = store.Task{ID: "task_b", CreatedBy: "bob", Status: "failed", Version: 3}
	rows["task_c"] = store.Task{ID: "task_c", CreatedBy: "carol", Status: "completed", Version: 4}
	mu.Unlock()
	pub.Publish(event.Task("task_a", 2, "running"), event.Task("task_b", 3, "failed"), event.Task("task_c", 4, "completed"))

	want := map[*live.Sub][]string{
		alice:      {"task_a"},
		bob:        {"task_b"},
		failedOnly: {"task_b"},
		everyone:   {"task_a", "task_b", "task_c"},
		oneTask:    {"task_b"},
	}
	for sub, ids := range want {
		var got []string
		for len(got) < len(ids) {
			select {
			case d := <-sub.C:
				if d.TaskID != "task_w" { // a late warm-up event
					got = append(got, d.TaskID)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("waited for %v, got %v", ids, got)
			}
		}
		require.Equal(t, ids, got)
	}
	// Nothing else arrives: a later event for alice reaches alice next, not
	// a stray one for someone else.
	mu.Lock()
	rows["task_a"] = store.Task{ID: "task_a", CreatedBy: "alice", Status: "completed", Version: 3}
	mu.Unlock()
	pub.Publish(event.Task("task_a", 3, "completed"))
	select {
	case d := <-alice.C:
		require.Equal(t, "task_a", d.TaskID)
		require.Equal(t, int64(3), d.Version)
	case <-time.After(5 * time.Second):
		t.Fatal("alice's second event did not arrive")
	}
	select {
	case d := <-bob.C:
		t.Fatalf("bob heard %s", d.TaskID)
	case d := <-oneTask.C:
		t.Fatalf("task_b's stream heard %s", d.TaskID)
	case <-time.After(200 * time.Millisecond):
	}

	hub.Close(context.Background())
	for sub := range want {
		for range sub.C { // what it still held, then closed
		}
		require.ErrorIs(t, sub.Err(), live.ErrShutdown)
	}
	_, err = hub.Subscribe("alice", live.Interest{Owner: "alice"})
	require.ErrorIs(t, err, live.ErrShutdown)
}

package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskservice"
	"github.com/taskforge/taskforge/services/api/client"
)

func TestListFiltersAndSort(t *testing.T) {
	t.Parallel()
	b := setup(t)
	admin := b.client(t, tokAdmin)
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	type seed struct {
		typ, status, prio string
		created, sched    time.Duration
	}
	seeds := []seed{
		{"refresh_all_prices", "pending", "normal", 0, 50 * time.Minute},
		{"refresh_portfolio", "running", "high", time.Minute, 40 * time.Minute},
		{"send_email", "failed", "high", 2 * time.Minute, 30 * time.Minute},
		{"send_email", "completed", "low", 3 * time.Minute, 20 * time.Minute},
		{"refresh_all_prices", "cancelled", "critical", 4 * time.Minute, 10 * time.Minute},
		{"refresh_all_prices", "pending", "normal", 5 * time.Minute, 5 * time.Minute},
	}
	ids := make([]string, len(seeds))
	for i, s := range seeds {
		ids[i] = insertTaskWith(t, b, store.Task{Type: s.typ, Status: s.status, Priority: s.prio, CreatedBy: "key_op",
			CreatedAt: base.Add(s.created), ScheduledFor: base.Add(s.sched)})
	}
	list := func(p client.ListTasksParams) []string {
		t.Helper()
		resp, err := admin.ListTasksWithResponse(ctx, &p)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode(), string(resp.Body))
		out := []string{}
		for _, it := range resp.JSON200.Items {
			out = append(out, it.TaskId)
		}
		require.EqualValues(t, len(out), resp.JSON200.Total, "total counts the matches")
		require.False(t, resp.JSON200.TotalIsEstimate)
		return out
	}
	sortp := func(s string) *client.ListTasksParamsSort { v := client.ListTasksParamsSort(s); return &v }
	at := func(d time.Duration) *time.Time { v := base.Add(d); return &v }

	cases := []struct {
		name string
		p    client.ListTasksParams
		want []int
	}{
		{"default newest first", client.ListTasksParams{}, []int{5, 4, 3, 2, 1, 0}},
		{"oldest first", client.ListTasksParams{Sort: sortp("created_at")}, []int{0, 1, 2, 3, 4, 5}},
		{"by schedule", client.ListTasksParams{Sort: sortp("scheduled_for")}, []int{5, 4, 3, 2, 1, 0}},
		{"by schedule desc", client.ListTasksParams{Sort: sortp("-scheduled_for")}, []int{0, 1, 2, 3, 4, 5}},
		{"one status", client.ListTasksParams{Status: ptr("pending")}, []int{5, 0}},
		{"several statuses", client.ListTasksParams{Status: ptr("failed,pending,completed")}, []int{5, 3, 2, 0}},
		{"several statuses ascending", client.ListTasksParams{Status: ptr("pending,failed"), Sort: sortp("created_at")}, []int{0, 2, 5}},
		{"several statuses by schedule", client.ListTasksParams{Status: ptr("pending,running"), Sort: sortp("scheduled_for")}, []int{5, 1, 0}},
		{"type", client.ListTasksParams{Type: ptr("send_email")}, []int{3, 2}},
		{"priority", client.ListTasksParams{Priority: ptr(client.Priority("high"))}, []int{2, 1}},
		{"created range", client.ListTasksParams{CreatedAfter: at(time.Minute), CreatedBefore: at(4 * time.Minute)}, []int{3, 2, 1}},
		{"combined", client.ListTasksParams{Type: ptr("refresh_all_prices"), Status: ptr("pending,cancelled"), Priority: ptr(client.Priority("normal"))}, []int{5, 0}},
		{"nothing", client.ListTasksParams{Type: ptr("backup_data")}, []int{}},
	}
	for _, tc := range cases {
		want := make([]string, len(tc.want))
		for i, k := range tc.want {
			want[i] = ids[k]
		}
		require.Equal(t, want, list(tc.p), tc.name)
	}

	// Pages of two follow the same order, with a cursor bound to its sort.
	limit := 2
	var got []string
	var cursor *string
	for {
		resp, err := admin.ListTasksWithResponse(ctx, &client.ListTasksParams{Limit: &limit, Cursor: cursor, Sort: sortp("scheduled_for")})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode())
		require.LessOrEqual(t, len(resp.JSON200.Items), 2)
		require.EqualValues(t, 6, resp.JSON200.Total)
		for _, it := range resp.JSON200.Items {
			got = append(got, it.TaskId)
		}
		if resp.JSON200.NextCursor == nil {
			break
		}
		cursor = resp.JSON200.NextCursor
	}
	require.Equal(t, []string{ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}, got)

	// Bad queries are 400 naming the parameter.
	first, err := admin.ListTasksWithResponse(ctx, &client.ListTasksParams{Limit: &limit})
	require.NoError(t, err)
	for _, tc := range []struct{ query, field string }{
		{"limit=0", "limit"}, {"limit=501", "limit"}, {"limit=ten", "limit"},
		{"status=sleeping", "status"}, {"sort=type", "sort"}, {"priority=urgent", "priority"},
		{"created_after=yesterday", "created_after"}, {"created_before=1", "created_before"},
		{"cursor=%21%21", "cursor"}, {"cursor=" + *first.JSON200.NextCursor + "&sort=created_at", "cursor"},
	} {
		r := b.raw(t, http.MethodGet, "/api/v1/tasks?"+tc.query, tokAdmin, nil, nil)
		require.Equal(t, http.StatusBadRequest, r.StatusCode, tc.query)
		var p client.Problem
		require.NoError(t, json.NewDecoder(r.Body).Decode(&p))
		require.Equal(t, []string{tc.field}, fields(&p), tc.query)
	}
	// The result of a task is not part of a list item.
	require.NoError(t, b.pg.DB.Model(&store.Task{}).Where("id = ?", ids[3]).Update("result", store.JSON(`{"rows":42}`)).Error)
	resp, err := admin.ListTasksWithResponse(ctx, &client.ListTasksParams{Status: ptr("completed")})
	require.NoError(t, err)
	require.Nil(t, resp.JSON200.Items[0].Result)
	one, err := admin.GetTaskWithResponse(ctx, ids[3])
	require.NoError(t, err)
	require.Equal(t, map[string]any{"rows": float64(42)}, one.JSON200.Result)
}

// TestPaginationStableUnderInserts pages through the tasks in every order while
// other tasks are being created: every task that existed before is seen
// exactly once and no page repeats a task.
func TestPaginationStableUnderInserts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	op := b.client(t, tokOp)
	const seeded = 240
	var before []string
	for i := range seeded {
		resp, err := op.CreateTaskWithResponse(ctx, nil, createBody("refresh_portfolio", map[string]any{"portfolio_id": fmt.Sprint("pf_", i)}))
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, resp.StatusCode())
		before = append(before, resp.JSON201.TaskId)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	inserted := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Some land in the past of the walk (scheduled earlier), some ahead.
			body := createBody("refresh_portfolio", map[string]any{"portfolio_id": fmt.Sprint("new_", i)})
			resp, err := op.CreateTaskWithResponse(ctx, nil, body)
			if err != nil || resp.StatusCode() != http.StatusCreated {
				t.Errorf("concurrent create: %v %d", err, resp.StatusCode())
				return
			}
			inserted++
		}
	}()
	for _, sort := range []string{"-created_at", "created_at", "-scheduled_for", "scheduled_for"} {
		s := client.ListTasksParamsSort(sort)
		limit := 17
		seen := map[string]int{}
		var cursor *string
		for pages := 0; ; pages++ {
			require.Less(t, pages, 1000, "the walk ends")
			resp, err := op.ListTasksWithResponse(ctx, &client.ListTasksParams{Sort: &s, Limit: &limit, Cursor: cursor})
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode(), string(resp.Body))
			for _, it := range resp.JSON200.Items {
				seen[it.TaskId]++
				require.Equal(t, 1, seen[it.TaskId], "%s: task %s repeated", sort, it.TaskId)
			}
			if resp.JSON200.NextCursor == nil {
				break
			}
			cursor = resp.JSON200.NextCursor
		}
		for _, id := range before {
			require.Equal(t, 1, seen[id], "%s: task %s skipped", sort, id)
		}
	}
	close(stop)
	wg.Wait()
	require.Positive(t, inserted, "tasks were inserted during the walks")
}

// TestListTotalIsCapped checks the count past taskservice.CountCap: the total
// becomes the planner's estimate and says so.
func TestListTotalIsCapped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	n := taskservice.CountCap + 500
	// load inserts n pending tasks with ids prefix… and analyzes the table.
	load := func(prefix string) {
		t.Helper()
		require.NoError(t, b.pg.DB.Exec(`
INSERT INTO tasks (id, type, status, priority, created_by, created_at, scheduled_for, max_retries, retry_policy, timeout_seconds)
SELECT ? || lpad(g::text, 21, '0'), 'refresh_all_prices', 'pending', 'normal', 'key_op',
       now() - g * interval '1 second', now(), 3, '{}'::jsonb, 60
FROM generate_series(1, ?) g`, prefix, n).Error)
		require.NoError(t, b.pg.DB.Exec(`ANALYZE tasks`).Error)
	}
	load("task_bulk")
	resp, err := b.client(t, tokAdmin).ListTasksWithResponse(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode())
	require.True(t, resp.JSON200.TotalIsEstimate)
	require.Greater(t, resp.JSON200.Total, int64(taskservice.CountCap))
	require.InDelta(t, n, resp.JSON200.Total, float64(n)/5, "the estimate is close")
	require.Len(t, resp.JSON200.Items, taskservice.DefaultListLimit)

	// The estimate is reused for taskservice.TotalTTL only: rows added
	// meanwhile show in a later page's total.
	load("task_more")
	time.Sleep(taskservice.TotalTTL)
	resp, err = b.client(t, tokAdmin).ListTasksWithResponse(ctx, nil)
	require.NoError(t, err)
	require.True(t, resp.JSON200.TotalIsEstimate)
	require.InDelta(t, 2*n, resp.JSON200.Total, float64(2*n)/5, "the estimate after TotalTTL counts the new rows")

	// A narrow filter is counted exactly.
	resp, err = b.client(t, tokAdmin).ListTasksWithResponse(ctx, &client.ListTasksParams{Status: ptr("running")})
	require.NoError(t, err)
	require.False(t, resp.JSON200.TotalIsEstimate)
	require.Zero(t, resp.JSON200.Total)
}

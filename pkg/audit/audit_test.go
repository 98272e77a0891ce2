package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/audit"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/tasks"
	"github.com/taskforge/taskforge/pkg/testenv"
)

func setup(t *testing.T) (*audit.Log, testenv.Postgres) {
	t.Helper()
	pg := testenv.NewPostgres(t)
	l, err := audit.New(pg.DB)
	require.NoError(t, err)
	return l, pg
}

func TestRecordStoresEveryField(t *testing.T) {
	t.Parallel()
	l, pg := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a caller that has hung up must still leave its audit row
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	err := l.Record(ctx, audit.Entry{
		Time: at, Actor: "key_1", Action: audit.ActionTaskCancel, ResourceType: audit.ResourceTask,
		ResourceID: "task_9", Outcome: audit.Success, ClientIP: "192.0.2.7", RequestID: "req-1",
		Details: map[string]any{"status": "cancelled"},
	})
	require.NoError(t, err)

	var row store.AuditEntry
	require.NoError(t, pg.DB.First(&row).Error)
	require.Equal(t, "key_1", row.Actor)
	require.Equal(t, audit.ActionTaskCancel, row.Action)
	require.Equal(t, audit.ResourceTask, row.ResourceType)
	require.Equal(t, "task_9", row.ResourceID)
	require.Equal(t, audit.Success, row.Outcome)
	require.Equal(t, "192.0.2.7", row.ClientIP)
	require.Equal(t, "req-1", row.RequestID)
	require.True(t, at.Equal(row.TS), "ts %s", row.TS)
	var d map[string]any
	require.NoError(t, json.Unmarshal(row.Details, &d))
	require.Equal(t, "cancelled", d["status"])
}

func TestRecordRejectsAndClips(t *testing.T) {
	t.Parallel()
	l, pg := setup(t)
	ctx := context.Background()
	require.ErrorIs(t, l.Record(ctx, audit.Entry{Outcome: audit.Success}), audit.ErrInvalidEntry)
	require.ErrorIs(t, l.Record(ctx, audit.Entry{Action: "x", Outcome: "maybe"}), audit.ErrInvalidEntry)

	long := strings.Repeat("é", 400) // 800 bytes
	require.NoError(t, l.Record(ctx, audit.Entry{Action: audit.ActionAuthFailure, Outcome: audit.Failure,
		Actor: "\xff\x00" + long, RequestID: long}))
	var row store.AuditEntry
	require.NoError(t, pg.DB.First(&row).Error)
	require.LessOrEqual(t, len(row.RequestID), 256)
	require.LessOrEqual(t, len(row.Actor), 256)
	require.True(t, strings.HasPrefix(row.RequestID, "éé"))
	require.NotContains(t, row.Actor, "\x00")
	require.Equal(t, "{}", strings.ReplaceAll(string(row.Details), " ", ""))
}

func TestListFiltersAndPages(t *testing.T) {
	t.Parallel()
	l, _ := setup(t)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour).UTC()
	for i := 0; i < 25; i++ {
		actor := []string{"alice", "bob"}[i%2]
		action := []string{audit.ActionTaskCreate, audit.ActionTaskCancel, audit.ActionAuthFailure}[i%3]
		outcome := audit.Success
		if action == audit.ActionAuthFailure {
			outcome = audit.Failure
		}
		require.NoError(t, l.Record(ctx, audit.Entry{
			Time: base.Add(time.Duration(i) * time.Minute), Actor: actor, Action: action,
			ResourceType: audit.ResourceTask, ResourceID: fmt.Sprintf("task_%d", i%5), Outcome: outcome,
		}))
	}

	// Walk every page of alice's rows, three at a time, while new rows arrive.
	var seen []int64
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 20)
		p, err := l.List(ctx, audit.Query{Actor: "alice", Limit: 3, Cursor: cursor})
		require.NoError(t, err)
		for _, r := range p.Items {
			require.Equal(t, "alice", r.Actor)
			seen = append(seen, r.ID)
		}
		require.NoError(t, l.Record(ctx, audit.Entry{Actor: "alice", Action: audit.ActionTaskCreate, Outcome: audit.Success}))
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	require.Len(t, seen, 13)
	for i := 1; i < len(seen); i++ {
		require.Less(t, seen[i], seen[i-1], "newest first, no repeats")
	}

	cases := []struct {
		name string
		q    audit.Query
		want func(store.AuditEntry) bool
		n    int
	}{
		{"action", audit.Query{Action: audit.ActionAuthFailure}, func(r store.AuditEntry) bool { return r.Action == audit.ActionAuthFailure }, 8},
		{"resource", audit.Query{ResourceID: "task_3"}, func(r store.AuditEntry) bool { return r.ResourceID == "task_3" }, 5},
		{"since", audit.Query{Since: base.Add(20 * time.Minute), Actor: "bob"}, func(r store.AuditEntry) bool {
			return !r.TS.Before(base.Add(20*time.Minute)) && r.Actor == "bob"
		}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.q.Limit = audit.MaxLimit
			p, err := l.List(ctx, tc.q)
			require.NoError(t, err)
			require.Len(t, p.Items, tc.n)
			require.Empty(t, p.NextCursor)
			for _, r := range p.Items {
				require.True(t, tc.want(r), "%+v", r)
			}
		})
	}
}

func TestListRejectsBadQuery(t *testing.T) {
	t.Parallel()
	l, _ := setup(t)
	for _, tc := range []struct {
		q     audit.Query
		field string
	}{
		{audit.Query{Limit: -1}, "limit"},
		{audit.Query{Limit: audit.MaxLimit + 1}, "limit"},
		{audit.Query{Cursor: "%%%"}, "cursor"},
		{audit.Query{Cursor: "YTp4"}, "cursor"}, // "a:x"
		{audit.Query{Cursor: "MTIz"}, "cursor"}, // "123" without the prefix
	} {
		_, err := l.List(context.Background(), tc.q)
		v, ok := tasks.AsValidation(err)
		require.True(t, ok, "%+v: %v", tc.q, err)
		require.Equal(t, tc.field, v.Errors[0].Field)
	}
}

// TestConcurrentRecordsAreAllCommitted writes many entries at once, as a busy
// API does: the writer batches them, and every Record returns only after its
// own row is committed.
func TestConcurrentRecordsAreAllCommitted(t *testing.T) {
	t.Parallel()
	l, pg := setup(t)
	const n = 300
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- l.Record(context.Background(), audit.Entry{
				Actor: fmt.Sprintf("key_%d", i), Action: audit.ActionTaskCreate, ResourceType: audit.ResourceTask,
				ResourceID: fmt.Sprintf("task_%d", i), Outcome: audit.Success,
			})
		}()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	var count, actors int64
	require.NoError(t, pg.DB.Raw(`SELECT count(*), count(DISTINCT actor) FROM audit_log`).Row().Scan(&count, &actors))
	require.EqualValues(t, n, count)
	require.EqualValues(t, n, actors, "every entry keeps its own fields")
}

// TestAggregatedEntriesShareOneRowPerMinute floods the log with refused
// credentials from two addresses, concurrently (so batches hold several rows
// of one key): each address gets one row per minute whose count is the
// number of entries, and ordinary rows stay one per entry.
func TestAggregatedEntriesShareOneRowPerMinute(t *testing.T) {
	t.Parallel()
	l, pg := setup(t)
	ctx := context.Background()
	minute := time.Date(2026, 3, 4, 5, 6, 0, 0, time.UTC)
	const n = 200
	errs := make(chan error, 2*n+3)
	for i := range n {
		for _, ip := range []string{"192.0.2.1", "2001:db8:1:2::/64"} {
			go func() {
				errs <- l.Record(ctx, audit.Entry{Time: minute.Add(time.Duration(i%50) * time.Second), Action: audit.ActionAuthFailure,
					Outcome: audit.Failure, ClientIP: ip, Aggregate: ip, Details: map[string]any{"reason": fmt.Sprint(i)}})
			}()
		}
	}
	for range 2 * n {
		require.NoError(t, <-errs)
	}
	// The next minute starts a new row; an entry without Aggregate is a row of its own.
	require.NoError(t, l.Record(ctx, audit.Entry{Time: minute.Add(time.Minute), Action: audit.ActionAuthFailure,
		Outcome: audit.Failure, ClientIP: "192.0.2.1", Aggregate: "192.0.2.1"}))
	for range 2 {
		require.NoError(t, l.Record(ctx, audit.Entry{Time: minute, Action: audit.ActionTaskCreate, Outcome: audit.Success, ClientIP: "192.0.2.1"}))
	}

	var rows []store.AuditEntry
	require.NoError(t, pg.DB.Order("id").Find(&rows).Error)
	counts := map[string]int{}
	for _, r := range rows {
		counts[r.Action+" "+r.ClientIP+" "+r.TS.Truncate(time.Minute).Format("15:04")] += r.Count
	}
	require.Len(t, rows, 5, "%+v", counts)
	require.Equal(t, map[string]int{
		"auth.failure 192.0.2.1 05:06":         n,
		"auth.failure 2001:db8:1:2::/64 05:06": n,
		"auth.failure 192.0.2.1 05:07":         1,
		"task.create 192.0.2.1 05:06":          2,
	}, counts)
}

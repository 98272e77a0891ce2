package server

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

// TestListBody: the page written item by item is the encoding of the page's
// view, with or without a cursor; an item is rendered again when its row's
// version moves, and kept while it does not.
func TestListBody(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	started := at.Add(time.Second)
	row := func(id string, version int64, status string) store.Task {
		return store.Task{ID: id, Type: "webhook_callback", Status: status, Priority: "normal", Version: version,
			Params: store.JSON(`{"url":"https://x.example/<a&b>","secret":"***"}`), CreatedAt: at, UpdatedAt: at, ScheduledFor: at,
			StartedAt: &started, Messages: store.JSON(`["one",{"message":"two"}]`), RetryPolicy: store.JSON(`{"max_retries":2}`),
			Error: store.JSON(`{"message":"boom","kind":"transient"}`), CreatedBy: "key_x", TimeoutSeconds: 30}
	}
	// want is what encoding the page's view (as it was built before the
	// items were kept) gives.
	want := func(p taskservice.Page) string {
		t.Helper()
		v := struct {
			Items           []taskView `json:"items"`
			NextCursor      *string    `json:"next_cursor"`
			Total           int64      `json:"total"`
			TotalIsEstimate bool       `json:"total_is_estimate"`
		}{Items: []taskView{}, Total: p.Total, TotalIsEstimate: p.TotalIsEstimate}
		for _, it := range p.Items {
			v.Items = append(v.Items, taskDetails(it))
		}
		if p.NextCursor != "" {
			v.NextCursor = &p.NextCursor
		}
		var b bytes.Buffer
		require.NoError(t, jsonEncoder(&b).Encode(v))
		return b.String()
	}
	got := func(l *listItems, p taskservice.Page) string {
		t.Helper()
		var b bytes.Buffer
		require.NoError(t, l.listBody(&b, p))
		return b.String()
	}

	l := newListItems()
	for _, p := range []taskservice.Page{
		{},
		{Items: []store.Task{row("task_a", 1, "running")}, Total: 1},
		{Items: []store.Task{row("task_a", 1, "running"), row("task_b", 3, "failed")}, NextCursor: `c"ur<sor>`, Total: 20001, TotalIsEstimate: true},
	} {
		require.Equal(t, want(p), got(l, p))
	}

	// The row moved on (a new version): its new state is shown.
	done := row("task_a", 2, "completed")
	p := taskservice.Page{Items: []store.Task{done}, Total: 1}
	require.Equal(t, want(p), got(l, p))
	require.Contains(t, got(l, p), `"status":"completed"`)

	// Same version, kept: the kept JSON is served (a row cannot change
	// without a new version; here a changed row with the old version proves
	// the item came from memory).
	stale := row("task_a", 2, "cancelled")
	require.Contains(t, got(l, taskservice.Page{Items: []store.Task{stale}}), `"status":"completed"`)
}

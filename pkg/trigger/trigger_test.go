package trigger_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/maintenance"
	"github.com/taskforge/taskforge/pkg/portfolio"
	"github.com/taskforge/taskforge/pkg/price"
	"github.com/taskforge/taskforge/pkg/secret"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/taskservice/taskservicetest"
	"github.com/taskforge/taskforge/pkg/trigger"
)

var (
	ctx      = context.Background()
	operator = auth.Principal{ID: "key_op", Role: auth.Operator}
	admin    = auth.Principal{ID: "key_admin", Role: auth.Admin}
)

// env is a trigger service on a test's own databases.
type env struct {
	db  *gorm.DB
	svc *trigger.Service
}

func newEnv(t *testing.T) env { return newEnvB(t) }

// newEnvB is newEnv for tests and benchmarks.
func newEnvB(t testing.TB) env {
	t.Helper()
	e := taskservicetest.New(t)
	keys, err := secret.NewKeyring(map[string][]byte{"k": []byte("trigger-test-key-0123456789abcde")}, "k")
	require.NoError(t, err)
	st, err := trigger.NewStore(e.PG.DB, keys, time.Minute)
	require.NoError(t, err)
	svc, err := trigger.New(st, e.Service, e.Log, nil)
	require.NoError(t, err)
	return env{db: e.PG.DB, svc: svc}
}

func (e env) create(t *testing.T, in trigger.Input, owner auth.Principal) trigger.Trigger {
	t.Helper()
	tr, err := e.svc.Store().Create(ctx, in, owner)
	require.NoError(t, err)
	return tr
}

func (e env) tasks(t *testing.T, triggerID string) []store.Task {
	t.Helper()
	var rows []store.Task
	require.NoError(t, e.db.Where("trigger_id = ?", triggerID).Order("id").Find(&rows).Error)
	return rows
}

func (e env) events(t *testing.T, triggerID string) (pending, done int64) {
	t.Helper()
	require.NoError(t, e.db.Model(&store.TriggerEvent{}).Where("trigger_id = ? AND processed_at IS NULL", triggerID).Count(&pending).Error)
	require.NoError(t, e.db.Model(&store.TriggerEvent{}).Where("trigger_id = ? AND processed_at IS NOT NULL", triggerID).Count(&done).Error)
	return pending, done
}

// pastWindow moves a trigger's pending events back by d: the debounce window
// has passed without the test waiting for it.
func (e env) pastWindow(t *testing.T, triggerID string, d time.Duration) {
	t.Helper()
	require.NoError(t, e.db.Exec(`UPDATE trigger_events SET created_at = created_at - ? * interval '1 second'
WHERE trigger_id = ? AND processed_at IS NULL`, d.Seconds(), triggerID).Error)
}

func ptr[T any](v T) *T { return &v }

// TestDatabaseTriggerCoalescesAPriceRefresh: a refresh_all_prices run writes
// thousands of price rows in a few statements; the table triggers record one
// change event per statement, and the dispatcher makes one calculate_metrics
// per debounce window, however often it passes and however many dispatchers
// pass at once. A refresh that changes nothing records nothing.
func TestDatabaseTriggerCoalescesAPriceRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	require.NoError(t, e.db.Exec(`INSERT INTO assets (symbol, name, kind)
		SELECT format('S%s', lpad(i::text, 4, '0')), 'asset', 'equity' FROM generate_series(1, 300) i`).Error)
	tr := e.create(t, trigger.Input{Name: ptr("prices"), Kind: ptr(trigger.KindDatabase), Table: ptr("prices"),
		Operations: []string{"insert", "update"}, DebounceSeconds: ptr(3600),
		Task: &trigger.Template{Type: "calculate_metrics", Params: json.RawMessage(`{"portfolio_id":"pf_one","window_days":30}`)}}, operator)
	d, err := trigger.NewDispatcher(e.svc, trigger.DispatcherOptions{Poll: time.Hour})
	require.NoError(t, err)

	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	refresh := func(now time.Time) {
		svc, err := portfolio.New(e.db, price.NewSimulated(), nil, portfolio.Options{Now: func() time.Time { return now }})
		require.NoError(t, err)
		require.NoError(t, svc.RefreshAllPrices(ctx, &job.Recorder{}, &taskpb.RefreshAllPricesParams{LookbackDays: 10}))
	}
	refresh(day)
	var rows int64
	require.NoError(t, e.db.Model(&store.Price{}).Count(&rows).Error)
	require.Greater(t, rows, int64(1000), "a refresh of thousands of price rows")
	pending, _ := e.events(t, tr.ID)
	require.Positive(t, pending)
	require.Less(t, pending, rows/100, "one event per statement, not per row")

	// Inside the window: no task yet, and the dispatcher knows when it is due.
	wait, err := d.Pass(ctx)
	require.NoError(t, err)
	require.Positive(t, wait)
	require.Empty(t, e.tasks(t, tr.ID))

	// Past it: one task for the whole window, from two dispatchers at once.
	e.pastWindow(t, tr.ID, 2*time.Hour)
	d2, err := trigger.NewDispatcher(e.svc, trigger.DispatcherOptions{Poll: time.Hour})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for _, x := range []*trigger.Dispatcher{d, d2, d} {
		wg.Add(1)
		go func() { defer wg.Done(); _, err := x.Pass(ctx); require.NoError(t, err) }()
	}
	wg.Wait()
	_, err = d.Pass(ctx)
	require.NoError(t, err)
	got := e.tasks(t, tr.ID)
	require.Len(t, got, 1)
	require.Equal(t, "calculate_metrics", got[0].Type)
	require.Equal(t, "key_op", got[0].CreatedBy, "the trigger's owner owns its tasks")
	require.JSONEq(t, `{"portfolio_id":"pf_one","window_days":30}`, string(got[0].Params))
	pending, done := e.events(t, tr.ID)
	require.Zero(t, pending)
	require.Positive(t, done)

	// The same prices again: nothing changes, nothing is recorded.
	refresh(day)
	pending, _ = e.events(t, tr.ID)
	require.Zero(t, pending, "an upsert of identical values is no change")

	// New prices: a new window, a second task.
	refresh(day.AddDate(0, 0, 3))
	pending, _ = e.events(t, tr.ID)
	require.Positive(t, pending)
	e.pastWindow(t, tr.ID, 2*time.Hour)
	_, err = d.Pass(ctx)
	require.NoError(t, err)
	require.Len(t, e.tasks(t, tr.ID), 2)

	// The deliveries list the trigger's tasks.
	page, err := e.svc.Store().Deliveries(ctx, operator, tr.ID, 10, "")
	require.NoError(t, err)
	require.Len(t, page.Items, 2)
	for _, dl := range page.Items {
		require.True(t, dl.Accepted)
		require.NotNil(t, dl.TaskID)
	}
}

// TestDatabaseTriggerWhileNoDispatcherRuns: changes made while no dispatcher
// runs are kept in the change table (written in the change's transaction)
// and become tasks when one starts; a running dispatcher is woken by NOTIFY
// (its poll here is an hour), and the event's row feeds the params. A
// disabled trigger records nothing; an operation it does not watch neither.
func TestDatabaseTriggerWhileNoDispatcherRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := e.create(t, trigger.Input{Name: ptr("holdings"), Kind: ptr(trigger.KindDatabase), Table: ptr("holdings"),
		Operations: []string{"insert"},
		Task:       &trigger.Template{Type: "refresh_portfolio", ParamMap: map[string]string{"portfolio_id": "/row/portfolio_id"}}}, admin)
	off := e.create(t, trigger.Input{Name: ptr("off"), Kind: ptr(trigger.KindDatabase), Table: ptr("holdings"), Enabled: ptr(false),
		Task: &trigger.Template{Type: "refresh_all_prices"}}, admin)
	_, err := e.svc.Store().Create(ctx, trigger.Input{Name: ptr("op"), Kind: ptr(trigger.KindDatabase), Table: ptr("holdings"),
		Task: &trigger.Template{Type: "refresh_all_prices"}}, operator)
	require.ErrorIs(t, err, trigger.ErrOwnersTable, "an operator's trigger would see other owners' holdings")
	require.NoError(t, e.db.Exec(`INSERT INTO assets (symbol, name, kind) VALUES ('AAA', 'a', 'equity'), ('BBB', 'b', 'equity')`).Error)
	require.NoError(t, e.db.Exec(`INSERT INTO portfolios (id, name) VALUES ('pf_one', 'one'), ('pf_two', 'two')`).Error)
	require.NoError(t, e.db.Exec(`INSERT INTO holdings (portfolio_id, asset_symbol, quantity) VALUES ('pf_one', 'AAA', 1)`).Error)
	require.NoError(t, e.db.Exec(`UPDATE holdings SET quantity = 2`).Error) // not watched
	pending, _ := e.events(t, tr.ID)
	require.EqualValues(t, 1, pending)
	pending, _ = e.events(t, off.ID)
	require.Zero(t, pending, "a disabled trigger records no change")

	d, err := trigger.NewDispatcher(e.svc, trigger.DispatcherOptions{Poll: time.Hour})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })

	require.Eventually(t, func() bool { return len(e.tasks(t, tr.ID)) == 1 }, 30*time.Second, 20*time.Millisecond,
		"the change made while no dispatcher ran becomes a task when one starts")
	got := e.tasks(t, tr.ID)
	require.JSONEq(t, `{"portfolio_id":"pf_one"}`, string(got[0].Params))
	require.Equal(t, tr.ID, *got[0].TriggerID)

	// A change while it runs: NOTIFY wakes it (its poll is an hour away).
	require.NoError(t, e.db.Exec(`INSERT INTO holdings (portfolio_id, asset_symbol, quantity) VALUES ('pf_two', 'BBB', 1)`).Error)
	require.Eventually(t, func() bool { return len(e.tasks(t, tr.ID)) == 2 }, 30*time.Second, 20*time.Millisecond)
	got = e.tasks(t, tr.ID)
	require.JSONEq(t, `{"portfolio_id":"pf_two"}`, string(got[1].Params))
}

// TestUploadTriggers: FireUpload creates the task of every enabled upload
// trigger whose filter matches and whose owner may see the upload, once per
// upload, with params mapped from the upload.
func TestUploadTriggers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := auth.Principal{ID: "key_op2", Role: auth.Operator}
	in := func(name string, f trigger.Filter) trigger.Input {
		return trigger.Input{Name: ptr(name), Kind: ptr(trigger.KindUpload), Filter: &f,
			Task: &trigger.Template{Type: "refresh_portfolio", ParamMap: map[string]string{"portfolio_id": "/name"}}}
	}
	csv := e.create(t, in("csv", trigger.Filter{ContentType: "text/csv", NameGlob: "pf_*"}), operator)
	any := e.create(t, in("any", trigger.Filter{}), admin)
	e.create(t, in("json", trigger.Filter{ContentType: "application/json"}), operator)
	e.create(t, in("theirs", trigger.Filter{}), other)
	u := trigger.UploadEvent{UploadID: "upl_1", Name: "pf_prices", Size: 10, SHA256: "ab", ContentType: "text/csv; charset=utf-8"}
	for range 2 {
		fired, err := e.svc.FireUpload(ctx, "key_op", u)
		require.NoError(t, err)
		require.Len(t, fired, 2)
	}
	require.Len(t, e.tasks(t, csv.ID), 1, "once per upload")
	require.Len(t, e.tasks(t, any.ID), 1, "an admin's trigger sees every upload")
	require.JSONEq(t, `{"portfolio_id":"pf_prices"}`, string(e.tasks(t, csv.ID)[0].Params))
}

// TestCleanupRemovesProcessedEvents: cleanup_old_data's trigger_events
// target removes processed change events and delivery records past the
// cutoff, never a pending event.
func TestCleanupRemovesProcessedEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tr := e.create(t, trigger.Input{Name: ptr("assets"), Kind: ptr(trigger.KindDatabase), Table: ptr("assets"),
		Task: &trigger.Template{Type: "refresh_all_prices"}}, operator)
	d, err := trigger.NewDispatcher(e.svc, trigger.DispatcherOptions{Poll: time.Hour})
	require.NoError(t, err)
	require.NoError(t, e.db.Exec(`INSERT INTO assets (symbol, name, kind) VALUES ('OLD', 'a', 'equity')`).Error)
	_, err = d.Pass(ctx)
	require.NoError(t, err)
	require.Len(t, e.tasks(t, tr.ID), 1)
	require.NoError(t, e.db.Exec(`INSERT INTO assets (symbol, name, kind) VALUES ('NEW', 'b', 'equity')`).Error)
	require.NoError(t, e.db.Exec(`UPDATE trigger_events SET created_at = now() - interval '400 days'`).Error)
	require.NoError(t, e.db.Exec(`UPDATE trigger_events SET processed_at = now() - interval '400 days' WHERE processed_at IS NOT NULL`).Error)
	require.NoError(t, e.db.Exec(`UPDATE trigger_deliveries SET received_at = now() - interval '400 days'`).Error)

	cleanup := maintenance.NewCleanup(e.db, nil, maintenance.CleanupOptions{Retention: config.Defaults().Retention})
	r := &job.Recorder{}
	require.NoError(t, cleanup(ctx, r, &taskpb.CleanupOldDataParams{Targets: []string{"trigger_events"}, OlderThanDays: 30}))
	pending, done := e.events(t, tr.ID)
	require.EqualValues(t, 1, pending, "a pending change stays, however old")
	require.Zero(t, done)
	var deliveries int64
	require.NoError(t, e.db.Model(&store.TriggerDelivery{}).Count(&deliveries).Error)
	require.Zero(t, deliveries)
}

package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/auth"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskservice"
)

// loadSQL fills tasks with rows generated in PostgreSQL: 30 days of history,
// twelve types, statuses mostly terminal, four priorities, 200 owners.
const loadSQL = `
INSERT INTO tasks (id, type, status, priority, params, created_by, created_at, updated_at, scheduled_for,
                   started_at, completed_at, progress, attempt, max_retries, retry_policy, timeout_seconds,
                   estimated_duration, duration_ms)
SELECT 'task_' || lpad(g::text, 26, '0'),
       (ARRAY['refresh_all_prices','refresh_portfolio','refresh_benchmark','calculate_metrics','cleanup_old_data',
              'optimize_database','backup_data','generate_reports','send_email','send_alert','webhook_callback',
              'generate_digest'])[1 + (g::bigint * 7919) % 12],
       st, pr, '{}'::jsonb, 'key_' || ((g::bigint * 104729) % 200), ca, ca,
       ca + ((g % 7) * interval '1 minute'),
       CASE WHEN st <> 'pending' THEN ca + interval '1 second' END,
       CASE WHEN st IN ('completed','failed','cancelled') THEN ca + interval '1 second' + dur * interval '1 millisecond' END,
       CASE WHEN st = 'completed' THEN 1 ELSE 0 END,
       CASE WHEN st = 'pending' THEN 0 ELSE 1 END,
       3, '{"max_retries":3,"retry_delay":60,"exponential_backoff":true,"max_retry_delay":3600}'::jsonb, 600, 10,
       CASE WHEN st IN ('completed','failed') THEN dur END
FROM (SELECT g,
             now() - interval '30 days' + g * (interval '30 days' / $1) AS ca,
             CASE WHEN r1 < 0.85 THEN 'completed' WHEN r1 < 0.93 THEN 'failed' WHEN r1 < 0.96 THEN 'cancelled'
                  WHEN r1 < 0.985 THEN 'pending' WHEN r1 < 0.995 THEN 'running' ELSE 'retrying' END AS st,
             CASE WHEN r2 < 0.05 THEN 'critical' WHEN r2 < 0.30 THEN 'high' WHEN r2 < 0.85 THEN 'normal' ELSE 'low' END AS pr,
             (50 + floor(r3 * 5000))::bigint AS dur
      FROM (SELECT g, random() AS r1, random() AS r2, random() AS r3 FROM generate_series(1, $1) g) r) s`

// benchList loads rows tasks, then times taskservice.List (the page query and
// the capped count, as GET /api/v1/tasks runs them) for each filter: the first
// page and a page twenty pages deep, median and p95 of repeated runs.
func benchList(ctx context.Context, dbURL, redisAddr string, rows int) error {
	const dbName = "bench_api_list"
	u, err := freshDatabase(ctx, dbURL, dbName)
	if err != nil {
		return err
	}
	if os.Getenv("API_BENCH_KEEP_DB") == "" {
		defer dropDatabase(dbURL, dbName)
	}
	db, err := store.Open(store.Options{URL: u})
	if err != nil {
		return err
	}
	sqlDB, _ := db.DB()
	defer sqlDB.Close()

	start := time.Now()
	if err := loadTasks(ctx, db, rows); err != nil {
		return err
	}
	fmt.Printf("loaded %d tasks in %.1f s (rows, indexes, VACUUM ANALYZE)\n", rows, time.Since(start).Seconds())

	opt := asynq.RedisClientOpt{Addr: redisAddr, DB: benchRedisAPI}
	ac, insp := asynq.NewClient(opt), asynq.NewInspector(opt)
	defer ac.Close()
	defer insp.Close()
	svc, err := taskservice.New(db, ac, insp, zap.NewNop(), taskservice.Options{})
	if err != nil {
		return err
	}
	defer svc.Close()

	admin := auth.Principal{ID: "key_admin", Role: auth.Admin}
	owner := auth.Principal{ID: "key_7", Role: auth.Operator}
	dayAgo := time.Now().Add(-24 * time.Hour)
	weekAgo, twoWeeksAgo := time.Now().Add(-7*24*time.Hour), time.Now().Add(-14*24*time.Hour)
	cases := []struct {
		name string
		p    auth.Principal
		q    taskservice.ListQuery
	}{
		{"admin: no filter", admin, taskservice.ListQuery{}},
		{"admin: status=pending", admin, taskservice.ListQuery{Statuses: []string{"pending"}}},
		{"admin: status=completed", admin, taskservice.ListQuery{Statuses: []string{"completed"}}},
		{"admin: status=pending,running,retrying", admin, taskservice.ListQuery{Statuses: []string{"pending", "running", "retrying"}}},
		{"admin: type=send_email", admin, taskservice.ListQuery{Type: "send_email"}},
		{"admin: priority=critical", admin, taskservice.ListQuery{Priority: "critical"}},
		{"admin: created_after=-1d", admin, taskservice.ListQuery{CreatedAfter: &dayAgo}},
		{"admin: created in [-14d,-7d)", admin, taskservice.ListQuery{CreatedAfter: &twoWeeksAgo, CreatedBefore: &weekAgo}},
		{"admin: created_at ascending", admin, taskservice.ListQuery{Sort: "created_at"}},
		{"admin: sort=scheduled_for", admin, taskservice.ListQuery{Sort: "scheduled_for"}},
		{"admin: -scheduled_for status=failed", admin, taskservice.ListQuery{Sort: "-scheduled_for", Statuses: []string{"failed"}}},
		{"admin: -scheduled_for type=backup_data", admin, taskservice.ListQuery{Sort: "-scheduled_for", Type: "backup_data"}},
		{"owner: no filter", owner, taskservice.ListQuery{}},
		{"owner: status=failed", owner, taskservice.ListQuery{Statuses: []string{"failed"}}},
		{"owner: status=pending,running", owner, taskservice.ListQuery{Statuses: []string{"pending", "running"}}},
		{"owner: type=send_email", owner, taskservice.ListQuery{Type: "send_email"}},
		{"owner: priority=low", owner, taskservice.ListQuery{Priority: "low"}},
		{"owner: sort=scheduled_for", owner, taskservice.ListQuery{Sort: "scheduled_for"}},
	}
	fmt.Printf("GET /api/v1/tasks pages of 50 over %d tasks (taskservice.List: page query + capped count), ms\n", rows)
	fmt.Printf("%s %9s %9s %9s %9s %9s\n", pad("filter", 42), "first p50", "first p95", "deep p50", "deep p95", "total")
	worst := time.Duration(0)
	for _, tc := range cases {
		first, page, err := timeList(ctx, svc, tc.p, tc.q)
		if err != nil {
			return fmt.Errorf("%s: %w", tc.name, err)
		}
		q := tc.q
		for range 20 {
			if page.NextCursor == "" {
				break
			}
			q.Cursor = page.NextCursor
			if page, err = svc.List(ctx, tc.p, q); err != nil {
				return err
			}
		}
		deep, _, err := timeList(ctx, svc, tc.p, q)
		if err != nil {
			return err
		}
		total := fmt.Sprint(page.Total)
		if page.TotalIsEstimate {
			total = "~" + total
		}
		fmt.Printf("%s %9.2f %9.2f %9.2f %9.2f %9s\n", pad(tc.name, 42), ms(first[0]), ms(first[1]), ms(deep[0]), ms(deep[1]), total)
		worst = max(worst, first[1], deep[1])
	}
	fmt.Printf("worst p95: %.2f ms (target: under 10 ms)\n", ms(worst))
	return nil
}

// timeList runs List 25 times after one warm-up and returns the median and p95.
func timeList(ctx context.Context, svc *taskservice.Service, p auth.Principal, q taskservice.ListQuery) ([2]time.Duration, taskservice.Page, error) {
	page, err := svc.List(ctx, p, q)
	if err != nil {
		return [2]time.Duration{}, page, err
	}
	d := make([]time.Duration, 25)
	for i := range d {
		t0 := time.Now()
		if _, err := svc.List(ctx, p, q); err != nil {
			return [2]time.Duration{}, page, err
		}
		d[i] = time.Since(t0)
	}
	slices.Sort(d)
	return [2]time.Duration{d[len(d)/2], d[len(d)*95/100]}, page, nil
}

// loadTasks writes rows tasks the fast way: drop the secondary indexes, INSERT ...
// SELECT generate_series, recreate the indexes, VACUUM ANALYZE; on one
// connection without the pool's statement_timeout (ten million rows take
// minutes).
func loadTasks(ctx context.Context, db *gorm.DB, rows int) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	exec := func(q string) error { _, err := conn.ExecContext(ctx, q); return err }
	if err := exec(`SET statement_timeout = 0`); err != nil {
		return err
	}
	type index struct{ name, def string }
	var idx []index
	res, err := conn.QueryContext(ctx, `SELECT indexname, indexdef FROM pg_indexes
		WHERE schemaname = 'public' AND tablename = 'tasks' AND indexname <> 'tasks_pkey'`)
	if err != nil {
		return err
	}
	for res.Next() {
		var i index
		if err := res.Scan(&i.name, &i.def); err != nil {
			res.Close()
			return err
		}
		idx = append(idx, i)
	}
	res.Close()
	if err := res.Err(); err != nil {
		return err
	}
	for _, i := range idx {
		if err := exec(`DROP INDEX ` + i.name); err != nil {
			return err
		}
	}
	if err := exec(`SET maintenance_work_mem = '256MB'`); err != nil {
		return err
	}
	if err := exec(strings.ReplaceAll(loadSQL, "$1", fmt.Sprint(rows))); err != nil {
		return fmt.Errorf("load rows: %w", err)
	}
	for _, i := range idx {
		if err := exec(i.def); err != nil {
			return fmt.Errorf("recreate %s: %w", i.name, err)
		}
	}
	return exec(`VACUUM ANALYZE tasks`)
}

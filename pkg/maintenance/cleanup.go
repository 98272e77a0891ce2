package maintenance

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/config"
	"github.com/taskforge/taskforge/pkg/job"
	"github.com/taskforge/taskforge/pkg/result"
	"github.com/taskforge/taskforge/pkg/store"
	"github.com/taskforge/taskforge/pkg/taskpb"
	"github.com/taskforge/taskforge/pkg/tasks"
)

// terminal is the SQL list of terminal task states: only such tasks are ever
// deleted.
const terminal = `('completed', 'failed', 'cancelled')`

// CleanupOptions configure cleanup_old_data.
type CleanupOptions struct {
	// Retention gives each target's default age in days.
	Retention config.RetentionConfig
	// BatchSize is the number of rows one statement deletes. If zero, 5000.
	BatchSize int
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
}

// CleanupTarget is one target's outcome in cleanup_old_data's result.
type CleanupTarget struct {
	// Rows is the number of rows deleted (or, in a dry run, that would be).
	Rows int64 `json:"rows"`
	// OlderThanDays and Cutoff say which rows were old enough.
	OlderThanDays int       `json:"older_than_days"`
	Cutoff        time.Time `json:"cutoff"`
	// Files is the number of result files removed (results and tasks
	// targets); in a dry run, the number of result rows whose files would go.
	Files int64 `json:"files,omitempty"`
	// Uploads is the number of expired or old uploads deleted with their
	// files (results target; their files are counted in Files too).
	Uploads int64 `json:"uploads,omitempty"`
	// Cascaded counts, per table, the rows deleted with the target's rows
	// through an ON DELETE CASCADE foreign key (a task's attempts, logs,
	// callbacks and deliveries), beyond what an earlier target of the same
	// run deleted.
	Cascaded map[string]int64 `json:"cascaded,omitempty"`
	// Skipped says why the target was not run.
	Skipped string `json:"skipped,omitempty"`
}

// CleanupResult is cleanup_old_data's result. A dry run's targets hold
// exactly what a real run with the same parameters would then delete, were
// nothing else to change in between: the same counts per target, the files
// and the cascaded rows, computed in order (a row an earlier target deletes
// is not counted again by a later one) without writing anything.
type CleanupResult struct {
	DryRun  bool                     `json:"dry_run"`
	Targets map[string]CleanupTarget `json:"targets"`
	// Refused, in a dry run, says why a real run with the same parameters
	// would be refused (the audit log's minimum retention).
	Refused string `json:"refused,omitempty"`
}

// cleanupOrder runs results first (they reference tasks), then task logs, then
// tasks, then the rest.
var cleanupOrder = []string{"results", "task_logs", "tasks", "prices", "audit", "trigger_events"}

// targetTable is the table behind each target.
func targetTable(target string) string {
	if target == "audit" {
		return "audit_log"
	}
	return target
}

func (o CleanupOptions) days(target string) int {
	switch target {
	case "tasks":
		return o.Retention.Tasks
	case "task_logs":
		return o.Retention.TaskLogs
	case "prices":
		return o.Retention.Prices
	case "results":
		return o.Retention.Results
	case "audit":
		return o.Retention.Audit
	case "trigger_events":
		// Processed change events and delivery records live as long as
		// the tasks they made.
		return o.Retention.Tasks
	}
	return 0
}

// cleaner runs one cleanup task.
type cleaner struct {
	db      *sql.DB
	results *result.Store
	batch   int
	r       job.Reporter
	now     time.Time
	// cascade lists the tables whose rows go with a deleted task.
	cascade []cascadeFK
	// done holds the targets of this run already handled, for a dry run's
	// later targets.
	done map[string]CleanupTarget
}

// cascadeFK is a single-column foreign key to tasks with ON DELETE CASCADE.
type cascadeFK struct {
	table, quotedTable, quotedColumn string
}

// cascadesToTasks lists, from the catalog, the foreign keys that delete
// rows with their task, so that migrations adding such tables are counted
// without naming them here.
func cascadesToTasks(ctx context.Context, db *sql.DB) ([]cascadeFK, error) {
	rows, err := db.QueryContext(ctx, `SELECT c.relname, quote_ident(c.relname), quote_ident(a.attname)
		FROM pg_constraint k
		JOIN pg_class c ON c.oid = k.conrelid
		JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
		WHERE k.contype = 'f' AND k.confrelid = 'tasks'::regclass AND k.confdeltype = 'c'
		  AND cardinality(k.conkey) = 1
		ORDER BY c.relname, a.attname`)
	if err != nil {
		return nil, fmt.Errorf("maintenance: cascades of tasks: %w", store.Translate(err))
	}
	defer rows.Close()
	var out []cascadeFK
	for rows.Next() {
		var f cascadeFK
		if err := rows.Scan(&f.table, &f.quotedTable, &f.quotedColumn); err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// ran reports whether an earlier target of this run deleted (or, in a dry
// run, counted) rows, and with which cutoff.
func (c *cleaner) ran(target string) (time.Time, bool) {
	t, ok := c.done[target]
	return t.Cutoff, ok && t.Skipped == ""
}

// NewCleanup returns the cleanup_old_data handler. results may be nil when no
// result storage is configured: the results target is then skipped, and tasks
// that still have results are kept.
func NewCleanup(db *gorm.DB, results *result.Store, o CleanupOptions) func(context.Context, job.Reporter, *taskpb.CleanupOldDataParams) error {
	if o.BatchSize <= 0 {
		o.BatchSize = 5000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return func(ctx context.Context, r job.Reporter, p *taskpb.CleanupOldDataParams) error {
		sdb, err := sqlDB(db)
		if err != nil {
			return err
		}
		for _, t := range p.GetTargets() {
			if !slices.Contains(tasks.CleanupTargets, t) {
				return job.Permanent(fmt.Errorf("maintenance: unknown cleanup target %q", t))
			}
		}
		if p.GetOlderThanDays() < 0 {
			return job.Permanent(fmt.Errorf("maintenance: older_than_days must not be negative"))
		}
		// However the task was made (API, schedule, an old queued message),
		// the audit log is never pruned below its minimum retention.
		minAudit := o.Retention.AuditMin
		if minAudit <= 0 {
			minAudit = config.Defaults().Retention.AuditMin
		}
		if errs := tasks.CheckAuditRetention(p, minAudit); len(errs) > 0 {
			return job.Permanent(fmt.Errorf("maintenance: %s %s", errs[0].Field, errs[0].Message))
		}
		refused := ""
		if p.GetDryRun() {
			real := &taskpb.CleanupOldDataParams{OlderThanDays: p.GetOlderThanDays(), Targets: p.GetTargets()}
			if errs := tasks.CheckAuditRetention(real, minAudit); len(errs) > 0 {
				refused = errs[0].Field + " " + errs[0].Message
			}
		}
		var targets []string
		for _, t := range cleanupOrder {
			if len(p.GetTargets()) == 0 || slices.Contains(p.GetTargets(), t) {
				targets = append(targets, t)
			}
		}
		c := &cleaner{db: sdb, results: results, batch: o.BatchSize, r: r, now: o.Now().UTC()}
		tables := make([]string, len(targets))
		for i, t := range targets {
			tables[i] = targetTable(t)
		}
		exist, err := existingTables(ctx, sdb, tables)
		if err != nil {
			return err
		}
		if exist["tasks"] {
			if c.cascade, err = cascadesToTasks(ctx, sdb); err != nil {
				return err
			}
		}
		out := CleanupResult{DryRun: p.GetDryRun(), Targets: map[string]CleanupTarget{}, Refused: refused}
		c.done = out.Targets
		for i, target := range targets {
			days := int(p.GetOlderThanDays())
			if days == 0 {
				days = o.days(target)
			}
			res := CleanupTarget{OlderThanDays: days, Cutoff: c.now.AddDate(0, 0, -days)}
			r.Progress(float64(i)/float64(len(targets)), "cleanup "+target, "")
			switch {
			case !exist[targetTable(target)]:
				res.Skipped = "table " + targetTable(target) + " does not exist"
				r.Log(job.Warn, "cleanup target skipped: its table does not exist",
					map[string]any{"target": target, "table": targetTable(target)})
			case target == "results" && results == nil:
				res.Skipped = "no result storage configured"
				r.Log(job.Warn, "cleanup target skipped: no result storage", map[string]any{"target": target})
			case p.GetDryRun():
				if err := c.count(ctx, target, &res); err != nil {
					return err
				}
			default:
				if err := c.run(ctx, target, &res); err != nil {
					return err
				}
			}
			out.Targets[target] = res
			verb := "deleted"
			if p.GetDryRun() {
				verb = "would delete"
			}
			if res.Skipped == "" {
				r.Log(job.Info, "cleanup target done", map[string]any{
					"target": target, "rows": res.Rows, "files": res.Files, "cutoff": res.Cutoff, "dry_run": p.GetDryRun(),
				})
				r.Progress(float64(i+1)/float64(len(targets)), "cleanup "+target,
					fmt.Sprintf("%s: %s %d rows older than %d days", target, verb, res.Rows, days))
			}
		}
		r.Progress(1, "done", "")
		return r.SetResult(out)
	}
}

// count fills in what a target would delete, after the run's earlier
// targets: the same selections as the deletions, read only.
func (c *cleaner) count(ctx context.Context, target string, res *CleanupTarget) error {
	cutoff := res.Cutoff
	one := func(q string, args ...any) (int64, error) {
		var n int64
		if err := c.db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			return 0, fmt.Errorf("maintenance: count %s: %w", target, store.Translate(err))
		}
		return n, nil
	}
	var err error
	switch target {
	case "tasks":
		doomed := c.doomedTasks()
		if res.Rows, err = one(`SELECT count(*) FROM (`+doomed+`) d`, cutoff); err != nil {
			return err
		}
		if c.results != nil {
			q, args := `SELECT count(*) FROM results WHERE task_id IN (`+doomed+`)`, []any{cutoff}
			if rc, ok := c.ran("results"); ok {
				// Rows the results target deleted are not there any more.
				q, args = q+` AND NOT (created_at < $2 OR expires_at <= $3)`, append(args, rc, c.now)
			}
			if res.Files, err = one(q, args...); err != nil {
				return err
			}
		}
		for _, f := range c.cascade {
			q, args := `SELECT count(*) FROM `+f.quotedTable+` WHERE `+f.quotedColumn+` IN (`+doomed+`)`, []any{cutoff}
			if lc, ok := c.ran("task_logs"); ok && f.table == "task_logs" {
				// The doomed tasks are terminal: the task_logs target took
				// their lines older than its cutoff.
				q, args = q+` AND NOT (ts < $2)`, append(args, lc)
			}
			n, err := one(q, args...)
			if err != nil {
				return err
			}
			if n > 0 {
				if res.Cascaded == nil {
					res.Cascaded = map[string]int64{}
				}
				res.Cascaded[f.table] = n
			}
		}
		return nil
	case "task_logs":
		res.Rows, err = one(`SELECT count(*) FROM task_logs l JOIN tasks t ON t.id = l.task_id WHERE l.ts < $1 AND t.status IN `+terminal, cutoff)
	case "prices":
		res.Rows, err = one(`SELECT count(*) FROM prices WHERE date < $1::date`, cutoff.Format(time.DateOnly))
	case "results":
		res.Rows, err = one(`SELECT count(*) FROM results WHERE created_at < $1 OR expires_at <= $2`, cutoff, c.now)
		if err != nil {
			return err
		}
		res.Uploads, err = one(`SELECT count(*) FROM uploads WHERE created_at < $1 OR expires_at <= $2`, cutoff, c.now)
		// Each row's file goes with it.
		res.Files = res.Rows + res.Uploads
	case "audit":
		res.Rows, err = one(`SELECT count(*) FROM audit_log WHERE ts < $1`, cutoff)
	case "trigger_events":
		res.Rows, err = one(`SELECT (SELECT count(*) FROM trigger_events WHERE processed_at < $1)
			+ (SELECT count(*) FROM trigger_deliveries WHERE received_at < $1)`, cutoff)
	}
	return err
}

// doomedTasks selects the ids of the tasks the tasks target deletes ($1 the
// cutoff): terminal and old enough; without result storage, only those
// without results (their files could not be removed).
func (c *cleaner) doomedTasks() string {
	q := `SELECT id FROM tasks WHERE status IN ` + terminal + ` AND COALESCE(completed_at, updated_at) < $1`
	if c.results == nil {
		q += ` AND NOT EXISTS (SELECT 1 FROM results WHERE results.task_id = tasks.id)`
	}
	return q
}

// run deletes a target's old rows in batches, reporting after each batch and
// stopping between batches when ctx ends.
func (c *cleaner) run(ctx context.Context, target string, res *CleanupTarget) error {
	for batch := 1; ; batch++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		var n, files int64
		var err error
		more := false
		switch target {
		case "tasks":
			n, files, err = c.deleteTasks(ctx, res)
		case "results":
			n, files, err = c.deleteResults(ctx, res.Cutoff)
			if err == nil {
				var u, uf int64
				u, uf, err = c.deleteUploads(ctx, res.Cutoff)
				res.Uploads += u
				files += uf
				more = u >= int64(c.batch)
			}
		case "task_logs":
			n, err = c.exec(ctx, `DELETE FROM task_logs WHERE id IN (
				SELECT l.id FROM task_logs l JOIN tasks t ON t.id = l.task_id
				WHERE l.ts < $1 AND t.status IN `+terminal+` ORDER BY l.id LIMIT $2)`, res.Cutoff, c.batch)
		case "prices":
			n, err = c.exec(ctx, `DELETE FROM prices WHERE ctid IN (
				SELECT ctid FROM prices WHERE date < $1::date LIMIT $2) AND date < $1::date`,
				res.Cutoff.Format(time.DateOnly), c.batch)
		case "audit":
			n, err = c.exec(ctx, `DELETE FROM audit_log WHERE id IN (
				SELECT id FROM audit_log WHERE ts < $1 ORDER BY id LIMIT $2)`, res.Cutoff, c.batch)
		case "trigger_events":
			// Only processed events: a pending one is a change still to
			// become a task, however old.
			n, err = c.exec(ctx, `DELETE FROM trigger_events WHERE id IN (
				SELECT id FROM trigger_events WHERE processed_at < $1 ORDER BY id LIMIT $2)`, res.Cutoff, c.batch)
			if err == nil && n < int64(c.batch) {
				var d int64
				d, err = c.exec(ctx, `DELETE FROM trigger_deliveries WHERE id IN (
					SELECT id FROM trigger_deliveries WHERE received_at < $1 ORDER BY id LIMIT $2)`, res.Cutoff, c.batch-int(n))
				n += d
			}
		}
		if err != nil {
			return fmt.Errorf("maintenance: cleanup %s: %w", target, store.Translate(err))
		}
		res.Rows += n
		res.Files += files
		if n > 0 {
			c.r.Log(job.Debug, "cleanup batch deleted", map[string]any{"target": target, "batch": batch, "rows": n})
		}
		if n < int64(c.batch) && !more {
			return nil
		}
	}
}

// deleteUploads deletes one batch of expired or old uploads (they expire
// with the results): rows in a transaction, then their files.
func (c *cleaner) deleteUploads(ctx context.Context, cutoff time.Time) (int64, int64, error) {
	var doomed []result.Result
	err := c.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `DELETE FROM uploads WHERE id IN (SELECT id FROM uploads
			WHERE created_at < $1 OR expires_at <= $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
			RETURNING id, backend, key`, cutoff, c.now, c.batch)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r result.Result
			if err := rows.Scan(&r.ID, &r.Backend, &r.Key); err != nil {
				return err
			}
			doomed = append(doomed, r)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, 0, err
	}
	var files int64
	for _, r := range doomed {
		if err := c.results.DeleteFile(context.WithoutCancel(ctx), r); err != nil {
			c.r.Log(job.Warn, "upload file not removed", map[string]any{"upload_id": r.ID, "error": err.Error()})
			continue
		}
		files++
	}
	return int64(len(doomed)), files, nil
}

func (c *cleaner) exec(ctx context.Context, q string, args ...any) (int64, error) {
	r, err := c.db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

// deleteTasks deletes one batch of old terminal tasks (their attempts, logs and
// callbacks cascade) together with their results' rows, then the results' files.
func (c *cleaner) deleteTasks(ctx context.Context, res *CleanupTarget) (int64, int64, error) {
	var doomed []result.Result
	var n int64
	var gone []string
	cascaded := map[string]int64{}
	err := c.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, c.doomedTasks()+`
			ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED`, res.Cutoff, c.batch)
		if err != nil {
			return err
		}
		ids, err := scanStrings(rows)
		if err != nil || len(ids) == 0 {
			return err
		}
		gone = ids
		// What goes with the tasks, counted under their lock.
		for _, f := range c.cascade {
			var k int64
			err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+f.quotedTable+` WHERE `+f.quotedColumn+` = ANY($1)`, ids).Scan(&k)
			if err != nil {
				return err
			}
			cascaded[f.table] = k
		}
		if c.results != nil {
			if doomed, err = deleteResultRows(ctx, tx, `task_id = ANY($1)`, ids); err != nil {
				return err
			}
		}
		// The status is checked again: a row is never deleted unless terminal.
		r, err := tx.ExecContext(ctx, `DELETE FROM tasks WHERE id = ANY($1) AND status IN `+terminal, ids)
		if err != nil {
			return err
		}
		n, err = r.RowsAffected()
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	for table, k := range cascaded {
		if k > 0 {
			if res.Cascaded == nil {
				res.Cascaded = map[string]int64{}
			}
			res.Cascaded[table] += k
		}
	}
	c.forget(ctx, gone)
	return n, c.removeFiles(ctx, doomed), nil
}

// deleteResults deletes one batch of expired or old results: rows in a
// transaction, then their files.
func (c *cleaner) deleteResults(ctx context.Context, cutoff time.Time) (int64, int64, error) {
	var doomed []result.Result
	err := c.tx(ctx, func(tx *sql.Tx) error {
		var err error
		doomed, err = deleteResultRows(ctx, tx, `id IN (SELECT id FROM results WHERE created_at < $1 OR expires_at <= $2
			ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)`, cutoff, c.now, c.batch)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	return int64(len(doomed)), c.removeFiles(ctx, doomed), nil
}

func deleteResultRows(ctx context.Context, tx *sql.Tx, where string, args ...any) ([]result.Result, error) {
	rows, err := tx.QueryContext(ctx, `DELETE FROM results WHERE `+where+` RETURNING id, backend, key`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []result.Result
	for rows.Next() {
		var r result.Result
		if err := rows.Scan(&r.ID, &r.Backend, &r.Key); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// forget drops the cached results of the tasks ids (deleted, or with a file
// deleted); a failure is logged: the entry lives out the cache's TTL.
func (c *cleaner) forget(ctx context.Context, ids []string) {
	if c.results == nil || len(ids) == 0 {
		return
	}
	if err := c.results.Forget(context.WithoutCancel(ctx), ids...); err != nil {
		c.r.Log(job.Warn, "cached results not dropped", map[string]any{"tasks": len(ids), "error": err.Error()})
	}
}

// removeFiles deletes result files whose rows are gone (and drops their
// tasks' cached results). A failure leaves an orphaned file, logged, rather
// than a row without a file.
func (c *cleaner) removeFiles(ctx context.Context, rs []result.Result) int64 {
	var n int64
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.TaskID
	}
	c.forget(ctx, ids)
	for _, r := range rs {
		if err := c.results.DeleteFile(context.WithoutCancel(ctx), r); err != nil {
			c.r.Log(job.Warn, "result file not removed", map[string]any{"result_id": r.ID, "error": err.Error()})
			continue
		}
		n++
	}
	return n
}

func (c *cleaner) tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

package audit

import (
	"context"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/groupcommit"
	"github.com/taskforge/taskforge/pkg/store"
)

// newWriter returns the committer that inserts audit rows in batches
// (pkg/groupcommit) without weakening Record's promise: each caller waits
// until its own row is committed. Under load (an audit row per mutation; a
// created task's rides on the task's own statement instead, see NewRow)
// the audit log costs a share of one round trip per request instead of a
// round trip each; when idle a row is written alone, with no added latency.
// One committer at a time: rows that arrive while a batch is written wait for
// the next, so batches grow with the load instead of commits.
func newWriter(db *gorm.DB) *groupcommit.Committer[*store.AuditEntry, struct{}] {
	return groupcommit.New(groupcommit.Options{Workers: 1, Max: 128}, func(ctx context.Context, batch []*store.AuditEntry) ([]struct{}, error) {
		// Aggregated rows of one key are merged here: one INSERT may not
		// update the same row twice.
		rows := make([]*store.AuditEntry, 0, len(batch))
		merged := map[string]*store.AuditEntry{}
		for _, row := range batch {
			if k := row.AggregateKey; k != nil {
				if first, ok := merged[*k]; ok {
					first.Count += row.Count
					continue
				}
				merged[*k] = row
			}
			rows = append(rows, row)
		}
		// Aggregated rows are upserted in key order, so two replicas'
		// batches lock the rows they share in the same order (see the lock
		// order in docs/DEVELOPING.md).
		slices.SortStableFunc(rows, func(a, b *store.AuditEntry) int {
			return strings.Compare(aggregateKey(a), aggregateKey(b))
		})
		err := store.RetryLockConflicts(ctx, func() error { return insert(ctx, db, rows) })
		return make([]struct{}, len(batch)), err
	})
}

// aggregateKey is e's aggregate key, or "" for a row of its own.
func aggregateKey(e *store.AuditEntry) string {
	if e.AggregateKey == nil {
		return ""
	}
	return *e.AggregateKey
}

// insertSQL writes a batch as one statement of arrays (no per-row SQL, no
// ORM reflection).
const insertSQL = `
INSERT INTO audit_log (ts, actor, action, resource_type, resource_id, outcome, client_ip, request_id, details, count, aggregate_key)
SELECT ts, actor, action, resource_type, resource_id, outcome, client_ip, request_id, details::jsonb, count, aggregate_key
FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::text[], $10::int[], $11::text[])
     AS t(ts, actor, action, resource_type, resource_id, outcome, client_ip, request_id, details, count, aggregate_key)
ON CONFLICT (aggregate_key) DO UPDATE SET count = audit_log.count + EXCLUDED.count`

func insert(ctx context.Context, db *gorm.DB, rows []*store.AuditEntry) error {
	n := len(rows)
	ts := make([]time.Time, n)
	actors, actions, rtypes, rids, outcomes, ips, rqids, details := make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	counts := make([]int, n)
	keys := make([]*string, n)
	for i, r := range rows {
		ts[i], actors[i], actions[i], rtypes[i], rids[i] = r.TS, r.Actor, r.Action, r.ResourceType, r.ResourceID
		outcomes[i], ips[i], rqids[i], counts[i], keys[i] = r.Outcome, r.ClientIP, r.RequestID, r.Count, r.AggregateKey
		details[i] = string(r.Details)
		if len(r.Details) == 0 {
			details[i] = "{}"
		}
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	_, err = sqlDB.ExecContext(ctx, insertSQL, ts, actors, actions, rtypes, rids, outcomes, ips, rqids, details, counts, keys)
	return err
}

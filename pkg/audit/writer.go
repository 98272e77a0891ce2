package audit

import (
	"context"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/taskforge/taskforge/pkg/store"
)

// writer inserts audit rows in batches without weakening Record's promise: each
// caller waits until its own row is committed. Its goroutines take one row,
// drain whatever else is waiting (up to maxBatch) and write them with one
// multi-row INSERT, so under load (an audit row per created task) the audit log
// costs a share of one round trip per request instead of a round trip each;
// when idle a row is written alone, with no added latency.
type writer struct {
	db       *gorm.DB
	in       chan *writeReq
	maxBatch int
}

type writeReq struct {
	ctx  context.Context
	row  *store.AuditEntry
	done chan error
}

const (
	writers       = 2
	writeMaxBatch = 128
)

func newWriter(db *gorm.DB) *writer {
	// Batches vary in size: prepared statements per size would pile up.
	w := &writer{db: db.Session(&gorm.Session{PrepareStmt: false}), in: make(chan *writeReq, writers*writeMaxBatch), maxBatch: writeMaxBatch}
	for range writers {
		go w.run()
	}
	return w
}

// write queues row and waits until it is committed or ctx ends.
func (w *writer) write(ctx context.Context, row *store.AuditEntry) error {
	req := &writeReq{ctx: ctx, row: row, done: make(chan error, 1)}
	select {
	case w.in <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run writes batches for as long as the process lives; the writers hold no
// resources beyond the database handle, so they need no stopping.
func (w *writer) run() {
	batch := make([]*writeReq, 0, w.maxBatch)
	rows := make([]*store.AuditEntry, 0, w.maxBatch)
	for first := range w.in {
		batch = append(batch[:0], first)
	drain:
		for len(batch) < w.maxBatch {
			select {
			case r := <-w.in:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		rows = rows[:0]
		ctx := batch[0].ctx
		// Aggregated rows of one key are merged here: one INSERT may not
		// update the same row twice.
		merged := map[string]*store.AuditEntry{}
		for _, r := range batch {
			if k := r.row.AggregateKey; k != nil {
				if first, ok := merged[*k]; ok {
					first.Count += r.row.Count
					continue
				}
				merged[*k] = r.row
			}
			rows = append(rows, r.row)
			// The batch is written under the latest deadline among its rows.
			if d, ok := r.ctx.Deadline(); ok {
				if cur, ok := ctx.Deadline(); ok && d.After(cur) {
					ctx = r.ctx
				}
			}
		}
		err := w.db.WithContext(ctx).Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "aggregate_key"}},
			DoUpdates: clause.Assignments(map[string]any{"count": gorm.Expr("audit_log.count + EXCLUDED.count")}),
		}).Create(&rows).Error
		for _, r := range batch {
			r.done <- err
		}
	}
}

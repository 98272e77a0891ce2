package taskservice

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/taskforge/taskforge/pkg/store"
)

// inserter writes task rows in batches: each of its goroutines takes one row,
// drains whatever else is waiting (up to maxBatch) and writes them all with one
// INSERT ... SELECT FROM unnest(...). Under load, batches form by themselves;
// when idle, a row is written alone with no added latency. One GORM insert per
// request measured ~3.5–5.7k/s on the target machine; batching removes that cap.
type inserter struct {
	db       *gorm.DB
	in       chan *insertReq
	maxBatch int
	linger   time.Duration
	busy     atomic.Int32
	done     chan struct{}
}

type insertReq struct {
	ctx  context.Context
	row  *store.Task
	resp chan insertResp
}

type insertResp struct {
	inserted bool
	err      error
}

func newInserter(db *gorm.DB, workers, maxBatch int, linger time.Duration) *inserter {
	ins := &inserter{db: db, in: make(chan *insertReq, maxBatch*workers), maxBatch: maxBatch, linger: linger, done: make(chan struct{})}
	for i := 0; i < workers; i++ {
		go ins.run()
	}
	return ins
}

func (ins *inserter) close() {
	select {
	case <-ins.done:
	default:
		close(ins.done)
	}
}

// insert writes row and reports whether it was inserted (false: a unique key —
// idempotency key or schedule fire — already had a row).
func (ins *inserter) insert(ctx context.Context, row *store.Task) (bool, error) {
	req := &insertReq{ctx: ctx, row: row, resp: make(chan insertResp, 1)}
	select {
	case ins.in <- req:
	case <-ctx.Done():
		return false, ctx.Err()
	case <-ins.done:
		return false, fmt.Errorf("%w: service closed", ErrUnavailable)
	}
	select {
	case r := <-req.resp:
		return r.inserted, r.err
	case <-ctx.Done():
		// The row may still be written; the caller's request has ended, and
		// the reconciler treats an unqueued pending row as an orphan to enqueue.
		return false, ctx.Err()
	}
}

func (ins *inserter) run() {
	batch := make([]*insertReq, 0, ins.maxBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		select {
		case <-ins.done:
			return
		case first := <-ins.in:
			batch = append(batch[:0], first)
		drain:
			for len(batch) < ins.maxBatch {
				select {
				case r := <-ins.in:
					batch = append(batch, r)
				default:
					break drain
				}
			}
			// Under load (rows were already waiting, or another inserter
			// is writing), wait a moment for more: fewer, larger inserts
			// cost PostgreSQL and this process less per row. A lone row on
			// an idle service is written at once.
			if ins.linger > 0 && (len(batch) > 1 || ins.busy.Load() > 0) {
				linger.Reset(ins.linger)
			gather:
				for len(batch) < ins.maxBatch {
					select {
					case r := <-ins.in:
						batch = append(batch, r)
					case <-linger.C:
						break gather
					}
				}
				linger.Stop()
			}
			ins.busy.Add(1)
			ins.write(batch)
			ins.busy.Add(-1)
		}
	}
}

const insertSQL = `
INSERT INTO tasks (id, type, status, priority, params, key_id, created_by, idempotency_key, request_hash,
                   created_at, updated_at, scheduled_for, messages, max_retries, retry_policy,
                   timeout_seconds, estimated_duration, callback_url, schedule_id, fire_time)
SELECT id, type, 'pending', priority, params::jsonb, key_id, created_by, idem, hash,
       created_at, created_at, scheduled_for, '[]'::jsonb, max_retries, retry_policy::jsonb,
       timeout_seconds, estimated_duration, callback_url, schedule_id, fire_time
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::timestamptz[], $10::timestamptz[], $11::int[], $12::text[], $13::int[], $14::int[],
            $15::text[], $16::text[], $17::timestamptz[])
     AS t(id, type, priority, params, key_id, created_by, idem, hash, created_at, scheduled_for,
          max_retries, retry_policy, timeout_seconds, estimated_duration, callback_url, schedule_id, fire_time)
ON CONFLICT DO NOTHING
RETURNING id`

func (ins *inserter) write(batch []*insertReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if r.ctx.Err() == nil {
			live = append(live, r)
		} else {
			r.resp <- insertResp{err: r.ctx.Err()}
		}
	}
	if len(live) == 0 {
		return
	}
	n := len(live)
	var (
		ids, types, prios, params, keys, owners, hashes, policies = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		idems, callbacks, schedules                               = make([]*string, n), make([]*string, n), make([]*string, n)
		created, scheduled                                        = make([]time.Time, n), make([]time.Time, n)
		fires                                                     = make([]*time.Time, n)
		retries, timeouts, estimates                              = make([]int, n), make([]int, n), make([]int, n)
	)
	for i, r := range live {
		t := r.row
		ids[i], types[i], prios[i], params[i], keys[i], owners[i] = t.ID, t.Type, t.Priority, string(t.Params), t.KeyID, t.CreatedBy
		idems[i], hashes[i], created[i], scheduled[i] = t.IdempotencyKey, t.RequestHash, t.CreatedAt, t.ScheduledFor
		retries[i], policies[i], timeouts[i], estimates[i] = t.MaxRetries, string(t.RetryPolicy), t.TimeoutSeconds, t.EstimatedDuration
		callbacks[i], schedules[i], fires[i] = t.CallbackURL, t.ScheduleID, t.FireTime
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sqlDB, err := ins.db.DB()
	inserted := map[string]bool{}
	if err == nil {
		var rows interface {
			Next() bool
			Scan(...any) error
			Close() error
			Err() error
		}
		rows, err = sqlDB.QueryContext(ctx, insertSQL, ids, types, prios, params, keys, owners, idems, hashes,
			created, scheduled, retries, policies, timeouts, estimates, callbacks, schedules, fires)
		if err == nil {
			for rows.Next() {
				var id string
				if err = rows.Scan(&id); err != nil {
					break
				}
				inserted[id] = true
			}
			if err == nil {
				err = rows.Err()
			}
			rows.Close()
		}
	}
	if err != nil {
		err = translate("insert tasks", err)
	}
	for _, r := range live {
		r.resp <- insertResp{inserted: inserted[r.row.ID], err: err}
	}
}

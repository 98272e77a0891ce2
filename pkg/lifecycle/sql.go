package lifecycle

import (
	"strings"

	"github.com/taskforge/taskforge/pkg/tasks"
)

// in renders states as an SQL list of literals ('pending', 'running').
// States are the package's own constants, never input.
func in(states []tasks.Status) string {
	q := make([]string, len(states))
	for i, s := range states {
		q[i] = "'" + s + "'"
	}
	return strings.Join(q, ", ")
}

// terminal lists the terminal states.
var terminal = func() []tasks.Status {
	var out []tasks.Status
	for _, s := range tasks.Statuses {
		if tasks.IsTerminal(s) {
			out = append(out, s)
		}
	}
	return out
}()

// unstarted are the states of a task no attempt has started from: the part
// of tasks.From(failed) a task never run may fail from.
var unstarted = func() []tasks.Status {
	var out []tasks.Status
	for _, s := range tasks.From(tasks.StatusFailed) {
		if s != tasks.StatusRunning {
			out = append(out, s)
		}
	}
	return out
}()

// dueSQL is when a task row became due: scheduled_for before its first
// attempt, next_retry_at after an automatic retry, updated_at after a manual
// retry.
var dueSQL = `CASE WHEN o.status = 'retrying' THEN COALESCE(o.next_retry_at, o.updated_at)
                WHEN o.status = 'pending' AND o.attempt > 0 THEN o.updated_at
                WHEN o.status = 'pending' THEN o.scheduled_for
                ELSE now() END`

// checkSQL reads what a delivery needs to decide whether it may run.
var checkSQL = `SELECT o.id, o.status, o.attempt, o.cancel_requested, ` + dueSQL + `, o.workflow_id IS NOT NULL FROM tasks o WHERE o.id = ANY($1::text[])`

// startSQL moves each task to running for a new attempt when its state allows
// (pending, retrying, or running after a lost worker) and no cancel was
// requested; closes a previous attempt still marked running as lost; inserts
// the attempt row; and moves rows with cancel_requested to cancelled. The
// queue wait runs from the time the task became due: scheduled_for on the first
// attempt, next_retry_at after an automatic retry, updated_at after a manual
// retry. It returns one row per started or cancelled task.
var startSQL = `
WITH v AS (
    SELECT v.id, v.worker, v.ts, v.attempt, ` + dueSQL + ` AS base
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[]) AS v(id, worker, ts, attempt)
    JOIN tasks o ON o.id = v.id
), upd AS (
    UPDATE tasks t SET status = 'running', attempt = t.attempt + 1,
           started_at = COALESCE(t.started_at, v.ts), worker_id = v.worker, updated_at = v.ts,
           next_retry_at = NULL, progress = 0, current_step = '',
           queue_wait_ms = COALESCE(t.queue_wait_ms, GREATEST(0, (extract(epoch FROM v.ts - v.base) * 1000)::bigint))
    FROM v
    WHERE t.id = v.id AND t.attempt = v.attempt - 1 AND t.status IN (` + in(tasks.From(tasks.StatusRunning)) + `)
      AND NOT t.cancel_requested
    RETURNING t.id, t.attempt, v.worker, v.ts, GREATEST(0, (extract(epoch FROM v.ts - v.base) * 1000)::bigint) AS wait, t.version
)` + closeLost("u.ts") + `, ins AS (
    INSERT INTO task_attempts (task_id, attempt, worker, started_at, queue_wait_ms, outcome)
    SELECT id, attempt, worker, ts, wait, 'running' FROM upd
    ON CONFLICT (task_id, attempt) DO NOTHING
), canc AS (
    UPDATE tasks t SET status = 'cancelled', completed_at = v.ts, updated_at = v.ts, next_retry_at = NULL
    FROM v
    WHERE t.id = v.id AND t.cancel_requested AND t.status IN (` + in(tasks.From(tasks.StatusCancelled)) + `)
    RETURNING t.id, t.callback_url, v.ts, t.version
), canc_att AS (
    UPDATE task_attempts a SET outcome = 'cancelled', finished_at = c.ts,
           duration_ms = GREATEST(0, (extract(epoch FROM c.ts - a.started_at) * 1000)::bigint),
           error_kind = 'cancelled', error_message = 'cancelled while no worker was running it'
    FROM canc c WHERE a.task_id = c.id AND a.outcome = 'running'
), cb AS (
    INSERT INTO task_callbacks (task_id, url, next_attempt_at)
    SELECT id, callback_url, ts FROM canc WHERE callback_url IS NOT NULL AND callback_url <> ''
)
SELECT id, attempt, wait, false, version FROM upd
UNION ALL
SELECT id, 0, 0::bigint, true, version FROM canc`

// progressSQL writes the latest progress of running attempts and appends their
// new messages, keeping the last $6.
var progressSQL = `
UPDATE tasks t SET progress = v.progress, current_step = v.step, updated_at = now(),
       messages = CASE WHEN jsonb_array_length(v.msgs::jsonb) = 0 THEN t.messages ELSE (
           SELECT COALESCE(jsonb_agg(x.e ORDER BY x.i), '[]'::jsonb) FROM (
               SELECT m.e, m.i FROM jsonb_array_elements(t.messages || v.msgs::jsonb) WITH ORDINALITY AS m(e, i)
               ORDER BY m.i DESC LIMIT $6) x) END
FROM unnest($1::text[], $2::int[], $3::float8[], $4::text[], $5::text[]) AS v(id, attempt, progress, step, msgs)
WHERE t.id = v.id AND t.attempt = v.attempt AND t.status = 'running'
RETURNING t.id, t.version`

// logsSQL appends log lines of attempts.
var logsSQL = `
INSERT INTO task_logs (task_id, attempt, ts, level, message, fields, trace_id)
SELECT id, attempt, ts, level, message, fields::jsonb, trace_id
FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[])
     AS v(id, attempt, ts, level, message, fields, trace_id)`

// finishSQL records attempts' outcomes. The task row moves only from running
// and only for the attempt that is current, so a late or duplicate outcome
// never moves a task backwards; the attempt row is closed either way (unless a
// newer start already closed it as lost). A terminal state with a callback URL
// queues a callback in the same statement.
var finishSQL = `
WITH v AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
                         $7::timestamptz[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
        AS v(id, attempt, status, ts, result, err, next_retry_at, duration_ms, outcome, error_kind, error_message, stack, result_url)
), upd AS (
    UPDATE tasks t SET status = v.status, updated_at = v.ts,
           completed_at = CASE WHEN v.status IN (` + in(terminal) + `) THEN v.ts END,
           result = CASE WHEN v.status = 'completed' THEN v.result::jsonb ELSE t.result END,
           result_url = CASE WHEN v.status = 'completed' THEN v.result_url ELSE t.result_url END,
           error = CASE WHEN v.status = 'completed' THEN NULL ELSE v.err::jsonb END,
           progress = CASE WHEN v.status = 'completed' THEN 1 ELSE t.progress END,
           next_retry_at = v.next_retry_at,
           duration_ms = v.duration_ms
    FROM v
    WHERE t.id = v.id AND t.attempt = v.attempt AND t.status = 'running'
    RETURNING t.id, t.status, t.callback_url, v.ts, t.version
), att AS (
    UPDATE task_attempts a SET finished_at = v.ts, duration_ms = v.duration_ms, outcome = v.outcome,
           error_kind = v.error_kind, error_message = v.error_message, stack = v.stack
    FROM v WHERE a.task_id = v.id AND a.attempt = v.attempt AND a.outcome = 'running'
` + outcomeTail

// closeLost is the CTE of a start: an earlier attempt of the row still marked
// running (its worker died before recording the outcome) is closed as lost at
// the new attempt's start, at. It follows the upd CTE, whose rows it reads.
func closeLost(at string) string {
	return `, lost AS (
    UPDATE task_attempts a SET outcome = 'lost', finished_at = ` + at + `,
           duration_ms = GREATEST(0, (extract(epoch FROM ` + at + ` - a.started_at) * 1000)::bigint),
           error_kind = 'lost',
           error_message = 'the worker running this attempt stopped before recording its outcome'
    FROM upd u WHERE a.task_id = u.id AND a.attempt < u.attempt AND a.outcome = 'running'
)`
}

// outcomeTail ends finishSQL and combinedSQL: a terminal state with a callback
// URL queues its callback, and each moved row is returned with whether it did.
var outcomeTail = `), cb AS (
    INSERT INTO task_callbacks (task_id, url, next_attempt_at)
    SELECT id, callback_url, ts FROM upd
    WHERE status IN (` + in(terminal) + `) AND callback_url IS NOT NULL AND callback_url <> ''
)
SELECT id, status, (status IN (` + in(terminal) + `) AND callback_url IS NOT NULL AND callback_url <> ''), version FROM upd`

// combinedSQL writes an attempt's start, last progress and outcome at once,
// for attempts that ended before their start was flushed (most short tasks):
// one update of the task row instead of two. The row must still be the one the
// delivery checked: attempt - 1, startable, no cancel requested (unless the
// outcome is the cancel).
var combinedSQL = `
WITH v AS (
    SELECT v.*, ` + dueSQL + ` AS base
    FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
                $7::timestamptz[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                $14::text[], $15::timestamptz[], $16::float8[], $17::text[], $18::text[])
        AS v(id, attempt, status, ts, result, err, next_retry_at, duration_ms, outcome, error_kind, error_message, stack,
             result_url, worker, started, progress, step, msgs)
    JOIN tasks o ON o.id = v.id
), upd AS (
    UPDATE tasks t SET status = v.status, attempt = v.attempt, updated_at = v.ts,
           started_at = COALESCE(t.started_at, v.started), worker_id = v.worker,
           queue_wait_ms = COALESCE(t.queue_wait_ms, GREATEST(0, (extract(epoch FROM v.started - v.base) * 1000)::bigint)),
           completed_at = CASE WHEN v.status IN (` + in(terminal) + `) THEN v.ts END,
           result = CASE WHEN v.status = 'completed' THEN v.result::jsonb ELSE t.result END,
           result_url = CASE WHEN v.status = 'completed' THEN v.result_url ELSE t.result_url END,
           error = CASE WHEN v.status = 'completed' THEN NULL ELSE v.err::jsonb END,
           progress = CASE WHEN v.status = 'completed' THEN 1 ELSE v.progress END,
           current_step = v.step,
           messages = CASE WHEN jsonb_array_length(v.msgs::jsonb) = 0 THEN t.messages ELSE (
               SELECT COALESCE(jsonb_agg(x.e ORDER BY x.i), '[]'::jsonb) FROM (
                   SELECT m.e, m.i FROM jsonb_array_elements(t.messages || v.msgs::jsonb) WITH ORDINALITY AS m(e, i)
                   ORDER BY m.i DESC LIMIT $19) x) END,
           next_retry_at = v.next_retry_at,
           duration_ms = v.duration_ms
    FROM v
    WHERE t.id = v.id AND t.attempt = v.attempt - 1 AND t.status IN (` + in(tasks.From(tasks.StatusRunning)) + `)
      AND (NOT t.cancel_requested OR v.status = 'cancelled')
    RETURNING t.id, t.status, t.attempt, t.callback_url, v.ts, v.started,
              GREATEST(0, (extract(epoch FROM v.started - v.base) * 1000)::bigint) AS wait, t.version
)` + closeLost("u.started") + `, ins AS (
    INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, duration_ms, queue_wait_ms,
                               outcome, error_kind, error_message, stack)
    SELECT v.id, v.attempt, v.worker, v.started, v.ts, v.duration_ms, u.wait,
           v.outcome, v.error_kind, v.error_message, v.stack
    FROM upd u JOIN v ON v.id = u.id
    ON CONFLICT (task_id, attempt) DO NOTHING
` + outcomeTail

// unrecordedSQL records $3 attempts after attempt $2 that a worker ran without
// writing their start (it was killed first) as lost, and moves the row's
// attempt count past them, if the row is still where the delivery read it. It
// returns the moved row (none when it had moved on).
var unrecordedSQL = `
WITH upd AS (
    UPDATE tasks SET attempt = attempt + $3, updated_at = now()
    WHERE id = $1 AND attempt = $2 AND status IN (` + in(tasks.From(tasks.StatusRunning)) + `) AND NOT cancel_requested
    RETURNING id, status, version
), ins AS (
    INSERT INTO task_attempts (task_id, attempt, worker, started_at, finished_at, duration_ms, outcome, error_kind, error_message)
    SELECT u.id, g, '', now(), now(), 0, 'lost', 'lost',
           'a worker ran this attempt and stopped before recording it (counted by the queue''s deliveries)'
    FROM upd u, generate_series($2::int + 1, $2::int + $3::int) AS g
    ON CONFLICT (task_id, attempt) DO NOTHING
)
SELECT id, status, version FROM upd`

// failUnstartedSQL fails task $1, which no attempt started (its delivery cannot
// be run: e.g. a payload that is not an envelope), with the error document $2,
// queueing its callback; it returns the moved row (none when it had moved on).
var failUnstartedSQL = `
WITH upd AS (
    UPDATE tasks SET status = '` + tasks.StatusFailed + `', error = $2::jsonb, completed_at = now(), updated_at = now(), next_retry_at = NULL
    WHERE id = $1 AND status IN (` + in(unstarted) + `)
    RETURNING id, status, callback_url, version
), cb AS (
    INSERT INTO task_callbacks (task_id, url) SELECT id, callback_url FROM upd WHERE callback_url IS NOT NULL AND callback_url <> ''
)
SELECT id, status, version FROM upd`

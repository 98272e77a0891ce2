-- +goose Up
-- The record of every task: the API answers from here; Asynq in Redis only carries
-- delivery. Ids are "task_" + a time-ordered ULID, so id order is creation order.
CREATE TABLE tasks (
    id                 text PRIMARY KEY,
    type               text        NOT NULL,
    status             text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'retrying', 'completed', 'failed', 'cancelled')),
    priority           text        NOT NULL
        CHECK (priority IN ('critical', 'high', 'normal', 'low')),
    params             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    key_id             text        NOT NULL DEFAULT '',
    created_by         text        NOT NULL DEFAULT '',
    idempotency_key    text,
    request_hash       text        NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    scheduled_for      timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    completed_at       timestamptz,
    progress           double precision NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    current_step       text        NOT NULL DEFAULT '',
    messages           jsonb       NOT NULL DEFAULT '[]'::jsonb,
    attempt            integer     NOT NULL DEFAULT 0,
    -- retry_base is the attempt count at the last manual retry: the retry budget
    -- counts attempts from there.
    retry_base         integer     NOT NULL DEFAULT 0,
    max_retries        integer     NOT NULL,
    retry_policy       jsonb       NOT NULL,
    timeout_seconds    integer     NOT NULL CHECK (timeout_seconds >= 1),
    estimated_duration integer     NOT NULL DEFAULT 0,
    next_retry_at      timestamptz,
    result             jsonb,
    result_url         text,
    error              jsonb,
    worker_id          text        NOT NULL DEFAULT '',
    cancel_requested   boolean     NOT NULL DEFAULT false,
    callback_url       text,
    schedule_id        text,
    fire_time          timestamptz,
    queue_wait_ms      bigint,
    duration_ms        bigint
);

-- Keyset pages: (sort key, id) with and without the common filters, for
-- every caller (admin) and per owner.
CREATE INDEX tasks_created_idx          ON tasks (created_at, id);
CREATE INDEX tasks_scheduled_idx        ON tasks (scheduled_for, id);
CREATE INDEX tasks_status_created_idx   ON tasks (status, created_at, id);
CREATE INDEX tasks_type_created_idx     ON tasks (type, created_at, id);
CREATE INDEX tasks_priority_created_idx ON tasks (priority, created_at, id);
CREATE INDEX tasks_status_scheduled_idx ON tasks (status, scheduled_for, id);
CREATE INDEX tasks_owner_created_idx    ON tasks (created_by, created_at, id);
CREATE INDEX tasks_owner_status_created_idx ON tasks (created_by, status, created_at, id);
-- Idempotency keys are scoped to the caller.
CREATE UNIQUE INDEX tasks_idempotency_idx ON tasks (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Recent completed runs per type feed estimated_duration and stats.
CREATE INDEX tasks_type_completed_idx ON tasks (type, completed_at DESC) WHERE status = 'completed';
CREATE INDEX tasks_completed_at_idx ON tasks (completed_at) WHERE completed_at IS NOT NULL;
-- Non-terminal rows are what the reconciler scans.
CREATE INDEX tasks_open_idx ON tasks (status, updated_at) WHERE status IN ('pending', 'running', 'retrying');
-- One task per schedule fire.
CREATE UNIQUE INDEX tasks_schedule_fire_idx ON tasks (schedule_id, fire_time) WHERE schedule_id IS NOT NULL;

-- One row per attempt of a task.
CREATE TABLE task_attempts (
    task_id       text        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt       integer     NOT NULL,
    worker        text        NOT NULL DEFAULT '',
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    duration_ms   bigint,
    queue_wait_ms bigint,
    outcome       text        NOT NULL DEFAULT 'running'
        CHECK (outcome IN ('running', 'completed', 'failed', 'retrying', 'cancelled', 'timeout', 'lost', 'deferred')),
    error_kind    text        NOT NULL DEFAULT '',
    error_message text        NOT NULL DEFAULT '',
    stack         text        NOT NULL DEFAULT '',
    PRIMARY KEY (task_id, attempt)
);

-- Log lines written by handlers, in batches.
CREATE TABLE task_logs (
    id      bigserial   PRIMARY KEY,
    task_id text        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt integer     NOT NULL DEFAULT 0,
    ts      timestamptz NOT NULL DEFAULT now(),
    level   text        NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    message text        NOT NULL,
    fields  jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX task_logs_task_idx ON task_logs (task_id, id);
CREATE INDEX task_logs_ts_idx ON task_logs (ts);

-- +goose Down
DROP TABLE task_logs;
DROP TABLE task_attempts;
DROP TABLE tasks;

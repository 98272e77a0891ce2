-- +goose Up
-- The outbox of callback deliveries: when a task with a callback_url reaches a
-- terminal state, the worker inserts a row here in the same statement that
-- records the state, and a delivery loop POSTs the signed final task JSON,
-- retrying with backoff. Rows survive restarts of the worker.
CREATE TABLE task_callbacks (
    id              bigserial   PRIMARY KEY,
    task_id         text        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    url             text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text        NOT NULL DEFAULT '',
    delivered_at    timestamptz,
    -- abandoned_at is set when the receiver refused the callback for good (a 4xx)
    -- or the attempts ran out.
    abandoned_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX task_callbacks_due_idx ON task_callbacks (next_attempt_at)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;
CREATE INDEX task_callbacks_task_idx ON task_callbacks (task_id);

-- +goose Down
DROP TABLE task_callbacks;

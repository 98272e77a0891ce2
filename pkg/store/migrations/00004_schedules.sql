-- +goose Up
-- Cron schedules: each fire creates one task through the task service, tied to
-- the schedule by tasks.schedule_id and tasks.fire_time (unique together).
CREATE TABLE schedules (
    id              text PRIMARY KEY,
    name            text        NOT NULL UNIQUE CHECK (name <> ''),
    cron            text        NOT NULL,
    timezone        text        NOT NULL DEFAULT 'UTC',
    type            text        NOT NULL,
    params          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- priority, retry_policy and timeout_seconds are NULL for the type's default.
    priority        text CHECK (priority IN ('critical', 'high', 'normal', 'low')),
    retry_policy    jsonb,
    timeout_seconds integer CHECK (timeout_seconds >= 1),
    enabled         boolean     NOT NULL DEFAULT true,
    created_by      text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- fired_through is the watermark of the fires: every cron tick up to it has
    -- been created or deliberately skipped (catch-up limit, disabled, edited).
    fired_through   timestamptz NOT NULL DEFAULT now(),
    -- last_run_at and last_task_id describe the latest fire that created a task.
    last_run_at     timestamptz,
    last_task_id    text
);
CREATE INDEX schedules_enabled_idx ON schedules (enabled, id);
-- A schedule's runs are read newest first through tasks_schedule_fire_idx.

-- +goose Down
DROP TABLE schedules;

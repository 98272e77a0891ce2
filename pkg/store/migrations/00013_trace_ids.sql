-- +goose Up
-- OpenTelemetry trace ids (hex; empty when tracing was off): the trace a task
-- was created in, shown in the task view, and the trace of the attempt each
-- task log line was written in. A constant default adds the columns without
-- rewriting the tables.
ALTER TABLE tasks ADD COLUMN trace_id text NOT NULL DEFAULT '';
ALTER TABLE task_logs ADD COLUMN trace_id text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE task_logs DROP COLUMN trace_id;
ALTER TABLE tasks DROP COLUMN trace_id;

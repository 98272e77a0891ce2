-- +goose Up
-- The id of the API request that created a task, kept with the row so that a
-- manual retry or a reconciler's requeue carries it to the worker again: every
-- log line about the task names the request that created it.
ALTER TABLE tasks ADD COLUMN request_id text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE tasks DROP COLUMN request_id;

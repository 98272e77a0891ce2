-- +goose Up
-- A trigger may start a workflow at each event instead of a task: workflow
-- holds its steps (as POST /api/v1/workflows takes them; a step's
-- params_from may point into the event, /event/…) and task_type is empty.
-- An event starts its workflow at most once: the workflow records the
-- trigger and the event's key, unique together, and the event itself.
ALTER TABLE triggers ADD COLUMN workflow jsonb;
ALTER TABLE workflows ADD COLUMN trigger_id text, ADD COLUMN event_key text, ADD COLUMN event jsonb;
CREATE UNIQUE INDEX workflows_trigger_event_key ON workflows (trigger_id, event_key) WHERE trigger_id IS NOT NULL;

-- +goose Down
DROP INDEX workflows_trigger_event_key;
ALTER TABLE workflows DROP COLUMN event, DROP COLUMN event_key, DROP COLUMN trigger_id;
ALTER TABLE triggers DROP COLUMN workflow;

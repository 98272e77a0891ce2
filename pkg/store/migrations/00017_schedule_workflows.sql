-- +goose Up
-- A schedule may start a workflow at each fire instead of a task: workflow
-- holds its steps (as POST /api/v1/workflows takes them, secret params
-- sealed) and type is empty. A fire starts its workflow at most once: the
-- workflow records the schedule and fire time, unique together.
ALTER TABLE schedules ADD COLUMN workflow jsonb;
ALTER TABLE workflows ADD COLUMN schedule_id text, ADD COLUMN fire_time timestamptz;
CREATE UNIQUE INDEX workflows_schedule_fire_key ON workflows (schedule_id, fire_time) WHERE schedule_id IS NOT NULL;

-- +goose Down
DROP INDEX workflows_schedule_fire_key;
ALTER TABLE workflows DROP COLUMN fire_time, DROP COLUMN schedule_id;
ALTER TABLE schedules DROP COLUMN workflow;

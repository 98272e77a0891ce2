-- +goose Up
-- Every change of a task row gets a new version: the strong ETag of
-- GET /api/v1/tasks/{id} and the order of the live task events. A trigger
-- bumps it, so that every writer (worker, API, reconciler) keeps it without
-- naming it; RETURNING sees the bumped value.
ALTER TABLE tasks ADD COLUMN version bigint NOT NULL DEFAULT 1;

-- +goose StatementBegin
CREATE FUNCTION tasks_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER tasks_version BEFORE UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_bump_version();

-- +goose Down
DROP TRIGGER tasks_version ON tasks;
DROP FUNCTION tasks_bump_version();
ALTER TABLE tasks DROP COLUMN version;

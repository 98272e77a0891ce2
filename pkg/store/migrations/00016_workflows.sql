-- +goose Up
-- Workflows: a named DAG of steps, each a task created (through the one
-- creation path) once every step it depends on has completed. The steps'
-- tasks carry workflow_id and step_id; the pair is unique, so a step's task is
-- created at most once however many advancers race for it.
CREATE TABLE workflows (
    id               text        PRIMARY KEY,
    name             text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    created_by       text        NOT NULL,
    role             text        NOT NULL DEFAULT '',
    cancel_requested boolean     NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz
);
CREATE INDEX workflows_created_idx ON workflows (created_at DESC, id DESC);
CREATE INDEX workflows_owner_created_idx ON workflows (created_by, created_at DESC, id DESC);

-- A step as it was asked for: its task's fields (params with their secrets
-- sealed, key_id naming the key), the steps it depends on, and params taken
-- from dependencies' results (param name → JSON Pointer into
-- {"steps": {"<id>": {"result": ...}}}). error is set when the step failed
-- without a task (its params could not be resolved or were refused).
CREATE TABLE workflow_steps (
    workflow_id     text    NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    step_id         text    NOT NULL,
    position        integer NOT NULL,
    type            text    NOT NULL,
    params          jsonb   NOT NULL DEFAULT '{}',
    key_id          text    NOT NULL DEFAULT '',
    params_from     jsonb   NOT NULL DEFAULT '{}',
    priority        text    NOT NULL DEFAULT '',
    retry_policy    jsonb,
    timeout_seconds integer,
    depends_on      jsonb   NOT NULL DEFAULT '[]',
    error           text    NOT NULL DEFAULT '',
    PRIMARY KEY (workflow_id, step_id)
);

ALTER TABLE tasks ADD COLUMN workflow_id text, ADD COLUMN step_id text;
CREATE UNIQUE INDEX tasks_workflow_step_key ON tasks (workflow_id, step_id) WHERE workflow_id IS NOT NULL;

-- A workflow whose step task changed state (ended, or was retried by hand)
-- is due an advance: the row is written in the same transaction as the
-- change, so a crash of whoever would advance it never loses the decision,
-- and NOTIFY (sent at commit) wakes the advancers at once. An advance removes
-- the rows it served (ids up to the highest it saw) in its own transaction;
-- a row per change, so a change never waits for an advance's lock.
CREATE TABLE workflow_wakeups (
    id          bigserial   PRIMARY KEY,
    workflow_id text        NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    queued_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workflow_wakeups_workflow_idx ON workflow_wakeups (workflow_id, id);

-- +goose StatementBegin
CREATE FUNCTION tasks_workflow_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_wakeups (workflow_id) VALUES (NEW.workflow_id);
    PERFORM pg_notify('taskforge_workflows', NEW.workflow_id);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- Only a step task's terminal transitions and its return to pending (a
-- manual retry) wake its workflow; any other row pays the WHEN test only.
CREATE TRIGGER tasks_workflow_wake AFTER UPDATE OF status ON tasks
    FOR EACH ROW
    WHEN (NEW.workflow_id IS NOT NULL AND NEW.status IS DISTINCT FROM OLD.status
          AND NEW.status IN ('completed', 'failed', 'cancelled', 'pending'))
    EXECUTE FUNCTION tasks_workflow_wake();

-- +goose Down
DROP TRIGGER tasks_workflow_wake ON tasks;
DROP FUNCTION tasks_workflow_wake();
DROP TABLE workflow_wakeups;
DROP INDEX tasks_workflow_step_key;
ALTER TABLE tasks DROP COLUMN step_id, DROP COLUMN workflow_id;
DROP TABLE workflow_steps;
DROP TABLE workflows;

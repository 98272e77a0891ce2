-- +goose Up
-- Event triggers (pkg/trigger): a webhook, a database change or an upload
-- creates the trigger's task through the task service, owned by the
-- trigger's owner and tied to it by tasks.trigger_id.
CREATE TABLE triggers (
    id               text PRIMARY KEY,
    name             text        NOT NULL CHECK (name <> ''),
    kind             text        NOT NULL CHECK (kind IN ('webhook', 'database', 'upload')),
    enabled          boolean     NOT NULL DEFAULT true,
    -- owner and owner_role: the principal whose tasks the trigger creates,
    -- and its role when it made the trigger (the recipient policy's).
    owner            text        NOT NULL,
    owner_role       text        NOT NULL DEFAULT '',
    -- The task each event creates; params_map maps a param name to a JSON
    -- Pointer into the event. priority, retry_policy and timeout_seconds are
    -- NULL for the type's default.
    task_type        text        NOT NULL,
    params           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    param_map        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    priority         text CHECK (priority IN ('critical', 'high', 'normal', 'low')),
    retry_policy     jsonb,
    timeout_seconds  integer CHECK (timeout_seconds >= 1),
    callback_url     text,
    -- webhook: the signing secret, sealed (pkg/secret, bound to the trigger);
    -- after a rotation the previous one still verifies until previous_until.
    secret           text,
    previous_secret  text,
    previous_until   timestamptz,
    -- database: the table and operations watched, and the debounce window.
    table_name       text CHECK (table_name IN ('prices', 'holdings', 'portfolios', 'assets', 'benchmarks')),
    operations       jsonb,
    debounce_seconds integer     NOT NULL DEFAULT 0 CHECK (debounce_seconds >= 0),
    -- upload: {"content_type","name_glob"}.
    filter           jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'database' OR (table_name IS NOT NULL AND jsonb_array_length(operations) > 0)),
    CHECK (kind <> 'webhook' OR secret IS NOT NULL)
);
CREATE INDEX triggers_owner_idx ON triggers (owner, id);
CREATE INDEX triggers_database_idx ON triggers (table_name) WHERE kind = 'database' AND enabled;

-- Every delivery to a trigger: accepted (with its task) or refused (with the
-- reason and at most a short excerpt of the body). Rows go with their trigger.
CREATE TABLE trigger_deliveries (
    id          text        PRIMARY KEY,
    trigger_id  text        NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    received_at timestamptz NOT NULL DEFAULT now(),
    webhook_id  text,
    accepted    boolean     NOT NULL,
    status      integer     NOT NULL,
    task_id     text,
    reason      text        NOT NULL DEFAULT '',
    excerpt     text        NOT NULL DEFAULT ''
);
CREATE INDEX trigger_deliveries_trigger_idx ON trigger_deliveries (trigger_id, received_at DESC, id DESC);
CREATE INDEX trigger_deliveries_received_idx ON trigger_deliveries (received_at);

-- Tasks created by a trigger.
ALTER TABLE tasks ADD COLUMN trigger_id text;
CREATE INDEX tasks_trigger_created_idx ON tasks (trigger_id, created_at, id) WHERE trigger_id IS NOT NULL;

-- Database changes: one row per statement and per enabled database trigger
-- watching the table and operation, written in the statement's transaction
-- (a change is never lost while no dispatcher runs). The dispatcher (in the
-- scheduler) turns pending rows into tasks and sets processed_at;
-- cleanup_old_data removes processed rows.
CREATE TABLE trigger_events (
    id           bigserial   PRIMARY KEY,
    trigger_id   text        NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    table_name   text        NOT NULL,
    operation    text        NOT NULL,
    -- row_data is the statement's first changed row; changes the rows it changed.
    row_data     jsonb       NOT NULL,
    changes      integer     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    processed_at timestamptz,
    task_id      text
);
CREATE INDEX trigger_events_pending_idx ON trigger_events (trigger_id, id) WHERE processed_at IS NULL;
CREATE INDEX trigger_events_processed_idx ON trigger_events (processed_at) WHERE processed_at IS NOT NULL;

-- +goose StatementBegin
-- search_path is fixed at creation: a restore (pg_restore sets an empty
-- search_path) or a session with another one still finds the tables.
CREATE FUNCTION trigger_events_record() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    op text := lower(TG_OP);
    n integer;
    first jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM triggers WHERE kind = 'database' AND enabled
                   AND table_name = TG_TABLE_NAME AND operations ? op) THEN
        RETURN NULL;
    END IF;
    -- A write that changes nothing (an upsert of identical values) is no
    -- change: only rows that differ from their old version count.
    -- count(*) OVER () with LIMIT 1 counts every row but renders one.
    IF TG_OP = 'INSERT' THEN
        SELECT count(*) OVER (), to_jsonb(t) INTO n, first FROM new_rows t LIMIT 1;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT count(*) OVER (), to_jsonb(d) INTO n, first
        FROM (SELECT * FROM new_rows EXCEPT ALL SELECT * FROM old_rows) d LIMIT 1;
    ELSE
        SELECT count(*) OVER (), to_jsonb(t) INTO n, first FROM old_rows t LIMIT 1;
    END IF;
    IF n IS NULL OR n = 0 THEN
        RETURN NULL;
    END IF;
    INSERT INTO trigger_events (trigger_id, table_name, operation, row_data, changes)
    SELECT id, TG_TABLE_NAME, op, first, n FROM triggers
    WHERE kind = 'database' AND enabled AND table_name = TG_TABLE_NAME AND operations ? op;
    PERFORM pg_notify('taskforge_trigger_events', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER prices_events_insert AFTER INSERT ON prices REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();
CREATE TRIGGER prices_events_update AFTER UPDATE ON prices REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();
CREATE TRIGGER prices_events_delete AFTER DELETE ON prices REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();
CREATE TRIGGER holdings_events_insert AFTER INSERT ON holdings REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();
CREATE TRIGGER holdings_events_update AFTER UPDATE ON holdings REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();
CREATE TRIGGER holdings_events_delete AFTER DELETE ON holdings REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();
CREATE TRIGGER portfolios_events_insert AFTER INSERT ON portfolios REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();
CREATE TRIGGER portfolios_events_update AFTER UPDATE ON portfolios REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();
CREATE TRIGGER portfolios_events_delete AFTER DELETE ON portfolios REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();
CREATE TRIGGER assets_events_insert AFTER INSERT ON assets REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();
CREATE TRIGGER assets_events_update AFTER UPDATE ON assets REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();
CREATE TRIGGER assets_events_delete AFTER DELETE ON assets REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();
CREATE TRIGGER benchmarks_events_insert AFTER INSERT ON benchmarks REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();
CREATE TRIGGER benchmarks_events_update AFTER UPDATE ON benchmarks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();
CREATE TRIGGER benchmarks_events_delete AFTER DELETE ON benchmarks REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION trigger_events_record();

-- +goose Down
DROP TRIGGER benchmarks_events_delete ON benchmarks;
DROP TRIGGER benchmarks_events_update ON benchmarks;
DROP TRIGGER benchmarks_events_insert ON benchmarks;
DROP TRIGGER assets_events_delete ON assets;
DROP TRIGGER assets_events_update ON assets;
DROP TRIGGER assets_events_insert ON assets;
DROP TRIGGER portfolios_events_delete ON portfolios;
DROP TRIGGER portfolios_events_update ON portfolios;
DROP TRIGGER portfolios_events_insert ON portfolios;
DROP TRIGGER holdings_events_delete ON holdings;
DROP TRIGGER holdings_events_update ON holdings;
DROP TRIGGER holdings_events_insert ON holdings;
DROP TRIGGER prices_events_delete ON prices;
DROP TRIGGER prices_events_update ON prices;
DROP TRIGGER prices_events_insert ON prices;
DROP FUNCTION trigger_events_record();
DROP TABLE trigger_events;
DROP INDEX tasks_trigger_created_idx;
ALTER TABLE tasks DROP COLUMN trigger_id;
DROP TABLE trigger_deliveries;
DROP TABLE triggers;

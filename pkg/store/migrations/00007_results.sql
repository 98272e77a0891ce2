-- +goose Up
-- Files that tasks produced (reports, backups, large results). The bytes live in
-- result storage (a local directory or S3-compatible object storage); this table
-- is their index. Rows expire: cleanup_old_data's results target deletes the row
-- and its file once expires_at has passed. A task with results cannot be deleted
-- before them (no cascade), so that no file is orphaned.
CREATE TABLE results (
    id           text        PRIMARY KEY,
    task_id      text        NOT NULL REFERENCES tasks (id),
    name         text        NOT NULL,
    content_type text        NOT NULL DEFAULT 'application/octet-stream',
    size         bigint      NOT NULL CHECK (size >= 0),
    sha256       text        NOT NULL,
    backend      text        NOT NULL CHECK (backend IN ('local', 's3')),
    key          text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX results_task_idx ON results (task_id, created_at);
CREATE INDEX results_expires_idx ON results (expires_at);

-- +goose Down
DROP TABLE results;

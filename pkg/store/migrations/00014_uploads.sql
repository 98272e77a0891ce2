-- +goose Up
-- Files callers upload (POST /api/v1/uploads) for tasks to consume, such as
-- import_prices and import_holdings. The bytes live in result storage beside
-- the results, under keys of their own; this table is their index. Rows
-- expire like results: cleanup_old_data's results target deletes the row and
-- its file once expires_at has passed (or the row is older than
-- retention.results).
CREATE TABLE uploads (
    id           text        PRIMARY KEY CHECK (id ~ '^upl_[0-9a-z]{26}$'),
    created_by   text        NOT NULL,
    name         text        NOT NULL,
    content_type text        NOT NULL DEFAULT 'application/octet-stream',
    size         bigint      NOT NULL CHECK (size >= 0),
    sha256       text        NOT NULL,
    backend      text        NOT NULL CHECK (backend IN ('local', 's3')),
    key          text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX uploads_created_by_idx ON uploads (created_by, created_at);
CREATE INDEX uploads_expires_idx ON uploads (expires_at);

-- +goose Down
DROP TABLE uploads;

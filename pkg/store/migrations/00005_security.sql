-- +goose Up
-- API keys: the plaintext key is shown once at creation; only its lookup prefix
-- and a SHA-256 digest of the whole key are kept. Revocation and expiry are
-- checked on every request.
CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    name         text        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    prefix       text        NOT NULL,
    hash         text        NOT NULL,
    created_by   text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE UNIQUE INDEX api_keys_prefix_idx ON api_keys (prefix);
CREATE INDEX api_keys_created_idx ON api_keys (created_at, id);

-- The audit log: one row per mutation and per failed authentication. Rows are
-- only ever inserted by the services; retention (cleanup_old_data) is the only
-- thing that deletes them.
CREATE TABLE audit_log (
    id            bigserial   PRIMARY KEY,
    ts            timestamptz NOT NULL DEFAULT now(),
    actor         text        NOT NULL DEFAULT '',
    action        text        NOT NULL,
    resource_type text        NOT NULL DEFAULT '',
    resource_id   text        NOT NULL DEFAULT '',
    outcome       text        NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    client_ip     text        NOT NULL DEFAULT '',
    request_id    text        NOT NULL DEFAULT '',
    details       jsonb       NOT NULL DEFAULT '{}'::jsonb
);
-- Pages walk id downwards (newest first), with and without the filters.
CREATE INDEX audit_log_actor_idx    ON audit_log (actor, id);
CREATE INDEX audit_log_action_idx   ON audit_log (action, id);
CREATE INDEX audit_log_resource_idx ON audit_log (resource_id, id) WHERE resource_id <> '';
CREATE INDEX audit_log_ts_idx       ON audit_log (ts);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE api_keys;

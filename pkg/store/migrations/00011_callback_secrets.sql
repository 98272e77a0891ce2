-- +goose Up
-- The signing secrets of completion callbacks, one per principal (the owner
-- of the tasks whose callbacks they sign), so that a receiver holds only its
-- owner's secret and cannot forge callbacks to anyone else. Both secrets are
-- sealed (pkg/secret, bound to the principal). After a rotation the previous
-- secret still signs, next to the new one, until previous_until.
CREATE TABLE callback_secrets (
    principal      text        PRIMARY KEY,
    secret         text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    previous       text,
    previous_until timestamptz
);

-- The recipients a notification task has reached, so that a retry after a
-- partial failure sends only to the others. Rows go with their task.
CREATE TABLE notification_deliveries (
    task_id      text        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    channel      text        NOT NULL,
    recipient    text        NOT NULL,
    delivered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, channel, recipient)
);

-- +goose Down
DROP TABLE notification_deliveries;
DROP TABLE callback_secrets;

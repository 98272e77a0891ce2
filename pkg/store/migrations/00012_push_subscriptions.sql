-- +goose Up
-- The push subscriptions of principals: a browser's Web Push subscription
-- (kind webpush: the push service's endpoint URL and the keys p256dh and auth
-- that encrypt messages to it, RFC 8291) or an app's FCM registration token
-- (kind fcm: endpoint holds the token, the keys are empty). send_alert with
-- channel push reaches them; a push service answering 404 or 410 removes its
-- row. A principal subscribes an endpoint once.
CREATE TABLE push_subscriptions (
    id         text        PRIMARY KEY,
    principal  text        NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('webpush', 'fcm')),
    endpoint   text        NOT NULL,
    p256dh     text        NOT NULL DEFAULT '',
    auth       text        NOT NULL DEFAULT '',
    user_agent text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (principal, endpoint)
);

-- +goose Down
DROP TABLE push_subscriptions;

-- +goose Up
-- Aggregated audit rows: refused credentials are recorded as one row per
-- client address (an IPv6 /64) per minute, whose count says how many there
-- were, so that a flood of bad credentials cannot grow the table without
-- bound. aggregate_key is NULL for every ordinary row (NULLs never collide in
-- a unique index); for an aggregated one it is "action|minute|address".
ALTER TABLE audit_log ADD COLUMN count integer NOT NULL DEFAULT 1 CHECK (count >= 1);
ALTER TABLE audit_log ADD COLUMN aggregate_key text;
CREATE UNIQUE INDEX audit_log_aggregate_idx ON audit_log (aggregate_key);

-- +goose Down
DROP INDEX audit_log_aggregate_idx;
ALTER TABLE audit_log DROP COLUMN aggregate_key;
ALTER TABLE audit_log DROP COLUMN count;

-- +goose Up
-- A change of an API key that matters to authentication (revoked, expired,
-- role, name, hash) or its deletion is announced on the channel
-- taskforge_api_keys with the key's id, after the change commits, whoever
-- makes it (an API replica, the api binary's keys command, SQL by hand):
-- each API replica keeps accepted keys in memory (auth.key_cache_ttl) and
-- forgets the key at once. last_used_at, written about once a minute per
-- key, announces nothing.

-- +goose StatementBegin
CREATE FUNCTION api_keys_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('taskforge_api_keys', OLD.id);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER api_keys_changed AFTER UPDATE ON api_keys FOR EACH ROW
    WHEN ((OLD.revoked_at, OLD.expires_at, OLD.role, OLD.name, OLD.prefix, OLD.hash)
          IS DISTINCT FROM (NEW.revoked_at, NEW.expires_at, NEW.role, NEW.name, NEW.prefix, NEW.hash))
    EXECUTE FUNCTION api_keys_announce();
CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys FOR EACH ROW
    EXECUTE FUNCTION api_keys_announce();

-- +goose Down
DROP TRIGGER api_keys_deleted ON api_keys;
DROP TRIGGER api_keys_changed ON api_keys;
DROP FUNCTION api_keys_announce();

-- 006: tell every cdsd process when something that decides whether an access token
-- is still good changes (a user's role, name, disabled state or forced password
-- change; a session ended; a token revoked), so that cached token checks are
-- dropped. Balance updates (billing) deliberately do not fire it.

CREATE FUNCTION notify_auth_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cds_auth', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER users_auth_notify
AFTER UPDATE OF username, role, disabled_at, must_change_password OR DELETE ON users
FOR EACH STATEMENT EXECUTE FUNCTION notify_auth_change();

CREATE TRIGGER sessions_auth_notify
AFTER UPDATE OF revoked_at OR DELETE ON sessions
FOR EACH STATEMENT EXECUTE FUNCTION notify_auth_change();

CREATE TRIGGER revoked_tokens_auth_notify
AFTER INSERT ON revoked_tokens
FOR EACH STATEMENT EXECUTE FUNCTION notify_auth_change();

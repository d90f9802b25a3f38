-- 004: API keys, the audit log and project members.
--
-- This migration refers only to tables of 001 and 002, so that it applies whatever
-- the other migrations of the same release add.

-- An API key is shown once as cds_<public_id>_<secret>; only the SHA-256 of the
-- secret is kept. The public id finds the row, so verifying a key is one indexed
-- lookup and one constant-time comparison.
CREATE TABLE api_keys (
    id           BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    public_id    TEXT        NOT NULL UNIQUE CHECK (public_id ~ '^[a-z0-9]{12}$'),
    user_id      BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT        NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    secret_hash  BYTEA       NOT NULL CHECK (length(secret_hash) = 32),
    -- NULL means the key acts with its owner's current role.
    scope        TEXT        CHECK (scope IN ('admin', 'developer', 'viewer')),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, id);

-- Every admin action and security event. actor_name is copied so that an entry
-- still names its actor after the account is deleted; before and after hold only
-- the changed fields and never secrets.
CREATE TABLE audit_log (
    id          BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_id    BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    actor_name  TEXT        NOT NULL DEFAULT '',
    action      TEXT        NOT NULL CHECK (action <> ''),
    target_type TEXT        NOT NULL DEFAULT '',
    target_id   TEXT        NOT NULL DEFAULT '',
    before      JSONB,
    after       JSONB,
    ip          TEXT        NOT NULL DEFAULT '',
    request_id  TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id, id);

-- Users other than the owner who may see (viewer) or also change (developer) a
-- project. Only the owner may delete a project or manage its members.
CREATE TABLE project_members (
    project_id UUID        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT        NOT NULL CHECK (role IN ('viewer', 'developer')),
    added_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user_idx ON project_members (user_id);

-- Each cdsd process caches file heads per project and user (see 002). Whether a
-- user may still read a cached head depends on membership, so a membership change
-- from any process (or an admin's SQL, or a cascade from a deleted user) must
-- invalidate the project's cache entries everywhere: it notifies on the same
-- channel as a file change. Statement-level triggers with transition tables send
-- one notification per affected project, however many rows a statement touches.
CREATE FUNCTION notify_project_members_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('cds_project_files', id::text)
        FROM (SELECT DISTINCT project_id AS id FROM new_rows) t;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('cds_project_files', id::text)
        FROM (SELECT DISTINCT project_id AS id FROM old_rows) t;
    ELSE
        PERFORM pg_notify('cds_project_files', id::text)
        FROM (SELECT project_id AS id FROM new_rows
              UNION SELECT project_id FROM old_rows) t;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER project_members_notify_insert
AFTER INSERT ON project_members REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION notify_project_members_change();

CREATE TRIGGER project_members_notify_update
AFTER UPDATE ON project_members REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION notify_project_members_change();

CREATE TRIGGER project_members_notify_delete
AFTER DELETE ON project_members REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION notify_project_members_change();

-- 003_auth: passwords, login sessions with rotating refresh tokens, lockout counters,
-- revoked access tokens and the site settings (registration mode). Every timestamp
-- here is written by cdsd from its clock, so the defaults are only for hand-made rows.

ALTER TABLE users
    -- Set for a generated first-admin password or an admin's reset: the user's tokens
    -- only allow changing the password until it is changed.
    ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN password_changed_at  TIMESTAMPTZ;

-- Every password hash a user has had, the current one included, so that a new password
-- can be compared with the last few.
CREATE TABLE password_history (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    password_hash TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX password_history_user_idx ON password_history (user_id, id DESC);

-- One row per login. The refresh token is rotated on every use; the row keeps only the
-- SHA-256 of the current one. family_id groups the sessions that descend from one
-- login, which are revoked together when a rotated refresh token is presented again.
CREATE TABLE sessions (
    id             UUID        PRIMARY KEY DEFAULT gen_random_uuid(),
    family_id      UUID        NOT NULL,
    user_id        BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_hash   BYTEA       NOT NULL UNIQUE CHECK (length(refresh_hash) = 32),
    ip             TEXT        NOT NULL DEFAULT '',
    user_agent     TEXT        NOT NULL DEFAULT '',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ,
    revoked_reason TEXT,
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
CREATE INDEX sessions_user_idx ON sessions (user_id, last_used_at DESC);
CREATE INDEX sessions_family_idx ON sessions (family_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

-- The hashes of refresh tokens that were already rotated away. Presenting one again is
-- reuse (a stolen token, or a client that lost the new one): its family is revoked.
CREATE TABLE refresh_token_history (
    refresh_hash BYTEA       PRIMARY KEY CHECK (length(refresh_hash) = 32),
    session_id   UUID        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    rotated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX refresh_token_history_session_idx ON refresh_token_history (session_id);

-- Login attempts, for lockout per account and per client IP. success is NULL while the
-- password is being checked, so concurrent attempts count each other as failures.
-- Old rows are pruned by cdsd.
CREATE TABLE login_attempts (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username TEXT        NOT NULL, -- lower(username), as PostgreSQL lowers it
    ip       TEXT        NOT NULL,
    success  BOOLEAN,
    at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_username_idx ON login_attempts (username, at);
CREATE INDEX login_attempts_ip_idx ON login_attempts (ip, at);
CREATE INDEX login_attempts_at_idx ON login_attempts (at);

-- Access tokens (by jti) revoked before they expire; rows are pruned after expires_at.
CREATE TABLE revoked_tokens (
    jti        TEXT        PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX revoked_tokens_expires_idx ON revoked_tokens (expires_at);

-- Site-wide settings an admin changes at run time.
CREATE TABLE settings (
    key        TEXT        PRIMARY KEY,
    value      JSONB       NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Who may create an account: "open", "invite" or "closed".
INSERT INTO settings (key, value) VALUES ('registration', '"closed"');

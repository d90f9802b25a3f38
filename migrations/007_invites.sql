-- 007: invitations for the invite-only registration mode. Only a hash of the code is
-- kept; a code is used once, before it expires, for the role it names.

CREATE TABLE invites (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code_hash  BYTEA       NOT NULL UNIQUE CHECK (length(code_hash) = 32),
    role       TEXT        NOT NULL CHECK (role IN ('developer', 'viewer')),
    created_by BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    used_by    BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    CHECK ((used_at IS NULL) = (used_by IS NULL) OR used_by IS NULL)
);
CREATE INDEX invites_open_idx ON invites (expires_at) WHERE used_at IS NULL;

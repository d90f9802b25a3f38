-- 001_init: users, models, token usage, projects and versioned project files.
-- Ids are BIGINT identities (users, models, usage rows) or UUIDs (projects, which
-- appear in URLs and on disk). Every timestamp is TIMESTAMPTZ.

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT        NOT NULL,
    -- NULL means the account cannot log in with a password (e.g. the development user).
    password_hash TEXT,
    role          TEXT        NOT NULL DEFAULT 'developer'
                  CHECK (role IN ('admin', 'developer', 'viewer')),
    token_balance BIGINT      NOT NULL DEFAULT 0 CHECK (token_balance >= 0),
    disabled_at   TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT users_username_format CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$')
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE models (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           TEXT          NOT NULL UNIQUE,
    source_url     TEXT,
    context_size   INTEGER       CHECK (context_size > 0),
    cost_per_token NUMERIC(12, 6) NOT NULL DEFAULT 0 CHECK (cost_per_token >= 0),
    is_loaded      BOOLEAN       NOT NULL DEFAULT false,
    loaded_at      TIMESTAMPTZ,
    created_at     TIMESTAMPTZ   NOT NULL DEFAULT now()
);

CREATE TABLE tokens_used (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    model_id   BIGINT      REFERENCES models (id) ON DELETE SET NULL,
    tokens     INTEGER     NOT NULL CHECK (tokens >= 0),
    endpoint   TEXT        NOT NULL DEFAULT '',
    metadata   JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tokens_used_user_idx ON tokens_used (user_id, created_at);
CREATE INDEX tokens_used_model_idx ON tokens_used (model_id);
CREATE INDEX tokens_used_created_idx ON tokens_used (created_at);

CREATE TABLE projects (
    id         UUID        PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id   BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT        NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX projects_owner_name_key ON projects (owner_id, lower(name));

-- Content-addressed file contents, shared by every revision (of any project) with
-- the same bytes.
CREATE TABLE blobs (
    sha256     BYTEA       PRIMARY KEY CHECK (length(sha256) = 32),
    size       BIGINT      NOT NULL CHECK (size >= 0),
    content    BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per file identity. A rename keeps the row (and its history); a delete
-- leaves a tombstone (deleted_at set) so the history stays readable.
CREATE TABLE project_files (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id    UUID        NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    path          TEXT        NOT NULL,
    head_revision BIGINT      NOT NULL CHECK (head_revision > 0),
    blob_sha256   BYTEA       REFERENCES blobs (sha256),
    size          BIGINT      NOT NULL DEFAULT 0,
    deleted_at    TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((deleted_at IS NULL) = (blob_sha256 IS NOT NULL))
);
-- At most one live file per path; tombstones may share a path with a live file.
CREATE UNIQUE INDEX project_files_live_path_key ON project_files (project_id, path) WHERE deleted_at IS NULL;
CREATE INDEX project_files_path_idx ON project_files (project_id, path, id DESC);

CREATE TABLE file_revisions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_id     BIGINT      NOT NULL REFERENCES project_files (id) ON DELETE CASCADE,
    revision    BIGINT      NOT NULL CHECK (revision > 0),
    op          TEXT        NOT NULL CHECK (op IN ('create', 'update', 'delete', 'rename')),
    path        TEXT        NOT NULL,
    blob_sha256 BYTEA       REFERENCES blobs (sha256),
    size        BIGINT      NOT NULL DEFAULT 0,
    author_id   BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (file_id, revision)
);
CREATE INDEX file_revisions_blob_idx ON file_revisions (blob_sha256);

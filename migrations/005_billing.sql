-- 005: the token billing ledger (package engine/billing).
--
-- Units: users.token_balance is in credits; models.cost_per_token is credits per token.
-- A metered call first reserves its estimated cost (taken from the balance at once, so
-- the balance never goes negative whatever the concurrency), then settles with the real
-- count: the rest is refunded and a tokens_used row is written in the same transaction.
-- A reservation that is neither settled nor released by expires_at is released by a
-- sweep, which refunds it.

CREATE TABLE token_reservations (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    model_id    BIGINT      REFERENCES models (id) ON DELETE SET NULL,
    -- Zero is allowed: models cost nothing by default (cost_per_token DEFAULT 0), and
    -- their calls still go through reserve/settle so that their usage is recorded.
    amount      BIGINT      NOT NULL CHECK (amount >= 0),
    endpoint    TEXT        NOT NULL DEFAULT '',
    request_id  TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    settled_at  TIMESTAMPTZ,
    released_at TIMESTAMPTZ,
    -- A reservation ends exactly once: settled or released, never both.
    CONSTRAINT token_reservations_one_end CHECK (settled_at IS NULL OR released_at IS NULL)
);
-- The expiry sweep reads only open reservations, oldest deadline first.
CREATE INDEX token_reservations_open_expiry_idx ON token_reservations (expires_at)
    WHERE settled_at IS NULL AND released_at IS NULL;
-- Deleting a user cascades here; without an index that would scan the table.
CREATE INDEX token_reservations_user_idx ON token_reservations (user_id);

ALTER TABLE tokens_used
    ADD COLUMN prompt_tokens     INTEGER NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    ADD COLUMN completion_tokens INTEGER NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    -- Credits actually taken from the balance for this call. When the real cost exceeded
    -- the reservation and the balance could not cover the difference, cost is what was
    -- reserved and metadata holds {"actual_cost": …, "shortfall": …}.
    ADD COLUMN cost              BIGINT  NOT NULL DEFAULT 0 CHECK (cost >= 0),
    ADD COLUMN request_id        TEXT,
    ADD COLUMN reservation_id    BIGINT  REFERENCES token_reservations (id) ON DELETE SET NULL;
-- One usage row per reservation: a second settle cannot record twice even if the
-- ledger's own check were bypassed.
CREATE UNIQUE INDEX tokens_used_reservation_key ON tokens_used (reservation_id)
    WHERE reservation_id IS NOT NULL;
-- Usage reports: one user's usage per model over a time range.
CREATE INDEX tokens_used_user_model_idx ON tokens_used (user_id, model_id, created_at);

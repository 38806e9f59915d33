-- Identity (components/identity): users, e-mail verification, sessions with rotating
-- refresh tokens, and the failed-login counter that throttles guessing.
-- Secrets are never stored: tokens are kept as SHA-256 hashes, passwords as bcrypt hashes.

CREATE TABLE identity.users (
    id                UUID PRIMARY KEY,
    -- As the user typed it (trimmed), for display and e-mails.
    email             TEXT NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    -- The lower-cased address (Unicode case folding done by the component, the one place
    -- that normalises): uniqueness and lookups compare this, never lower(email), whose
    -- meaning depends on the database's collation.
    email_key         TEXT NOT NULL CHECK (length(email_key) BETWEEN 3 AND 254),
    full_name         TEXT NOT NULL CHECK (length(full_name) BETWEEN 1 AND 100),
    -- bcrypt, modular crypt format ($2b$<cost>$…).
    password_hash     TEXT NOT NULL CHECK (password_hash LIKE '$2_$%'),
    email_verified_at TIMESTAMP,
    created_at        TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at        TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

-- One account per address, whatever its case.
CREATE UNIQUE INDEX users_email_key ON identity.users (email_key);

-- Verification tokens: only the latest one issued to a user is usable.
CREATE TABLE identity.email_verifications (
    token_hash    BYTEA PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id       UUID NOT NULL REFERENCES identity.users (id) ON DELETE CASCADE,
    created_at    TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    expires_at    TIMESTAMP NOT NULL,
    used_at       TIMESTAMP,
    -- Set when a newer token replaced this one (resend).
    superseded_at TIMESTAMP,
    CHECK (expires_at > created_at),
    CHECK (used_at IS NULL OR superseded_at IS NULL)
);

CREATE INDEX email_verifications_user_idx ON identity.email_verifications (user_id, created_at DESC);

-- A login: the refresh tokens of one device. Revoking the session revokes all of them.
CREATE TABLE identity.sessions (
    id             UUID PRIMARY KEY,
    user_id        UUID NOT NULL REFERENCES identity.users (id) ON DELETE CASCADE,
    user_agent     TEXT CHECK (length(user_agent) <= 256),
    created_at     TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    last_used_at   TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    revoked_at     TIMESTAMP,
    revoked_reason TEXT CHECK (revoked_reason IN ('logout', 'revoked-by-user', 'refresh-token-reuse', 'password-changed')),
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);

CREATE INDEX sessions_active_idx ON identity.sessions (user_id, created_at DESC) WHERE revoked_at IS NULL;

-- Refresh tokens are single-use: using one sets rotated_at and issues its successor.
-- Presenting a rotated token again means it leaked: the whole session is revoked.
CREATE TABLE identity.refresh_tokens (
    token_hash BYTEA PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id UUID NOT NULL REFERENCES identity.sessions (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    expires_at TIMESTAMP NOT NULL,
    rotated_at TIMESTAMP,
    CHECK (expires_at > created_at)
);

CREATE INDEX refresh_tokens_session_idx ON identity.refresh_tokens (session_id);

-- Failed logins per address (SHA-256 of users.email_key's UTF-8 bytes, so the table holds
-- no addresses), counted in the database so the limit holds across instances.
CREATE TABLE identity.login_failures (
    email_key BYTEA NOT NULL CHECK (length(email_key) = 32),
    failed_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

CREATE INDEX login_failures_email_idx ON identity.login_failures (email_key, failed_at);
-- Lets each new failure prune a bounded batch of expired ones, keeping the table small.
CREATE INDEX login_failures_age_idx ON identity.login_failures (failed_at);

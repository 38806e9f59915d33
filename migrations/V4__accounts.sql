-- Accounts (components/accounts): user wallets, one per currency, and one settlement
-- account per currency through which deposits and withdrawals enter and leave the books.
--
-- Balances are derived data: only the transfer engine changes them, in the same statement
-- that writes the ledger entries they sum (see the ledger migration).

CREATE TABLE accounts.accounts (
    id         UUID PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('user', 'settlement')),
    -- The owning user; settlement accounts belong to the platform.
    owner_id   UUID REFERENCES identity.users (id),
    -- ISO 4217 code and its minor-unit scale (USD 2, VND 0, BHD 3), both taken from ISO
    -- data by the accounts component; the engine refuses amounts finer than the scale.
    currency   TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    scale      SMALLINT NOT NULL CHECK (scale BETWEEN 0 AND 4),
    -- 28 digits fit rust_decimal (and so Spin's NUMERIC mapping); 4 decimals fit every ISO
    -- 4217 minor unit.
    balance    NUMERIC(28, 4) NOT NULL DEFAULT 0,
    status     TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    -- Bumped by every change (postings, closing), for optimistic readers and audits.
    version    BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    closed_at  TIMESTAMP,
    -- A user wallet never goes below zero; a settlement account mirrors money that left or
    -- entered the platform and may.
    CONSTRAINT user_balance_not_negative CHECK (kind = 'settlement' OR balance >= 0),
    CONSTRAINT user_wallets_have_owners CHECK ((kind = 'user') = (owner_id IS NOT NULL)),
    CONSTRAINT closed_has_time CHECK ((status = 'closed') = (closed_at IS NOT NULL)),
    -- Closing needs a zero balance, and no posting can move a closed wallet off zero.
    CONSTRAINT closed_is_empty CHECK (status = 'active' OR balance = 0),
    CONSTRAINT settlement_never_closes CHECK (kind = 'user' OR status = 'active'),
    CONSTRAINT balance_within_scale CHECK (balance = round(balance, scale))
);

-- One active wallet per user and currency; a closed one may be followed by a new one.
CREATE UNIQUE INDEX accounts_one_active_wallet_idx
    ON accounts.accounts (owner_id, currency) WHERE kind = 'user' AND status = 'active';

-- Exactly one settlement account per currency.
CREATE UNIQUE INDEX accounts_one_settlement_idx
    ON accounts.accounts (currency) WHERE kind = 'settlement';

-- "My wallets, newest first".
CREATE INDEX accounts_owner_idx ON accounts.accounts (owner_id, created_at DESC, id DESC) WHERE kind = 'user';

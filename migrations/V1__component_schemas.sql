-- One schema per component (DESIGN §3). A component owns the tables in its schema; another
-- team can replace the component with its own build as long as it keeps these tables.
--   identity  users, sessions, tokens                   (components/identity)
--   accounts  wallets and settlement accounts           (components/accounts)
--   ledger    transfers, entries, idempotency keys      (components/transfers)
--   outbox    events written with the state they describe, relayed by the bridge
--
-- Timestamps in every schema are TIMESTAMP holding UTC: Spin's Postgres interface cannot
-- read TIMESTAMPTZ columns (see NOTES), so UTC is a convention enforced by the defaults
-- `now() AT TIME ZONE 'UTC'`, never by the session time zone.

CREATE SCHEMA identity;
CREATE SCHEMA accounts;
CREATE SCHEMA ledger;
CREATE SCHEMA outbox;

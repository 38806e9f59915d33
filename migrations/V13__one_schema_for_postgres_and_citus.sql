-- The ledger on Citus (distributed PostgreSQL) as well as on one PostgreSQL server.
--
-- On a Citus coordinator (the `citus` extension is installed in the database) this
-- migration distributes the tables; on plain PostgreSQL it changes no table's behaviour.
-- What both get is a schema whose statements each reach one shard:
--
-- * Every statement a request runs names its rows by the column a table is distributed by.
--   On Citus, the postings lock their wallets one statement per wallet, in id order
--   (ledger.lock_wallets, below): Citus runs a multi-row statement on its shards at once,
--   in no fixed order, and refuses a multi-shard `FOR UPDATE`. On one server they keep
--   locking them in one statement: through a function it cost a tenth of their rate.
-- * Look-ups that used a unique index on another column go through a table keyed by it:
--   identity.email_addresses (e-mail → user), accounts.owner_wallets (owner and currency →
--   active wallet), accounts.system_accounts (kind and currency → settlement or fee
--   account).
-- * Ids of what a posting creates (transfers, holds, their events) and of a user's wallets
--   are drawn so that they hash to the shard of the wallet, or user, they belong to
--   (accounts.id_on_shard_of): a transfer is found by its id alone on one shard, and it is
--   written on its payer's shard, so a transfer between two wallets on one shard is a
--   one-shard transaction. On plain PostgreSQL the id is kept as given.
--
-- Distribution (Citus only, at the end): users, their sessions, refresh tokens and e-mail
-- verifications, wallets, entries, transfers, holds, idempotency keys and outbox events
-- share one colocation group of uuid keys — a user's rows and their wallets' rows live on
-- the user's shard. E-mail addresses and login failures are distributed by e-mail, the
-- system accounts' directory is a reference table (copied to every node; written once per
-- currency), the relay's wake-up switch stays on the coordinator.

-- ---- look-up tables (both engines) -------------------------------------------------------

-- Who owns an address: unique across users however users are distributed.
CREATE TABLE identity.email_addresses (
    email_key TEXT PRIMARY KEY CHECK (length(email_key) BETWEEN 3 AND 254),
    user_id   UUID NOT NULL
);
INSERT INTO identity.email_addresses (email_key, user_id) SELECT email_key, id FROM identity.users;

-- The active wallet of each owner and currency (one at most), kept by the accounts
-- component when it opens and closes a wallet.
CREATE TABLE accounts.owner_wallets (
    owner_id   UUID NOT NULL,
    currency   TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    account_id UUID NOT NULL,
    PRIMARY KEY (owner_id, currency)
);
INSERT INTO accounts.owner_wallets (owner_id, currency, account_id)
SELECT owner_id, currency, id FROM accounts.accounts WHERE kind = 'user' AND status = 'active';

-- The settlement and fee account of each currency.
CREATE TABLE accounts.system_accounts (
    kind       TEXT NOT NULL CHECK (kind IN ('settlement', 'fees')),
    currency   TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    account_id UUID NOT NULL,
    PRIMARY KEY (kind, currency)
);
INSERT INTO accounts.system_accounts (kind, currency, account_id)
SELECT kind, currency, id FROM accounts.accounts WHERE kind IN ('settlement', 'fees');

-- A refresh token names its user, so a session's tokens are found on the user's shard.
ALTER TABLE identity.refresh_tokens ADD COLUMN user_id UUID;
UPDATE identity.refresh_tokens t SET user_id = s.user_id FROM identity.sessions s WHERE s.id = t.session_id;
ALTER TABLE identity.refresh_tokens ALTER COLUMN user_id SET NOT NULL;

-- ---- placement -----------------------------------------------------------------------------

-- `p_id`, or on Citus an id like it (a UUIDv7 keeps its time) that hashes to the shard of
-- `p_near`. Replaced below when the database is distributed.
CREATE FUNCTION accounts.id_on_shard_of(p_id UUID, p_near UUID) RETURNS UUID
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_id
$$;

-- The settlement or fee account of a currency, opened on first use. The directory row is
-- claimed first, so two first uses at once open one account.
CREATE FUNCTION accounts.system_account(p_kind TEXT, p_currency TEXT, p_scale SMALLINT) RETURNS UUID
LANGUAGE plpgsql AS $$
DECLARE
    found UUID;
    fresh UUID := gen_random_uuid();
BEGIN
    SELECT account_id INTO found FROM accounts.system_accounts WHERE kind = p_kind AND currency = p_currency;
    IF found IS NOT NULL THEN
        RETURN found;
    END IF;
    INSERT INTO accounts.system_accounts (kind, currency, account_id) VALUES (p_kind, p_currency, fresh)
    ON CONFLICT DO NOTHING
    RETURNING account_id INTO found;
    IF found IS NULL THEN
        -- Another transaction opened it and has committed (the insert waited for it).
        SELECT account_id INTO found FROM accounts.system_accounts WHERE kind = p_kind AND currency = p_currency;
        RETURN found;
    END IF;
    INSERT INTO accounts.accounts (id, kind, currency, scale) VALUES (fresh, p_kind, p_currency, p_scale);
    RETURN found;
END;
$$;

CREATE OR REPLACE FUNCTION ledger.fee_account(p_currency TEXT, p_scale SMALLINT) RETURNS UUID
LANGUAGE plpgsql AS $$
BEGIN
    RETURN accounts.system_account('fees', p_currency, p_scale);
END;
$$;

-- The active wallet in `p_currency` of the user with e-mail key `p_email_key`.
CREATE FUNCTION ledger.recipient(p_email_key TEXT, p_currency TEXT) RETURNS UUID
LANGUAGE plpgsql STABLE AS $$
DECLARE
    owner UUID;
BEGIN
    SELECT user_id INTO owner FROM identity.email_addresses WHERE email_key = p_email_key;
    IF owner IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN (SELECT account_id FROM accounts.owner_wallets WHERE owner_id = owner AND currency = p_currency);
END;
$$;

-- The owner's name of a wallet (NULL for a system account).
CREATE FUNCTION ledger.owner_name(p_account UUID) RETURNS TEXT
LANGUAGE plpgsql STABLE AS $$
DECLARE
    owner UUID;
BEGIN
    SELECT owner_id INTO owner FROM accounts.accounts WHERE id = p_account;
    RETURN (SELECT full_name FROM identity.users WHERE id = owner);
END;
$$;

-- The session check of every authenticated statement (components/common/src/db.rs): the
-- statement reads the session and its live refresh token itself — on Citus, a query on the
-- user's shard — and hands the answer here. Reading nothing, this runs wherever the
-- statement runs, on the coordinator or on a worker.
CREATE FUNCTION identity.require_live_session(p_live BOOLEAN) RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF NOT p_live THEN
        RAISE EXCEPTION 'the session of this access token has ended' USING ERRCODE = '28000';
    END IF;
    RETURN true;
END
$$;

-- The same check as one call, for replacement components that still make it (a function
-- that reads tables cannot run inside a statement Citus sends to a worker).
CREATE OR REPLACE FUNCTION identity.require_session(p_session UUID, p_user UUID) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1
    FROM identity.sessions s
    WHERE s.user_id = p_user AND s.id = p_session AND s.revoked_at IS NULL
      AND EXISTS (SELECT 1 FROM identity.refresh_tokens t
                  WHERE t.user_id = s.user_id AND t.session_id = s.id AND t.rotated_at IS NULL
                    AND t.expires_at > (now() AT TIME ZONE 'UTC'));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the session of this access token has ended' USING ERRCODE = '28000';
    END IF;
END
$$;

-- What a wallet has on hold, and what it can spend: the sum is read first (Citus refuses a
-- distributed query whose COALESCE holds a clock reading).
CREATE OR REPLACE FUNCTION ledger.held(p_account UUID) RETURNS NUMERIC
LANGUAGE plpgsql AS $$
DECLARE
    total NUMERIC;
BEGIN
    SELECT sum(amount) INTO total FROM ledger.holds
    WHERE payer_account_id = p_account AND status = 'pending'
      AND expires_at > clock_timestamp() AT TIME ZONE 'UTC';
    RETURN COALESCE(total, 0);
END;
$$;

CREATE OR REPLACE FUNCTION ledger.available(p_account accounts.accounts) RETURNS NUMERIC
LANGUAGE plpgsql AS $$
DECLARE
    total NUMERIC;
BEGIN
    SELECT sum(amount) INTO total FROM ledger.holds
    WHERE payer_account_id = p_account.id AND status = 'pending'
      AND expires_at > clock_timestamp() AT TIME ZONE 'UTC';
    RETURN p_account.balance - COALESCE(total, 0);
END;
$$;

-- ---- postings: the same rules, statements that each reach one shard ------------------------

CREATE OR REPLACE FUNCTION ledger.add_event(p_event_id UUID, p_aggregate_id UUID, p_type TEXT, p_payload JSONB)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox.events (id, aggregate_type, aggregate_id, event_type, payload)
    VALUES (accounts.id_on_shard_of(p_event_id, p_aggregate_id), 'ledger', p_aggregate_id::text, p_type, p_payload);
END;
$$;

-- The transfer's id is drawn on the shard of the wallet the posting belongs to: the payee's
-- for a deposit, the payer's otherwise.
CREATE OR REPLACE FUNCTION ledger.record_posting(
    p_id UUID, p_kind TEXT, p_from UUID, p_to UUID, p_currency TEXT, p_scale SMALLINT,
    p_amount NUMERIC, p_description TEXT, p_initiator UUID, p_refund_of UUID,
    p_fee NUMERIC, p_fee_account UUID, p_hold_id UUID)
RETURNS ledger.transfers
LANGUAGE plpgsql AS $$
DECLARE
    drawn_id UUID;
    posted ledger.transfers;
    stamp TIMESTAMP := now() AT TIME ZONE 'UTC';
    from_balance NUMERIC;
    from_version BIGINT;
    to_balance NUMERIC;
    to_version BIGINT;
    fee_balance NUMERIC;
    fee_version BIGINT;
BEGIN
    IF p_kind = 'deposit' THEN
        drawn_id := accounts.id_on_shard_of(p_id, p_to);
    ELSE
        drawn_id := accounts.id_on_shard_of(p_id, p_from);
    END IF;
    INSERT INTO ledger.transfers (id, kind, from_account_id, to_account_id, currency, scale, amount, fee,
                                  description, initiated_by, refund_of, hold_id, created_at)
    VALUES (drawn_id, p_kind, p_from, p_to, p_currency, p_scale, p_amount, p_fee, p_description, p_initiator,
            p_refund_of, p_hold_id, stamp)
    RETURNING * INTO posted;
    UPDATE accounts.accounts
    SET balance = balance - p_amount - p_fee, version = version + 1, updated_at = stamp
    WHERE id = p_from
    RETURNING balance, version INTO from_balance, from_version;
    UPDATE accounts.accounts
    SET balance = balance + p_amount, version = version + 1, updated_at = stamp
    WHERE id = p_to
    RETURNING balance, version INTO to_balance, to_version;
    INSERT INTO ledger.entries (transfer_id, account_id, amount, balance_after, account_version, created_at)
    VALUES (posted.id, p_from, -(p_amount + p_fee), from_balance, from_version, stamp),
           (posted.id, p_to, p_amount, to_balance, to_version, stamp);
    IF p_fee > 0 THEN
        UPDATE accounts.accounts
        SET balance = balance + p_fee, version = version + 1, updated_at = stamp
        WHERE id = p_fee_account
        RETURNING balance, version INTO fee_balance, fee_version;
        INSERT INTO ledger.entries (transfer_id, account_id, amount, balance_after, account_version, created_at)
        VALUES (posted.id, p_fee_account, p_fee, fee_balance, fee_version, stamp);
    END IF;
    RETURN posted;
END;
$$;

-- Policy requirements, checked under the wallet lock. A ceiling counts the wallet's own
-- postings of the kind in its window: the wallet's entries newest first, fifty at a time,
-- and their transfers by id (drawn on the wallet's shard), until an entry is older than the
-- window by a minute.
CREATE OR REPLACE FUNCTION ledger.failed_requirement(p_terms JSONB, p_kind TEXT, p_user UUID,
                                                     p_wallet accounts.accounts, p_amount NUMERIC)
RETURNS JSONB
LANGUAGE plpgsql STABLE AS $$
DECLARE
    requirement JSONB;
    requirements JSONB := COALESCE(p_terms -> 'requirements', '[]');
    i INT;
    window_secs INT;
    counted_window INT;
    window_count BIGINT;
    window_amount NUMERIC;
    cutoff TIMESTAMP;
    below BIGINT;
    batch UUID[];
    lowest BIGINT;
    oldest TIMESTAMP;
    posting RECORD;
BEGIN
    FOR i IN 0 .. jsonb_array_length(requirements) - 1 LOOP
        requirement := requirements -> i;
        CASE requirement ->> 'check'
        WHEN 'verified-initiator' THEN
            IF NOT EXISTS (SELECT 1 FROM identity.users WHERE id = p_user AND email_verified_at IS NOT NULL) THEN
                RETURN requirement -> 'problem';
            END IF;
        WHEN 'initiator-age' THEN
            IF NOT EXISTS (SELECT 1 FROM identity.users WHERE id = p_user
                           AND created_at <= (now() AT TIME ZONE 'UTC') - (requirement ->> 'minAgeSecs')::bigint * interval '1 second') THEN
                RETURN requirement -> 'problem';
            END IF;
        WHEN 'ceiling' THEN
            -- A ceiling naming the wallet's currency replaces, for its policy and window,
            -- the ones naming none.
            CONTINUE WHEN requirement ->> 'currency' IS DISTINCT FROM p_wallet.currency
                AND (requirement ->> 'currency' IS NOT NULL OR EXISTS (
                    SELECT 1 FROM jsonb_array_elements(requirements) other
                    WHERE other ->> 'check' = 'ceiling' AND other -> 'policy' = requirement -> 'policy'
                      AND other -> 'windowSecs' = requirement -> 'windowSecs'
                      AND other ->> 'currency' = p_wallet.currency));
            window_secs := (requirement ->> 'windowSecs')::int;
            IF window_secs = 0 THEN
                window_count := 0;
                window_amount := 0;
            ELSIF counted_window IS DISTINCT FROM window_secs THEN
                window_count := 0;
                window_amount := 0;
                cutoff := (now() AT TIME ZONE 'UTC') - window_secs * interval '1 second';
                below := p_wallet.version + 1;
                LOOP
                    -- The wallet's own postings of the kind: money in for a deposit, out otherwise.
                    SELECT array_agg(transfer_id), min(account_version), min(created_at)
                    INTO batch, lowest, oldest
                    FROM (SELECT e.transfer_id, e.account_version, e.created_at FROM ledger.entries e
                          WHERE e.account_id = p_wallet.id AND e.account_version < below
                          ORDER BY e.account_version DESC
                          LIMIT 50) newest;
                    EXIT WHEN batch IS NULL;
                    FOR posting IN
                        SELECT t.created_at, t.kind, t.amount,
                               CASE WHEN t.kind = 'deposit' THEN t.to_account_id ELSE t.from_account_id END AS wallet
                        FROM ledger.transfers t
                        WHERE t.id = ANY (batch)
                    LOOP
                        CONTINUE WHEN posting.created_at < cutoff OR posting.kind <> p_kind OR posting.wallet <> p_wallet.id;
                        window_count := window_count + 1;
                        window_amount := window_amount + posting.amount;
                    END LOOP;
                    EXIT WHEN oldest < cutoff - interval '1 minute';
                    below := lowest;
                END LOOP;
                counted_window := window_secs;
            END IF;
            IF window_count + 1 > (requirement ->> 'maxCount')::bigint
               OR window_amount + p_amount > (requirement ->> 'maxAmount')::numeric THEN
                RETURN requirement -> 'problem';
            END IF;
        END CASE;
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION ledger.transfer(
    p_user UUID, p_key TEXT, p_fingerprint BYTEA, p_key_ttl_secs BIGINT,
    p_transfer_id UUID, p_event_id UUID,
    p_from UUID, p_to UUID, p_to_email_key TEXT, p_currency TEXT, p_amount NUMERIC, p_description TEXT,
    p_terms JSONB)
RETURNS ledger.posting_result
LANGUAGE plpgsql
SET lock_timeout = '10s'
AS $$
DECLARE
    outcome ledger.posting_result;
    target UUID := p_to;
    fee NUMERIC := COALESCE((p_terms ->> 'fee')::numeric, 0);
    fee_account UUID;
    fee_scale SMALLINT;
    locked accounts.accounts;
    source accounts.accounts;
    destination accounts.accounts;
    refusal JSONB;
    posted ledger.transfers;
BEGIN
    outcome := ledger.claim_key(p_user, p_key, p_fingerprint, p_key_ttl_secs);
    -- A row test (`outcome IS NOT NULL`) would be false: a replay has a NULL body or problem.
    IF outcome.status IS NOT NULL THEN
        RETURN outcome;
    END IF;
    IF target IS NULL THEN
        target := ledger.recipient(p_to_email_key, p_currency);
        IF target IS NULL THEN
            RETURN ledger.settle_key(p_user, p_key, 404, NULL, 'recipient-not-found');
        END IF;
    END IF;
    IF target = p_from THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'same-account');
    END IF;
    IF fee > 0 THEN
        SELECT scale INTO fee_scale FROM accounts.accounts WHERE id = p_from;
        fee_account := ledger.fee_account(p_currency, fee_scale);
    END IF;
    FOR locked IN SELECT * FROM accounts.accounts WHERE id IN (p_from, target, fee_account) ORDER BY id FOR UPDATE LOOP
        IF locked.id = p_from THEN
            source := locked;
        ELSIF locked.id = target THEN
            destination := locked;
        END IF;
    END LOOP;
    IF source.id IS NULL OR source.owner_id IS DISTINCT FROM p_user THEN
        RETURN ledger.settle_key(p_user, p_key, 404, NULL, 'account-not-found');
    END IF;
    IF destination.id IS NULL OR destination.kind <> 'user' THEN
        RETURN ledger.settle_key(p_user, p_key, 404, NULL, 'recipient-not-found');
    END IF;
    IF source.status <> 'active' OR destination.status <> 'active' THEN
        RETURN ledger.settle_key(p_user, p_key, 409, NULL, 'account-closed');
    END IF;
    IF source.currency <> p_currency OR destination.currency <> p_currency THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'currency-mismatch');
    END IF;
    refusal := ledger.failed_requirement(p_terms, 'transfer', p_user, source, p_amount);
    IF refusal IS NOT NULL THEN
        RETURN ledger.refuse(p_user, p_key, refusal);
    END IF;
    IF ledger.available(source) < p_amount + fee THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'insufficient-funds');
    END IF;
    posted := ledger.record_posting(p_transfer_id, 'transfer', p_from, target, p_currency, source.scale,
                                    p_amount, p_description, p_user, NULL, fee, fee_account, NULL);
    PERFORM ledger.add_event(p_event_id, posted.id, 'transfer.completed',
        ledger.posting_event(posted) || jsonb_build_object(
            'fee', round(posted.fee, posted.scale)::text,
            'description', posted.description,
            'sender', ledger.party_json(source),
            'recipient', ledger.party_json(destination)));
    RETURN ledger.settle_key(p_user, p_key, 201, ledger.transfer_json(posted), NULL);
END;
$$;

CREATE OR REPLACE FUNCTION ledger.settle(
    p_direction TEXT,
    p_user UUID, p_key TEXT, p_fingerprint BYTEA, p_key_ttl_secs BIGINT,
    p_transfer_id UUID, p_event_id UUID,
    p_account UUID, p_amount NUMERIC, p_terms JSONB)
RETURNS ledger.posting_result
LANGUAGE plpgsql
SET lock_timeout = '10s'
AS $$
DECLARE
    outcome ledger.posting_result;
    wallet accounts.accounts;
    settlement UUID;
    locked accounts.accounts;
    refusal JSONB;
    posted ledger.transfers;
    balance_after NUMERIC;
BEGIN
    outcome := ledger.claim_key(p_user, p_key, p_fingerprint, p_key_ttl_secs);
    IF outcome.status IS NOT NULL THEN
        RETURN outcome;
    END IF;
    SELECT * INTO wallet FROM accounts.accounts WHERE id = p_account AND owner_id = p_user;
    IF wallet.id IS NULL THEN
        RETURN ledger.settle_key(p_user, p_key, 404, NULL, 'account-not-found');
    END IF;
    IF p_amount <> round(p_amount, wallet.scale) THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'amount-too-precise');
    END IF;
    settlement := accounts.system_account('settlement', wallet.currency, wallet.scale);
    FOR locked IN SELECT * FROM accounts.accounts WHERE id IN (p_account, settlement) ORDER BY id FOR UPDATE LOOP
        IF locked.id = p_account THEN
            wallet := locked;
        END IF;
    END LOOP;
    IF wallet.status <> 'active' THEN
        RETURN ledger.settle_key(p_user, p_key, 409, NULL, 'account-closed');
    END IF;
    refusal := ledger.failed_requirement(p_terms, p_direction, p_user, wallet, p_amount);
    IF refusal IS NOT NULL THEN
        RETURN ledger.refuse(p_user, p_key, refusal);
    END IF;
    IF p_direction = 'withdrawal' AND ledger.available(wallet) < p_amount THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'insufficient-funds');
    END IF;
    IF p_direction = 'deposit' THEN
        posted := ledger.record_posting(p_transfer_id, 'deposit', settlement, p_account, wallet.currency,
                                        wallet.scale, p_amount, NULL, p_user, NULL, 0, NULL, NULL);
    ELSE
        posted := ledger.record_posting(p_transfer_id, 'withdrawal', p_account, settlement, wallet.currency,
                                        wallet.scale, p_amount, NULL, p_user, NULL, 0, NULL, NULL);
    END IF;
    SELECT balance INTO balance_after FROM accounts.accounts WHERE id = p_account;
    PERFORM ledger.add_event(p_event_id, posted.id, p_direction || '.completed',
        ledger.posting_event(posted) || jsonb_build_object(
            'account', ledger.party_json(wallet),
            'balanceAfter', round(balance_after, posted.scale)::text));
    RETURN ledger.settle_key(p_user, p_key, 201, ledger.transfer_json(posted), NULL);
END;
$$;

CREATE OR REPLACE FUNCTION ledger.refund(
    p_user UUID, p_key TEXT, p_fingerprint BYTEA, p_key_ttl_secs BIGINT,
    p_refund_id UUID, p_event_id UUID,
    p_original UUID, p_amount NUMERIC, p_terms JSONB)
RETURNS ledger.posting_result
LANGUAGE plpgsql
SET lock_timeout = '10s'
AS $$
DECLARE
    outcome ledger.posting_result;
    original ledger.transfers;
    payee_owner UUID;
    locked accounts.accounts;
    refunder accounts.accounts;
    refundee accounts.accounts;
    refund_amount NUMERIC;
    refusal JSONB;
    posted ledger.transfers;
BEGIN
    outcome := ledger.claim_key(p_user, p_key, p_fingerprint, p_key_ttl_secs);
    IF outcome.status IS NOT NULL THEN
        RETURN outcome;
    END IF;
    SELECT * INTO original FROM ledger.transfers WHERE id = p_original FOR UPDATE;
    SELECT owner_id INTO payee_owner FROM accounts.accounts WHERE id = original.to_account_id;
    IF original.id IS NULL OR payee_owner IS DISTINCT FROM p_user THEN
        RETURN ledger.settle_key(p_user, p_key, 404, NULL, 'transfer-not-found');
    END IF;
    IF original.kind <> 'transfer' THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'not-refundable');
    END IF;
    refund_amount := COALESCE(p_amount, original.amount - original.refunded_amount);
    IF refund_amount <> round(refund_amount, original.scale) THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'amount-too-precise');
    END IF;
    IF refund_amount <= 0 OR original.refunded_amount + refund_amount > original.amount THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'refund-exceeds-transfer');
    END IF;
    FOR locked IN SELECT * FROM accounts.accounts
                  WHERE id IN (original.from_account_id, original.to_account_id) ORDER BY id FOR UPDATE LOOP
        IF locked.id = original.to_account_id THEN
            refunder := locked;
        ELSE
            refundee := locked;
        END IF;
    END LOOP;
    IF refunder.status <> 'active' OR refundee.status <> 'active' THEN
        RETURN ledger.settle_key(p_user, p_key, 409, NULL, 'account-closed');
    END IF;
    refusal := ledger.failed_requirement(p_terms, 'refund', p_user, refunder, refund_amount);
    IF refusal IS NOT NULL THEN
        RETURN ledger.refuse(p_user, p_key, refusal);
    END IF;
    IF ledger.available(refunder) < refund_amount THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'insufficient-funds');
    END IF;
    UPDATE ledger.transfers SET refunded_amount = refunded_amount + refund_amount WHERE id = original.id
    RETURNING * INTO original;
    posted := ledger.record_posting(p_refund_id, 'refund', refunder.id, refundee.id, original.currency,
                                    original.scale, refund_amount, 'Refund of ' || original.id, p_user, original.id,
                                    0, NULL, NULL);
    PERFORM ledger.add_event(p_event_id, original.id, 'transfer.refunded',
        ledger.posting_event(posted) || jsonb_build_object(
            'refundId', posted.id,
            'transferId', original.id,
            'refundedAmount', round(original.refunded_amount, original.scale)::text,
            'transferAmount', round(original.amount, original.scale)::text,
            'refundedBy', ledger.party_json(refunder),
            'refundedTo', ledger.party_json(refundee)));
    RETURN ledger.settle_key(p_user, p_key, 201, ledger.transfer_json(posted), NULL);
END;
$$;

-- ---- holds ---------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION ledger.hold_json(h ledger.holds) RETURNS JSONB
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN ledger.hold_json(h, ledger.owner_name(h.payer_account_id), ledger.owner_name(h.payee_account_id));
END;
$$;

-- The hold `p_hold` locked, if `p_user` owns its payee's wallet or (`p_role` 'party') its
-- payer's. Holds are distributed by payer: the payer is found first (asking every shard on
-- Citus, without a lock), then the hold is locked on its shard.
CREATE OR REPLACE FUNCTION ledger.lock_hold(p_hold UUID, p_user UUID, p_role TEXT) RETURNS ledger.holds
LANGUAGE plpgsql AS $$
DECLARE
    payer UUID;
    owner UUID;
    found ledger.holds;
BEGIN
    SELECT payer_account_id INTO payer FROM ledger.holds WHERE id = p_hold;
    IF payer IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO found FROM ledger.holds WHERE payer_account_id = payer AND id = p_hold FOR UPDATE;
    SELECT owner_id INTO owner FROM accounts.accounts WHERE id = found.payee_account_id;
    IF owner = p_user THEN
        RETURN found;
    END IF;
    SELECT owner_id INTO owner FROM accounts.accounts WHERE id = found.payer_account_id;
    IF p_role = 'party' AND owner = p_user THEN
        RETURN found;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION ledger.place_hold(
    p_user UUID, p_key TEXT, p_fingerprint BYTEA, p_key_ttl_secs BIGINT,
    p_hold_id UUID, p_event_id UUID,
    p_from UUID, p_to UUID, p_to_email_key TEXT, p_currency TEXT, p_amount NUMERIC, p_description TEXT,
    p_expires_in_secs BIGINT, p_terms JSONB)
RETURNS ledger.posting_result
LANGUAGE plpgsql
SET lock_timeout = '10s'
AS $$
DECLARE
    outcome ledger.posting_result;
    target UUID := p_to;
    locked accounts.accounts;
    payer accounts.accounts;
    payee accounts.accounts;
    refusal JSONB;
    stamp TIMESTAMP := now() AT TIME ZONE 'UTC';
    placed ledger.holds;
    payer_party JSONB;
    payee_party JSONB;
BEGIN
    outcome := ledger.claim_key(p_user, p_key, p_fingerprint, p_key_ttl_secs);
    IF outcome.status IS NOT NULL THEN
        RETURN outcome;
    END IF;
    IF target IS NULL THEN
        target := ledger.recipient(p_to_email_key, p_currency);
        IF target IS NULL THEN
            RETURN ledger.settle_key(p_user, p_key, 404, NULL, 'recipient-not-found');
        END IF;
    END IF;
    IF target = p_from THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'same-account');
    END IF;
    FOR locked IN SELECT * FROM accounts.accounts WHERE id IN (p_from, target) ORDER BY id FOR UPDATE LOOP
        IF locked.id = p_from THEN
            payer := locked;
        ELSE
            payee := locked;
        END IF;
    END LOOP;
    IF payer.id IS NULL OR payer.owner_id IS DISTINCT FROM p_user THEN
        RETURN ledger.settle_key(p_user, p_key, 404, NULL, 'account-not-found');
    END IF;
    IF payee.id IS NULL OR payee.kind <> 'user' THEN
        RETURN ledger.settle_key(p_user, p_key, 404, NULL, 'recipient-not-found');
    END IF;
    IF payer.status <> 'active' OR payee.status <> 'active' THEN
        RETURN ledger.settle_key(p_user, p_key, 409, NULL, 'account-closed');
    END IF;
    IF payer.currency <> p_currency OR payee.currency <> p_currency THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'currency-mismatch');
    END IF;
    IF p_amount <> round(p_amount, payer.scale) THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'amount-too-precise');
    END IF;
    refusal := ledger.failed_requirement(p_terms, 'transfer', p_user, payer, p_amount);
    IF refusal IS NOT NULL THEN
        RETURN ledger.refuse(p_user, p_key, refusal);
    END IF;
    IF ledger.available(payer) < p_amount THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'insufficient-funds');
    END IF;
    UPDATE accounts.accounts SET version = version + 1, updated_at = stamp WHERE id = payer.id;
    UPDATE accounts.accounts SET version = version + 1, updated_at = stamp WHERE id = payee.id;
    INSERT INTO ledger.holds (id, payer_account_id, payee_account_id, currency, scale, amount, description,
                              initiated_by, expires_at, created_at, payer_version, payee_version,
                              payer_balance, payee_balance)
    VALUES (accounts.id_on_shard_of(p_hold_id, payer.id), payer.id, payee.id, p_currency, payer.scale, p_amount,
            p_description, p_user, stamp + p_expires_in_secs * interval '1 second', stamp,
            payer.version + 1, payee.version + 1, payer.balance, payee.balance)
    RETURNING * INTO placed;
    payer_party := ledger.party_json(payer);
    payee_party := ledger.party_json(payee);
    PERFORM ledger.add_event(p_event_id, placed.id, 'hold.placed',
        ledger.hold_event(placed, payer_party, payee_party)
        || jsonb_build_object('createdAt', to_char(placed.created_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')));
    RETURN ledger.settle_key(p_user, p_key, 201,
                             ledger.hold_json(placed, payer_party ->> 'fullName', payee_party ->> 'fullName'), NULL);
END;
$$;

CREATE OR REPLACE FUNCTION ledger.capture_hold(
    p_user UUID, p_key TEXT, p_fingerprint BYTEA, p_key_ttl_secs BIGINT,
    p_transfer_id UUID, p_event_id UUID, p_hold UUID, p_amount NUMERIC, p_terms JSONB)
RETURNS ledger.posting_result
LANGUAGE plpgsql
SET lock_timeout = '10s'
AS $$
DECLARE
    outcome ledger.posting_result;
    hold ledger.holds;
    fee NUMERIC := COALESCE((p_terms ->> 'fee')::numeric, 0);
    fee_account UUID;
    captured NUMERIC;
    locked accounts.accounts;
    payer accounts.accounts;
    payee accounts.accounts;
    refusal JSONB;
    posted ledger.transfers;
    payer_party JSONB;
    payee_party JSONB;
BEGIN
    outcome := ledger.claim_key(p_user, p_key, p_fingerprint, p_key_ttl_secs);
    IF outcome.status IS NOT NULL THEN
        RETURN outcome;
    END IF;
    hold := ledger.lock_hold(p_hold, p_user, 'payee');
    IF hold.id IS NULL THEN
        IF (ledger.lock_hold(p_hold, p_user, 'party')).id IS NOT NULL THEN
            RETURN ledger.settle_key(p_user, p_key, 403, NULL, 'capture-by-payee-only');
        END IF;
        RETURN ledger.settle_key(p_user, p_key, 404, NULL, 'hold-not-found');
    END IF;
    captured := COALESCE(p_amount, hold.amount);
    IF captured <> round(captured, hold.scale) THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'amount-too-precise');
    END IF;
    IF fee > 0 THEN
        fee_account := ledger.fee_account(hold.currency, hold.scale);
    END IF;
    FOR locked IN SELECT * FROM accounts.accounts
                  WHERE id IN (hold.payer_account_id, hold.payee_account_id, fee_account) ORDER BY id FOR UPDATE LOOP
        IF locked.id = hold.payer_account_id THEN
            payer := locked;
        ELSIF locked.id = hold.payee_account_id THEN
            payee := locked;
        END IF;
    END LOOP;
    IF hold.status <> 'pending' THEN
        RETURN ledger.settle_key(p_user, p_key, 409, NULL, 'hold-not-active');
    END IF;
    IF ledger.hold_status(hold) = 'expired' THEN
        RETURN ledger.settle_key(p_user, p_key, 409, NULL, 'hold-expired');
    END IF;
    IF captured <= 0 OR captured > hold.amount THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'capture-exceeds-hold');
    END IF;
    IF payer.status <> 'active' OR payee.status <> 'active' THEN
        RETURN ledger.settle_key(p_user, p_key, 409, NULL, 'account-closed');
    END IF;
    refusal := ledger.failed_requirement(p_terms, 'transfer', hold.initiated_by, payer, captured);
    IF refusal IS NOT NULL THEN
        RETURN ledger.refuse(p_user, p_key, refusal);
    END IF;
    IF ledger.available(payer) + hold.amount < captured + fee THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'insufficient-funds');
    END IF;
    posted := ledger.record_posting(p_transfer_id, 'transfer', payer.id, payee.id, hold.currency, hold.scale,
                                    captured, hold.description, hold.initiated_by, NULL, fee, fee_account, hold.id);
    UPDATE ledger.holds
    SET status = 'captured', captured_amount = captured, transfer_id = posted.id, settled_at = posted.created_at
    WHERE payer_account_id = hold.payer_account_id AND id = hold.id
    RETURNING * INTO hold;
    payer_party := ledger.party_json(payer);
    payee_party := ledger.party_json(payee);
    PERFORM ledger.add_event(p_event_id, hold.id, 'hold.captured',
        ledger.hold_event(hold, payer_party, payee_party) || jsonb_build_object(
            'transferId', posted.id,
            'capturedAmount', round(captured, hold.scale)::text,
            'releasedAmount', round(hold.amount - captured, hold.scale)::text,
            'fee', round(posted.fee, posted.scale)::text,
            'createdAt', to_char(posted.created_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')));
    RETURN ledger.settle_key(p_user, p_key, 201,
                             ledger.hold_json(hold, payer_party ->> 'fullName', payee_party ->> 'fullName')
                             || jsonb_build_object('transfer', ledger.transfer_json(posted)),
                             NULL);
END;
$$;

CREATE OR REPLACE FUNCTION ledger.void_hold(
    p_user UUID, p_key TEXT, p_fingerprint BYTEA, p_key_ttl_secs BIGINT, p_event_id UUID, p_hold UUID)
RETURNS ledger.posting_result
LANGUAGE plpgsql
SET lock_timeout = '10s'
AS $$
DECLARE
    outcome ledger.posting_result;
    hold ledger.holds;
    payer accounts.accounts;
    payee accounts.accounts;
    payer_party JSONB;
    payee_party JSONB;
BEGIN
    outcome := ledger.claim_key(p_user, p_key, p_fingerprint, p_key_ttl_secs);
    IF outcome.status IS NOT NULL THEN
        RETURN outcome;
    END IF;
    hold := ledger.lock_hold(p_hold, p_user, 'party');
    IF hold.id IS NULL THEN
        RETURN ledger.settle_key(p_user, p_key, 404, NULL, 'hold-not-found');
    END IF;
    IF hold.status <> 'pending' THEN
        RETURN ledger.settle_key(p_user, p_key, 409, NULL, 'hold-not-active');
    END IF;
    IF ledger.hold_status(hold) = 'expired' THEN
        RETURN ledger.settle_key(p_user, p_key, 409, NULL, 'hold-expired');
    END IF;
    SELECT * INTO payer FROM accounts.accounts WHERE id = hold.payer_account_id;
    SELECT * INTO payee FROM accounts.accounts WHERE id = hold.payee_account_id;
    UPDATE ledger.holds
    SET status = 'voided', settled_at = now() AT TIME ZONE 'UTC',
        voided_by = CASE WHEN payee.owner_id = p_user THEN 'payee' ELSE 'payer' END
    WHERE payer_account_id = hold.payer_account_id AND id = hold.id
    RETURNING * INTO hold;
    payer_party := ledger.party_json(payer);
    payee_party := ledger.party_json(payee);
    PERFORM ledger.add_event(p_event_id, hold.id, 'hold.voided',
        ledger.hold_event(hold, payer_party, payee_party) || jsonb_build_object(
            'voidedBy', hold.voided_by,
            'voidedAt', to_char(hold.settled_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')));
    RETURN ledger.settle_key(p_user, p_key, 200,
                             ledger.hold_json(hold, payer_party ->> 'fullName', payee_party ->> 'fullName'), NULL);
END;
$$;

-- The sweeper: up to `p_limit` expired holds marked, each with its event. Candidates are
-- read without locks (on Citus from every shard), then each is locked on its shard,
-- skipping one a capture or void holds, and marked only if it is still pending.
CREATE OR REPLACE FUNCTION ledger.expire_holds(p_limit INT) RETURNS INT
LANGUAGE plpgsql AS $$
DECLARE
    candidate RECORD;
    hold ledger.holds;
    payer accounts.accounts;
    payee accounts.accounts;
    swept INT := 0;
BEGIN
    FOR candidate IN
        SELECT id, payer_account_id FROM ledger.holds
        WHERE status = 'pending' AND expires_at <= clock_timestamp() AT TIME ZONE 'UTC'
        ORDER BY expires_at
        LIMIT p_limit
    LOOP
        SELECT * INTO hold FROM ledger.holds
        WHERE payer_account_id = candidate.payer_account_id AND id = candidate.id AND status = 'pending'
        FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        UPDATE ledger.holds SET status = 'expired', settled_at = hold.expires_at
        WHERE payer_account_id = hold.payer_account_id AND id = hold.id
        RETURNING * INTO hold;
        SELECT * INTO payer FROM accounts.accounts WHERE id = hold.payer_account_id;
        SELECT * INTO payee FROM accounts.accounts WHERE id = hold.payee_account_id;
        PERFORM ledger.add_event(gen_random_uuid(), hold.id, 'hold.expired',
                                 ledger.hold_event(hold, ledger.party_json(payer), ledger.party_json(payee)));
        swept := swept + 1;
    END LOOP;
    RETURN swept;
END;
$$;

-- ---- reading: look-ups by the key each table is distributed by -------------------------

-- GET /accounts/{id}: the wallet, if `p_owner` owns it (else NULL).
CREATE FUNCTION accounts.owned_wallet(p_id UUID, p_owner UUID) RETURNS accounts.accounts
LANGUAGE plpgsql STABLE AS $$
DECLARE
    found accounts.accounts;
BEGIN
    SELECT * INTO found FROM accounts.accounts WHERE id = p_id AND owner_id = p_owner;
    RETURN found;
END;
$$;

-- The active holds on a wallet's money and in its favour, newest first, at most `p_limit`,
-- as their JSON (names included). The holds in its favour are found on every shard on Citus
-- (holds are distributed by payer).
CREATE FUNCTION ledger.wallet_holds(p_wallet UUID, p_limit BIGINT) RETURNS JSONB
LANGUAGE plpgsql STABLE AS $$
DECLARE
    hold ledger.holds;
    listed JSONB := '[]';
BEGIN
    FOR hold IN
        SELECT * FROM (
            (SELECT * FROM ledger.holds h
             WHERE h.payer_account_id = p_wallet AND h.status = 'pending'
               AND h.expires_at > clock_timestamp() AT TIME ZONE 'UTC'
             ORDER BY h.created_at DESC, h.id DESC LIMIT p_limit)
            UNION ALL
            (SELECT * FROM ledger.holds h
             WHERE h.payee_account_id = p_wallet AND h.status = 'pending'
               AND h.expires_at > clock_timestamp() AT TIME ZONE 'UTC'
             ORDER BY h.created_at DESC, h.id DESC LIMIT p_limit)
        ) both_sides
        ORDER BY created_at DESC, id DESC
        LIMIT p_limit
    LOOP
        listed := listed || jsonb_build_array(ledger.hold_json(hold));
    END LOOP;
    RETURN listed;
END;
$$;

-- GET /transfers/{id}: the transfer, if `p_user` owns one of its two wallets (else NULL).
CREATE FUNCTION ledger.visible_transfer(p_id UUID, p_user UUID) RETURNS ledger.transfers
LANGUAGE plpgsql STABLE AS $$
DECLARE
    found ledger.transfers;
BEGIN
    SELECT * INTO found FROM ledger.transfers WHERE id = p_id;
    IF found.id IS NULL THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM accounts.accounts WHERE id = found.from_account_id AND owner_id = p_user)
       OR EXISTS (SELECT 1 FROM accounts.accounts WHERE id = found.to_account_id AND owner_id = p_user) THEN
        RETURN found;
    END IF;
    RETURN NULL;
END;
$$;

-- GET /holds/{id}: the hold, if `p_user` owns its payer's or payee's wallet (else NULL).
-- Holds are distributed by payer: on Citus the id alone asks every shard.
CREATE FUNCTION ledger.visible_hold(p_id UUID, p_user UUID) RETURNS ledger.holds
LANGUAGE plpgsql STABLE AS $$
DECLARE
    found ledger.holds;
BEGIN
    SELECT * INTO found FROM ledger.holds WHERE id = p_id;
    IF found.id IS NULL THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM accounts.accounts WHERE id = found.payer_account_id AND owner_id = p_user)
       OR EXISTS (SELECT 1 FROM accounts.accounts WHERE id = found.payee_account_id AND owner_id = p_user) THEN
        RETURN found;
    END IF;
    RETURN NULL;
END;
$$;

-- GET /accounts/{id}/transactions: one page of a wallet's history, newest first — its
-- entries and the holds on its money and in its favour, by wallet version — or no row when
-- `p_user` does not own the user wallet `p_wallet`; a wallet with no history gives one row
-- of NULLs but its scale. Each look-up names the rows it needs by their distribution key
-- (the entries by wallet, their transfers and counterparties by id); the holds in a
-- wallet's favour are found on every shard (holds are distributed by payer).
CREATE FUNCTION ledger.history(p_wallet UUID, p_user UUID, p_before BIGINT, p_from TIMESTAMP,
                               p_to TIMESTAMP, p_limit BIGINT)
RETURNS TABLE (scale SMALLINT, item_id TEXT, transfer_id UUID, kind TEXT, amount NUMERIC,
               balance_after NUMERIC, other_wallet_id UUID, other_wallet_kind TEXT, full_name TEXT,
               description TEXT, created_at TIMESTAMP, version BIGINT, fee NUMERIC, hold_id UUID,
               hold_status TEXT)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    wallet accounts.accounts;
BEGIN
    SELECT * INTO wallet FROM accounts.accounts a WHERE a.id = p_wallet;
    IF wallet.id IS NULL OR wallet.owner_id IS DISTINCT FROM p_user OR wallet.kind <> 'user' THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH page_entries AS MATERIALIZED (
        SELECT e.id, e.transfer_id, e.account_id, e.amount, e.balance_after, e.account_version, e.created_at
        FROM ledger.entries e
        WHERE e.account_id = p_wallet
          AND (p_before IS NULL OR e.account_version < p_before)
          AND (p_from IS NULL OR e.created_at >= p_from)
          AND (p_to IS NULL OR e.created_at < p_to)
        ORDER BY e.account_version DESC
        LIMIT p_limit
    ), page_transfers AS MATERIALIZED (
        SELECT t.* FROM ledger.transfers t WHERE t.id = ANY (ARRAY(SELECT pe.transfer_id FROM page_entries pe))
    ), page_holds AS MATERIALIZED (
        (SELECT h.payer_version AS version, 'hold-out' AS kind, -h.amount AS signed_amount,
                h.payer_balance AS balance, h.payee_account_id AS other, h AS hold
         FROM ledger.holds h
         WHERE h.payer_account_id = p_wallet
           AND (p_before IS NULL OR h.payer_version < p_before)
           AND (p_from IS NULL OR h.created_at >= p_from)
           AND (p_to IS NULL OR h.created_at < p_to)
         ORDER BY h.payer_version DESC
         LIMIT p_limit)
        UNION ALL
        (SELECT h.payee_version, 'hold-in', h.amount, h.payee_balance, h.payer_account_id, h
         FROM ledger.holds h
         WHERE h.payee_account_id = p_wallet
           AND (p_before IS NULL OR h.payee_version < p_before)
           AND (p_from IS NULL OR h.created_at >= p_from)
           AND (p_to IS NULL OR h.created_at < p_to)
         ORDER BY h.payee_version DESC
         LIMIT p_limit)
    ), items AS MATERIALIZED (
        SELECT * FROM (
            SELECT pe.account_version AS version, pe.id::text AS item_id, pe.transfer_id, t.kind, pe.amount,
                   pe.balance_after,
                   -- The wallet on the other side (a transfer with a fee has a third entry,
                   -- the platform's fee account, which is nobody's counterparty).
                   CASE WHEN pe.account_id = t.from_account_id THEN t.to_account_id ELSE t.from_account_id END AS other,
                   t.description, pe.created_at,
                   CASE WHEN pe.account_id = t.from_account_id THEN t.fee END AS fee,
                   t.hold_id, NULL::text AS hold_status
            FROM page_entries pe JOIN page_transfers t ON t.id = pe.transfer_id
            UNION ALL
            -- Holds move nothing: the balance is the one they found.
            SELECT ph.version, 'hold:' || (ph.hold).id, (ph.hold).transfer_id, ph.kind, ph.signed_amount,
                   ph.balance, ph.other, (ph.hold).description, (ph.hold).created_at, NULL, (ph.hold).id,
                   ledger.hold_status(ph.hold)
            FROM page_holds ph
        ) merged
        ORDER BY merged.version DESC
        LIMIT p_limit
    ), others AS MATERIALIZED (
        SELECT a.id, a.kind, a.owner_id FROM accounts.accounts a WHERE a.id = ANY (ARRAY(SELECT i.other FROM items i))
    ), names AS MATERIALIZED (
        SELECT u.id, u.full_name FROM identity.users u WHERE u.id = ANY (ARRAY(SELECT o.owner_id FROM others o))
    )
    SELECT wallet.scale, i.item_id, i.transfer_id, i.kind, i.amount, i.balance_after, o.id, o.kind,
           n.full_name, i.description, i.created_at, i.version, i.fee, i.hold_id, i.hold_status
    FROM (SELECT 1) AS one
    LEFT JOIN (items i JOIN others o ON o.id = i.other LEFT JOIN names n ON n.id = o.owner_id) ON true
    ORDER BY i.version DESC;
END;
$$;

-- ---- the invariants -----------------------------------------------------------------------

-- Read-only, from whole-table snapshots (MATERIALIZED: on Citus each is read from every
-- shard once and the checks run on the coordinator). One more than before: every active
-- user wallet is its owner's one wallet of its currency (accounts.owner_wallets).
CREATE OR REPLACE FUNCTION ledger.check_invariants()
RETURNS TABLE (invariant TEXT, violations BIGINT)
LANGUAGE sql AS $$
    WITH transfers AS MATERIALIZED (
        SELECT id, kind, from_account_id, to_account_id, currency, amount, fee, refund_of, refunded_amount, hold_id
        FROM ledger.transfers
    ), entries AS MATERIALIZED (
        SELECT transfer_id, account_id, amount FROM ledger.entries
    ), wallets AS MATERIALIZED (
        SELECT id, kind, owner_id, currency, balance, status FROM accounts.accounts
    ), holds AS MATERIALIZED (
        SELECT id, payer_account_id, payee_account_id, currency, amount, status, expires_at, transfer_id, captured_amount
        FROM ledger.holds
    ), owner_wallets AS MATERIALIZED (
        SELECT owner_id, currency, account_id FROM accounts.owner_wallets
    ), per_transfer AS (
        SELECT e.transfer_id, sum(e.amount) AS total, count(*) AS n,
               sum(e.amount) FILTER (WHERE w.kind = 'fees' AND w.currency = t.currency) AS fees
        FROM entries e JOIN wallets w ON w.id = e.account_id JOIN transfers t ON t.id = e.transfer_id
        GROUP BY e.transfer_id
    ), per_wallet AS (
        SELECT account_id, sum(amount) AS total FROM entries GROUP BY account_id
    ), refunded AS (
        SELECT refund_of, sum(amount) AS total FROM transfers WHERE refund_of IS NOT NULL GROUP BY refund_of
    ), held AS (
        SELECT payer_account_id, sum(amount) AS total FROM holds
        WHERE status = 'pending' AND expires_at > clock_timestamp() AT TIME ZONE 'UTC'
        GROUP BY payer_account_id
    )
    SELECT 'entries of a transfer sum to zero', count(*)
    FROM transfers t JOIN per_transfer p ON p.transfer_id = t.id
    WHERE p.total <> 0 OR p.n <> CASE WHEN t.fee > 0 THEN 3 ELSE 2 END
    UNION ALL
    SELECT 'every transfer has its entries', count(*)
    FROM transfers t WHERE t.id NOT IN (SELECT transfer_id FROM per_transfer)
    UNION ALL
    SELECT 'a fee goes to the fee account of its currency', count(*)
    FROM transfers t LEFT JOIN per_transfer p ON p.transfer_id = t.id
    WHERE t.fee <> COALESCE(p.fees, 0)
    UNION ALL
    SELECT 'balance equals the sum of entries', count(*)
    FROM wallets w LEFT JOIN per_wallet p ON p.account_id = w.id
    WHERE w.balance <> COALESCE(p.total, 0)
    UNION ALL
    SELECT 'money per currency sums to zero', count(*)
    FROM (SELECT currency FROM wallets GROUP BY currency HAVING sum(balance) <> 0) broken
    UNION ALL
    SELECT 'no user wallet or fee account below zero', count(*)
    FROM wallets WHERE kind IN ('user', 'fees') AND balance < 0
    UNION ALL
    SELECT 'refunds never exceed their transfer', count(*)
    FROM transfers t LEFT JOIN refunded r ON r.refund_of = t.id
    WHERE t.refunded_amount <> COALESCE(r.total, 0) OR t.refunded_amount > t.amount
    UNION ALL
    SELECT 'no wallet has more on hold than its balance (available >= 0)', count(*)
    FROM wallets w JOIN held h ON h.payer_account_id = w.id
    WHERE w.kind = 'user' AND w.balance - h.total < 0
    UNION ALL
    SELECT 'a captured hold became one transfer of at most its amount, between its wallets', count(*)
    FROM holds h LEFT JOIN transfers t ON t.id = h.transfer_id
    WHERE h.status = 'captured'
      AND (t.id IS NULL OR t.hold_id IS DISTINCT FROM h.id OR t.amount <> h.captured_amount OR h.captured_amount > h.amount
           OR t.from_account_id <> h.payer_account_id OR t.to_account_id <> h.payee_account_id
           OR t.kind <> 'transfer'
           OR (SELECT count(*) FROM transfers c WHERE c.hold_id = h.id) <> 1)
    UNION ALL
    SELECT 'a hold stays in its wallets'' currency', count(*)
    FROM holds h
    JOIN wallets payer ON payer.id = h.payer_account_id
    JOIN wallets payee ON payee.id = h.payee_account_id
    WHERE payer.currency <> h.currency OR payee.currency <> h.currency OR payee.kind <> 'user' OR payer.kind <> 'user'
    UNION ALL
    SELECT 'every active user wallet is its owner''s one wallet of its currency', count(*)
    FROM (SELECT w.id FROM wallets w
          LEFT JOIN owner_wallets o ON o.account_id = w.id AND o.owner_id = w.owner_id AND o.currency = w.currency
          WHERE w.kind = 'user' AND w.status = 'active' AND o.account_id IS NULL
          UNION ALL
          SELECT o.account_id FROM owner_wallets o
          LEFT JOIN wallets w ON w.id = o.account_id AND w.kind = 'user' AND w.status = 'active'
          WHERE w.id IS NULL) broken
$$;

-- ---- Citus: distribute ---------------------------------------------------------------------

DO $distribute$
DECLARE
    posting OID;
    definition TEXT;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;

    -- Keys Citus can enforce include the distribution column; foreign keys only join
    -- colocated tables on it. What is dropped here is kept by the statements above (each
    -- checks under the row locks what the constraint checked) and verified by
    -- ledger.check_invariants().
    ALTER TABLE identity.sessions DROP CONSTRAINT sessions_pkey CASCADE;
    ALTER TABLE identity.sessions ADD PRIMARY KEY (user_id, id);
    ALTER TABLE identity.refresh_tokens DROP CONSTRAINT refresh_tokens_pkey;
    ALTER TABLE identity.refresh_tokens ADD PRIMARY KEY (user_id, token_hash);
    ALTER TABLE identity.refresh_tokens ADD FOREIGN KEY (user_id, session_id)
        REFERENCES identity.sessions (user_id, id) ON DELETE CASCADE;
    ALTER TABLE identity.email_verifications DROP CONSTRAINT email_verifications_pkey;
    ALTER TABLE identity.email_verifications ADD PRIMARY KEY (user_id, token_hash);
    DROP INDEX identity.users_email_key;
    CREATE INDEX users_email_key ON identity.users (email_key);

    ALTER TABLE accounts.accounts DROP CONSTRAINT accounts_owner_id_fkey;
    DROP INDEX accounts.accounts_one_active_wallet_idx;
    DROP INDEX accounts.accounts_one_fee_account_idx;
    DROP INDEX accounts.accounts_one_settlement_idx;

    ALTER TABLE ledger.transfers DROP CONSTRAINT transfers_from_account_id_fkey;
    ALTER TABLE ledger.transfers DROP CONSTRAINT transfers_to_account_id_fkey;
    ALTER TABLE ledger.transfers DROP CONSTRAINT transfers_initiated_by_fkey;
    ALTER TABLE ledger.transfers DROP CONSTRAINT transfers_refund_of_fkey;
    ALTER TABLE ledger.transfers DROP CONSTRAINT transfers_hold_id_fkey;
    DROP INDEX ledger.transfers_one_per_hold_idx;
    CREATE INDEX transfers_hold_idx ON ledger.transfers (hold_id) WHERE hold_id IS NOT NULL;
    ALTER TABLE ledger.entries DROP CONSTRAINT entries_transfer_id_fkey;
    ALTER TABLE ledger.entries DROP CONSTRAINT entries_pkey;
    ALTER TABLE ledger.entries ADD PRIMARY KEY (account_id, id);
    ALTER TABLE ledger.holds DROP CONSTRAINT holds_transfer_id_fkey;
    ALTER TABLE ledger.holds DROP CONSTRAINT holds_transfer_id_key;
    ALTER TABLE ledger.holds DROP CONSTRAINT holds_initiated_by_fkey;
    ALTER TABLE ledger.holds DROP CONSTRAINT holds_payee_account_id_fkey;
    ALTER TABLE ledger.holds DROP CONSTRAINT holds_pkey;
    ALTER TABLE ledger.holds ADD PRIMARY KEY (payer_account_id, id);
    CREATE INDEX holds_id_idx ON ledger.holds (id);

    -- The relay polls through the coordinator: a NOTIFY would stay on the node that ran it.
    DROP TRIGGER events_wake_relay ON outbox.events;
    ALTER TABLE outbox.events DROP CONSTRAINT events_pkey;
    ALTER TABLE outbox.events DROP CONSTRAINT events_id_key;
    ALTER TABLE outbox.events ADD PRIMARY KEY (id);
    -- A shard moves online by logical replication, which needs a replica identity.
    ALTER TABLE identity.login_failures REPLICA IDENTITY FULL;

    PERFORM create_distributed_table('identity.users', 'id');
    PERFORM create_distributed_table('identity.sessions', 'user_id', colocate_with => 'identity.users');
    PERFORM create_distributed_table('identity.refresh_tokens', 'user_id', colocate_with => 'identity.users');
    PERFORM create_distributed_table('identity.email_verifications', 'user_id', colocate_with => 'identity.users');
    PERFORM create_distributed_table('identity.email_addresses', 'email_key');
    PERFORM create_distributed_table('identity.login_failures', 'email_key');
    PERFORM create_distributed_table('accounts.accounts', 'id', colocate_with => 'identity.users');
    PERFORM create_distributed_table('accounts.owner_wallets', 'owner_id', colocate_with => 'identity.users');
    PERFORM create_reference_table('accounts.system_accounts');
    PERFORM create_distributed_table('ledger.entries', 'account_id', colocate_with => 'identity.users');
    PERFORM create_distributed_table('ledger.transfers', 'id', colocate_with => 'identity.users');
    PERFORM create_distributed_table('ledger.holds', 'payer_account_id', colocate_with => 'identity.users');
    PERFORM create_distributed_table('ledger.idempotency_keys', 'user_id', colocate_with => 'identity.users');
    PERFORM create_distributed_table('outbox.events', 'id', colocate_with => 'identity.users');

    -- Rows copied into the shards stay behind, invisible, in the coordinator's own tables.
    PERFORM truncate_local_data_after_distributing_table(t)
    FROM unnest(ARRAY['identity.users', 'identity.sessions', 'identity.refresh_tokens',
                      'identity.email_verifications', 'identity.email_addresses', 'identity.login_failures',
                      'accounts.accounts', 'accounts.owner_wallets', 'accounts.system_accounts',
                      'ledger.entries', 'ledger.transfers', 'ledger.holds', 'ledger.idempotency_keys',
                      'outbox.events']::regclass[]) AS t;

    -- The postings lock their wallets with one statement, in id order (A→B and B→A cannot
    -- deadlock). Citus runs a statement's shards at once, in no fixed order, and refuses a
    -- multi-shard `FOR UPDATE`: here they lock one statement per wallet, in the same order,
    -- through ledger.lock_wallets, which their definitions are rewritten to call.
    CREATE FUNCTION ledger.lock_wallets(p_ids UUID[]) RETURNS SETOF accounts.accounts
    LANGUAGE plpgsql AS $$
    DECLARE
        wallet UUID;
        locked accounts.accounts;
    BEGIN
        FOR wallet IN SELECT DISTINCT id FROM unnest(p_ids) AS id WHERE id IS NOT NULL ORDER BY id LOOP
            SELECT * INTO locked FROM accounts.accounts WHERE id = wallet FOR UPDATE;
            IF FOUND THEN
                RETURN NEXT locked;
            END IF;
        END LOOP;
    END;
    $$;

    FOR posting IN SELECT p.oid FROM pg_proc p
                   WHERE p.pronamespace = 'ledger'::regnamespace
                     AND p.proname IN ('transfer', 'settle', 'refund', 'place_hold', 'capture_hold') LOOP
        definition := regexp_replace(pg_get_functiondef(posting),
            'SELECT \* FROM accounts\.accounts\s+WHERE id IN \(([^)]*)\) ORDER BY id FOR UPDATE',
            'SELECT * FROM ledger.lock_wallets(ARRAY[\1])', 'g');
        IF strpos(definition, 'ledger.lock_wallets') = 0 THEN
            RAISE EXCEPTION 'the posting % locks its wallets in a way this migration does not know', posting::regprocedure;
        END IF;
        EXECUTE definition;
    END LOOP;

    -- A draw is a fresh random tail until the id hashes to the wanted shard: with n shards
    -- n tries on average, each a hash and a range look-up on the coordinator.
    CREATE OR REPLACE FUNCTION accounts.id_on_shard_of(p_id UUID, p_near UUID) RETURNS UUID
    LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        wanted BIGINT := get_shard_id_for_distribution_column('accounts.accounts', p_near);
        candidate UUID := p_id;
    BEGIN
        WHILE get_shard_id_for_distribution_column('accounts.accounts', candidate) <> wanted LOOP
            -- The first seven bytes (a UUIDv7's time and version) stay; the rest is redrawn.
            candidate := encode(overlay(uuid_send(p_id) PLACING substr(uuid_send(gen_random_uuid()), 8) FROM 8), 'hex')::uuid;
        END LOOP;
        RETURN candidate;
    END;
    $$;
END;
$distribute$;

-- Holds (POST /holds): authorize now, capture or void later.
--
-- A hold reserves money in the payer's wallet for a payee without moving it: no entry is
-- written, the balance stays, and what the wallet can spend — its `available` amount — is
-- the balance minus its active holds. A hold is active while it is pending and its expiry
-- has not passed: an expired hold stops counting the moment it expires, whether or not the
-- bridge's sweeper has marked it yet (the sweeper only records the fact and announces it).
--
-- The books stay double-entry and unchanged in shape: a capture is an ordinary transfer
-- from the payer to the payee (fees from the policies like any transfer), written by the
-- same record_posting, so Σ entries = 0 per transfer and per currency, and balance = Σ
-- entries. What holds add is one more invariant: no user wallet's active holds exceed its
-- balance (available ≥ 0). Every posting that takes money out of a wallet — transfers,
-- withdrawals, refunds, captures (with their fees) and new holds — compares its amount with
-- `available`, computed under the wallet's row lock, so racing requests cannot spend held
-- money. Expiry is judged by clock_timestamp() read after the locks are taken: a posting
-- that found a hold expired holds the wallet lock until it commits, and any capture that
-- locks the wallet after it reads a later clock, so it finds the hold expired too.
--
-- Lock order: a capture or void locks the hold, then (a capture) the wallets by id; the
-- sweeper locks only holds, skipping locked ones; postings lock only wallets.

CREATE TABLE ledger.holds (
    id               UUID PRIMARY KEY,
    payer_account_id UUID NOT NULL REFERENCES accounts.accounts (id),
    payee_account_id UUID NOT NULL REFERENCES accounts.accounts (id),
    currency         TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    scale            SMALLINT NOT NULL CHECK (scale BETWEEN 0 AND 4),
    amount           NUMERIC(28, 4) NOT NULL CHECK (amount > 0),
    description      TEXT CHECK (length(description) <= 200),
    -- The payer, who placed it.
    initiated_by     UUID NOT NULL REFERENCES identity.users (id),
    -- 'expired' is written by the sweeper; a pending hold past expires_at is already
    -- expired for every reader (ledger.hold_status).
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'captured', 'voided', 'expired')),
    expires_at       TIMESTAMP NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    settled_at       TIMESTAMP,
    -- Who voided it: 'payer' or 'payee'.
    voided_by        TEXT CHECK (voided_by IN ('payer', 'payee')),
    -- The capture: the transfer it became and how much of the hold it took.
    transfer_id      UUID UNIQUE REFERENCES ledger.transfers (id),
    captured_amount  NUMERIC(28, 4),
    -- The wallets' versions when it was placed (both wallets are locked and bumped), so
    -- it takes a stable place in both wallets' history, and their balances then.
    payer_version    BIGINT NOT NULL,
    payee_version    BIGINT NOT NULL,
    payer_balance    NUMERIC(28, 4) NOT NULL,
    payee_balance    NUMERIC(28, 4) NOT NULL,
    CONSTRAINT hold_distinct_accounts CHECK (payer_account_id <> payee_account_id),
    CONSTRAINT hold_amount_within_scale CHECK (amount = round(amount, scale)),
    CONSTRAINT hold_expires_after_creation CHECK (expires_at > created_at),
    CONSTRAINT hold_settled_has_time CHECK ((status = 'pending') = (settled_at IS NULL)),
    CONSTRAINT hold_voided_says_by_whom CHECK ((status = 'voided') = (voided_by IS NOT NULL)),
    CONSTRAINT hold_captured_has_its_transfer CHECK (
        (status = 'captured') = (transfer_id IS NOT NULL)
        AND (status = 'captured') = (captured_amount IS NOT NULL)),
    CONSTRAINT hold_capture_within_amount CHECK (captured_amount > 0 AND captured_amount <= amount)
);

-- What a wallet has on hold (ledger.available), and the holds in a wallet's favour.
CREATE INDEX holds_pending_payer_idx ON ledger.holds (payer_account_id) INCLUDE (amount, expires_at)
    WHERE status = 'pending';
CREATE INDEX holds_pending_payee_idx ON ledger.holds (payee_account_id) WHERE status = 'pending';
-- A wallet's history: its holds by the version they were placed at.
CREATE INDEX holds_payer_history_idx ON ledger.holds (payer_account_id, payer_version);
CREATE INDEX holds_payee_history_idx ON ledger.holds (payee_account_id, payee_version);
-- The sweeper's queue: pending holds by expiry.
CREATE INDEX holds_pending_expiry_idx ON ledger.holds (expires_at) WHERE status = 'pending';

-- What a hold is now: a pending one whose expiry has passed is expired.
CREATE FUNCTION ledger.hold_status(h ledger.holds) RETURNS TEXT
LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN h.status = 'pending' AND h.expires_at <= clock_timestamp() AT TIME ZONE 'UTC'
                THEN 'expired' ELSE h.status END
$$;

-- A capture's transfer names its hold (and the hold its transfer).
ALTER TABLE ledger.transfers ADD COLUMN hold_id UUID REFERENCES ledger.holds (id);
ALTER TABLE ledger.transfers ADD CONSTRAINT only_transfers_capture_holds CHECK (kind = 'transfer' OR hold_id IS NULL);
-- Partial, so a transfer that captured nothing costs no index entry.
CREATE UNIQUE INDEX transfers_one_per_hold_idx ON ledger.transfers (hold_id) WHERE hold_id IS NOT NULL;

DROP FUNCTION ledger.record_posting(UUID, TEXT, UUID, UUID, TEXT, SMALLINT, NUMERIC, TEXT, UUID, UUID, NUMERIC, UUID);

-- Moves p_amount from p_from to p_to, and p_fee (if any) from p_from to p_fee_account; a
-- capture names the hold it takes (p_hold_id). The
-- caller has locked every account involved (by id order) and checked the rules; the CHECK
-- constraints on accounts stay the last line of defence.
CREATE FUNCTION ledger.record_posting(
    p_id UUID, p_kind TEXT, p_from UUID, p_to UUID, p_currency TEXT, p_scale SMALLINT,
    p_amount NUMERIC, p_description TEXT, p_initiator UUID, p_refund_of UUID,
    p_fee NUMERIC, p_fee_account UUID, p_hold_id UUID)
RETURNS ledger.transfers
LANGUAGE plpgsql AS $$
DECLARE
    posted ledger.transfers;
    stamp TIMESTAMP := now() AT TIME ZONE 'UTC';
    from_balance NUMERIC;
    from_version BIGINT;
    to_balance NUMERIC;
    to_version BIGINT;
    fee_balance NUMERIC;
    fee_version BIGINT;
BEGIN
    INSERT INTO ledger.transfers (id, kind, from_account_id, to_account_id, currency, scale, amount, fee,
                                  description, initiated_by, refund_of, hold_id, created_at)
    VALUES (p_id, p_kind, p_from, p_to, p_currency, p_scale, p_amount, p_fee, p_description, p_initiator,
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
    VALUES (p_id, p_from, -(p_amount + p_fee), from_balance, from_version, stamp),
           (p_id, p_to, p_amount, to_balance, to_version, stamp);
    IF p_fee > 0 THEN
        UPDATE accounts.accounts
        SET balance = balance + p_fee, version = version + 1, updated_at = stamp
        WHERE id = p_fee_account
        RETURNING balance, version INTO fee_balance, fee_version;
        INSERT INTO ledger.entries (transfer_id, account_id, amount, balance_after, account_version, created_at)
        VALUES (p_id, p_fee_account, p_fee, fee_balance, fee_version, stamp);
    END IF;
    RETURN posted;
END;
$$;

-- What the wallet's active holds reserve. (PL/pgSQL, like every helper a posting calls, so
-- its plan is kept for the session: a LANGUAGE sql function with a FROM clause is planned
-- again on every call — V8.)
CREATE FUNCTION ledger.held(p_account UUID) RETURNS NUMERIC
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN COALESCE((SELECT sum(amount) FROM ledger.holds
                     WHERE payer_account_id = p_account AND status = 'pending'
                       AND expires_at > clock_timestamp() AT TIME ZONE 'UTC'), 0);
END;
$$;

-- What a wallet (as its caller locked it) can spend: its balance less its active holds.
CREATE FUNCTION ledger.available(p_account accounts.accounts) RETURNS NUMERIC
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN p_account.balance - COALESCE((SELECT sum(amount) FROM ledger.holds
                                         WHERE payer_account_id = p_account.id AND status = 'pending'
                                           AND expires_at > clock_timestamp() AT TIME ZONE 'UTC'), 0);
END;
$$;

-- A hold as the API shows it, with its parties' names (what both of them see in the app).
CREATE FUNCTION ledger.hold_json(h ledger.holds, p_payer_name TEXT, p_payee_name TEXT) RETURNS JSONB
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    status TEXT := ledger.hold_status(h);
BEGIN
    RETURN jsonb_build_object(
        'id', h.id,
        'status', status,
        'fromAccountId', h.payer_account_id,
        'toAccountId', h.payee_account_id,
        'payerName', p_payer_name,
        'payeeName', p_payee_name,
        'amount', round(h.amount, h.scale)::text,
        'currency', h.currency,
        'description', h.description,
        'capturedAmount', round(h.captured_amount, h.scale)::text,
        'releasedAmount', CASE WHEN h.status = 'captured' THEN round(h.amount - h.captured_amount, h.scale)::text END,
        'transferId', h.transfer_id,
        'voidedBy', h.voided_by,
        'expiresAt', to_char(h.expires_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'createdAt', to_char(h.created_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'settledAt', to_char(COALESCE(h.settled_at, CASE WHEN status = 'expired' THEN h.expires_at END),
                             'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
END;
$$;

-- The same, its parties' names looked up (for readers; the postings have them at hand).
CREATE FUNCTION ledger.hold_json(h ledger.holds) RETURNS JSONB
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN ledger.hold_json(h,
        (SELECT u.full_name FROM accounts.accounts a JOIN identity.users u ON u.id = a.owner_id
         WHERE a.id = h.payer_account_id),
        (SELECT u.full_name FROM accounts.accounts a JOIN identity.users u ON u.id = a.owner_id
         WHERE a.id = h.payee_account_id));
END;
$$;

-- What every hold event says about its hold and its parties (ledger.party_json); each event
-- adds its own members.
CREATE FUNCTION ledger.hold_event(h ledger.holds, p_payer JSONB, p_payee JSONB)
RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'holdId', h.id,
        'amount', round(h.amount, h.scale)::text,
        'currency', h.currency,
        'description', h.description,
        'expiresAt', to_char(h.expires_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'payer', p_payer,
        'payee', p_payee)
$$;

-- Postings that take money out of a wallet compare with what it has available, not its balance.
-- (V11's functions, the same but for that comparison.)

-- POST /transfers. The recipient is p_to, or the active wallet in p_currency of the user
-- whose email_key is p_to_email_key.
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
        SELECT a.id INTO target
        FROM accounts.accounts a JOIN identity.users u ON u.id = a.owner_id
        WHERE u.email_key = p_to_email_key AND a.currency = p_currency
          AND a.kind = 'user' AND a.status = 'active';
        IF target IS NULL THEN
            RETURN ledger.settle_key(p_user, p_key, 404, NULL, 'recipient-not-found');
        END IF;
    END IF;
    IF target = p_from THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'same-account');
    END IF;
    IF fee > 0 THEN
        fee_account := ledger.fee_account(p_currency, (SELECT scale FROM accounts.accounts WHERE id = p_from));
    END IF;
    -- Lock every wallet in id order (two opposite transfers cannot deadlock) and keep the
    -- rows as locked.
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

-- POST /deposits (p_direction 'deposit') and POST /withdrawals ('withdrawal'): between the
-- owner's wallet and the currency's settlement account.
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
BEGIN
    outcome := ledger.claim_key(p_user, p_key, p_fingerprint, p_key_ttl_secs);
    -- A row test (`outcome IS NOT NULL`) would be false: a replay has a NULL body or problem.
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
    SELECT id INTO settlement FROM accounts.accounts WHERE kind = 'settlement' AND currency = wallet.currency;
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
    PERFORM ledger.add_event(p_event_id, posted.id, p_direction || '.completed',
        ledger.posting_event(posted) || jsonb_build_object(
            'account', ledger.party_json(wallet),
            'balanceAfter', round((SELECT balance FROM accounts.accounts WHERE id = p_account), posted.scale)::text));
    RETURN ledger.settle_key(p_user, p_key, 201, ledger.transfer_json(posted), NULL);
END;
$$;

-- POST /transfers/{id}/refunds: the recipient gives back part or all (p_amount NULL) of
-- what is left of a transfer's amount; a fee it carried stays with the platform. The
-- original's row lock serialises refunds of one transfer, and refunds_within_amount makes
-- over-refunding impossible.
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
    locked accounts.accounts;
    refunder accounts.accounts;
    refundee accounts.accounts;
    refund_amount NUMERIC;
    refusal JSONB;
    posted ledger.transfers;
BEGIN
    outcome := ledger.claim_key(p_user, p_key, p_fingerprint, p_key_ttl_secs);
    -- A row test (`outcome IS NOT NULL`) would be false: a replay has a NULL body or problem.
    IF outcome.status IS NOT NULL THEN
        RETURN outcome;
    END IF;
    SELECT t.* INTO original FROM ledger.transfers t
    JOIN accounts.accounts a ON a.id = t.to_account_id
    WHERE t.id = p_original AND a.owner_id = p_user
    FOR UPDATE OF t;
    IF original.id IS NULL THEN
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
    -- Keyed by the original transfer, so its events stay in order; transferId names it.
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

-- POST /holds. The payee is p_to, or the active wallet in p_currency of the user whose
-- email_key is p_to_email_key. The policies were asked about it (p_terms); a fee they name
-- is charged on capture, not here.
CREATE FUNCTION ledger.place_hold(
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
    -- A row test (`outcome IS NOT NULL`) would be false: a replay has a NULL body or problem.
    IF outcome.status IS NOT NULL THEN
        RETURN outcome;
    END IF;
    IF target IS NULL THEN
        SELECT a.id INTO target
        FROM accounts.accounts a JOIN identity.users u ON u.id = a.owner_id
        WHERE u.email_key = p_to_email_key AND a.currency = p_currency
          AND a.kind = 'user' AND a.status = 'active';
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
    -- Windows count the wallet's transfers: a hold is a transfer announced in advance.
    refusal := ledger.failed_requirement(p_terms, 'transfer', p_user, payer, p_amount);
    IF refusal IS NOT NULL THEN
        RETURN ledger.refuse(p_user, p_key, refusal);
    END IF;
    IF ledger.available(payer) < p_amount THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'insufficient-funds');
    END IF;
    UPDATE accounts.accounts SET version = version + 1, updated_at = stamp
    WHERE id IN (payer.id, payee.id);
    INSERT INTO ledger.holds (id, payer_account_id, payee_account_id, currency, scale, amount, description,
                              initiated_by, expires_at, created_at, payer_version, payee_version,
                              payer_balance, payee_balance)
    VALUES (p_hold_id, payer.id, payee.id, p_currency, payer.scale, p_amount, p_description, p_user,
            stamp + p_expires_in_secs * interval '1 second', stamp, payer.version + 1, payee.version + 1,
            payer.balance, payee.balance)
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

-- The hold p_user may act on as p_role ('payee': its payee's owner; 'party': the owner of
-- either wallet), locked; NULL when there is none.
CREATE FUNCTION ledger.lock_hold(p_hold UUID, p_user UUID, p_role TEXT) RETURNS ledger.holds
LANGUAGE plpgsql AS $$
DECLARE
    found ledger.holds;
BEGIN
    SELECT h.* INTO found FROM ledger.holds h
    JOIN accounts.accounts payer ON payer.id = h.payer_account_id
    JOIN accounts.accounts payee ON payee.id = h.payee_account_id
    WHERE h.id = p_hold
      AND (payee.owner_id = p_user OR (p_role = 'party' AND payer.owner_id = p_user))
    FOR UPDATE OF h;
    RETURN found;
END;
$$;

-- POST /holds/{id}/capture: the payee takes p_amount (NULL: all) of a pending hold as a
-- transfer from the payer; the rest is released. One capture per hold.
CREATE FUNCTION ledger.capture_hold(
    p_user UUID, p_key TEXT, p_fingerprint BYTEA, p_key_ttl_secs BIGINT,
    p_transfer_id UUID, p_event_id UUID,
    p_hold UUID, p_amount NUMERIC, p_terms JSONB)
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
    -- A row test (`outcome IS NOT NULL`) would be false: a replay has a NULL body or problem.
    IF outcome.status IS NOT NULL THEN
        RETURN outcome;
    END IF;
    hold := ledger.lock_hold(p_hold, p_user, 'payee');
    IF hold.id IS NULL THEN
        -- (A row test on the hold would be false: some of its columns are NULL.)
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
    -- Judged after the locks (see the top of this file).
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
    -- The capture is the payer's transfer: the payer's requirements and windows apply.
    refusal := ledger.failed_requirement(p_terms, 'transfer', hold.initiated_by, payer, captured);
    IF refusal IS NOT NULL THEN
        RETURN ledger.refuse(p_user, p_key, refusal);
    END IF;
    -- The hold's own reservation is what the capture spends; a fee comes on top of it.
    IF ledger.available(payer) + hold.amount < captured + fee THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'insufficient-funds');
    END IF;
    posted := ledger.record_posting(p_transfer_id, 'transfer', payer.id, payee.id, hold.currency, hold.scale,
                                    captured, hold.description, hold.initiated_by, NULL, fee, fee_account, hold.id);
    UPDATE ledger.holds
    SET status = 'captured', captured_amount = captured, transfer_id = posted.id, settled_at = posted.created_at
    WHERE id = hold.id
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

-- POST /holds/{id}/void: either party releases a pending hold.
CREATE FUNCTION ledger.void_hold(
    p_user UUID, p_key TEXT, p_fingerprint BYTEA, p_key_ttl_secs BIGINT,
    p_event_id UUID, p_hold UUID)
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
    -- A row test (`outcome IS NOT NULL`) would be false: a replay has a NULL body or problem.
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
    WHERE id = hold.id
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

-- The sweeper (the bridge's leader): marks up to p_limit holds whose expiry has passed as
-- expired and announces each; returns how many. The money was free from the expiry on.
-- Holds a capture or void has locked are skipped (and found again next time if still due).
CREATE FUNCTION ledger.expire_holds(p_limit INT) RETURNS INT
LANGUAGE plpgsql AS $$
DECLARE
    hold ledger.holds;
    payer accounts.accounts;
    payee accounts.accounts;
    swept INT := 0;
BEGIN
    FOR hold IN
        SELECT * FROM ledger.holds
        WHERE status = 'pending' AND expires_at <= clock_timestamp() AT TIME ZONE 'UTC'
        ORDER BY expires_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    LOOP
        UPDATE ledger.holds SET status = 'expired', settled_at = hold.expires_at
        WHERE id = hold.id
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

-- Every invariant of the books and how many rows break it (all zero when sound); the holds'
-- are the last three.
CREATE OR REPLACE FUNCTION ledger.check_invariants()
RETURNS TABLE (invariant TEXT, violations BIGINT)
LANGUAGE sql VOLATILE AS $$
    SELECT 'entries of a transfer sum to zero', count(*)
    FROM (SELECT e.transfer_id FROM ledger.entries e JOIN ledger.transfers t ON t.id = e.transfer_id
          GROUP BY e.transfer_id, t.fee
          HAVING sum(e.amount) <> 0 OR count(*) <> CASE WHEN t.fee > 0 THEN 3 ELSE 2 END) broken
    UNION ALL
    SELECT 'every transfer has its entries', count(*)
    FROM ledger.transfers t WHERE NOT EXISTS (SELECT 1 FROM ledger.entries e WHERE e.transfer_id = t.id)
    UNION ALL
    SELECT 'a fee goes to the fee account of its currency', count(*)
    FROM ledger.transfers t
    WHERE t.fee <> COALESCE((SELECT sum(e.amount) FROM ledger.entries e JOIN accounts.accounts a ON a.id = e.account_id
                             WHERE e.transfer_id = t.id AND a.kind = 'fees' AND a.currency = t.currency), 0)
    UNION ALL
    SELECT 'balance equals the sum of entries', count(*)
    FROM accounts.accounts a
    WHERE a.balance <> COALESCE((SELECT sum(e.amount) FROM ledger.entries e WHERE e.account_id = a.id), 0)
    UNION ALL
    SELECT 'money per currency sums to zero', count(*)
    FROM (SELECT currency FROM accounts.accounts GROUP BY currency HAVING sum(balance) <> 0) broken
    UNION ALL
    SELECT 'no user wallet or fee account below zero', count(*)
    FROM accounts.accounts WHERE kind IN ('user', 'fees') AND balance < 0
    UNION ALL
    SELECT 'refunds never exceed their transfer', count(*)
    FROM ledger.transfers t
    WHERE t.refunded_amount <> COALESCE((SELECT sum(r.amount) FROM ledger.transfers r WHERE r.refund_of = t.id), 0)
       OR t.refunded_amount > t.amount
    UNION ALL
    SELECT 'no wallet has more on hold than its balance (available >= 0)', count(*)
    FROM accounts.accounts a
    WHERE a.kind = 'user' AND ledger.available(a) < 0
    UNION ALL
    SELECT 'a captured hold became one transfer of at most its amount, between its wallets', count(*)
    FROM ledger.holds h LEFT JOIN ledger.transfers t ON t.id = h.transfer_id
    WHERE h.status = 'captured'
      AND (t.id IS NULL OR t.hold_id IS DISTINCT FROM h.id OR t.amount <> h.captured_amount OR h.captured_amount > h.amount
           OR t.from_account_id <> h.payer_account_id OR t.to_account_id <> h.payee_account_id
           OR t.kind <> 'transfer')
    UNION ALL
    SELECT 'a hold stays in its wallets'' currency', count(*)
    FROM ledger.holds h
    JOIN accounts.accounts payer ON payer.id = h.payer_account_id
    JOIN accounts.accounts payee ON payee.id = h.payee_account_id
    WHERE payer.currency <> h.currency OR payee.currency <> h.currency OR payee.kind <> 'user' OR payer.kind <> 'user'
$$;

-- A transfer says which hold it captured, if any.
CREATE OR REPLACE FUNCTION ledger.transfer_json(t ledger.transfers) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', t.id,
        'kind', t.kind,
        'status', 'completed',
        -- Settlement accounts stay invisible: a deposit has no source wallet, a withdrawal
        -- no destination.
        'fromAccountId', CASE WHEN t.kind = 'deposit' THEN NULL ELSE t.from_account_id END,
        'toAccountId', CASE WHEN t.kind = 'withdrawal' THEN NULL ELSE t.to_account_id END,
        'amount', round(t.amount, t.scale)::text,
        'fee', round(t.fee, t.scale)::text,
        'currency', t.currency,
        'description', t.description,
        'refundOf', t.refund_of,
        'refundedAmount', round(t.refunded_amount, t.scale)::text,
        'holdId', t.hold_id,
        'createdAt', to_char(t.created_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
$$;

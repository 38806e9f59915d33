-- The ledger (components/transfers): double-entry postings.
--
-- Every money movement is ONE call to one of the functions below, and so one transaction:
-- it claims the idempotency key, locks the wallets involved in a fixed order (by id, so
-- A→B and B→A at once cannot deadlock), checks the rules, writes the transfer, its two
-- entries (which sum to zero), both balances and the outbox event, and stores the response
-- for replays. A rule that fails changes nothing but the stored outcome of the key.
--
-- Invariants (checked by ledger.check_invariants(), which the tests call after every
-- concurrent run):
--   * the entries of a transfer sum to zero;
--   * an account's balance equals the sum of its entries;
--   * per currency, all balances (users + settlement) sum to zero;
--   * no user wallet is below zero (also a CHECK on accounts.accounts).

CREATE TABLE ledger.transfers (
    id              UUID PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('transfer', 'deposit', 'withdrawal', 'refund')),
    from_account_id UUID NOT NULL REFERENCES accounts.accounts (id),
    to_account_id   UUID NOT NULL REFERENCES accounts.accounts (id),
    currency        TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The currency's minor-unit scale, copied from the wallets: amounts render at it.
    scale           SMALLINT NOT NULL CHECK (scale BETWEEN 0 AND 4),
    amount          NUMERIC(28, 4) NOT NULL CHECK (amount > 0),
    description     TEXT CHECK (length(description) <= 200),
    -- The user who asked for the posting.
    initiated_by    UUID NOT NULL REFERENCES identity.users (id),
    -- A refund names the transfer it gives back; the original tracks how much came back.
    refund_of       UUID REFERENCES ledger.transfers (id),
    refunded_amount NUMERIC(28, 4) NOT NULL DEFAULT 0,
    created_at      TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    CONSTRAINT distinct_accounts CHECK (from_account_id <> to_account_id),
    CONSTRAINT amount_within_scale CHECK (amount = round(amount, scale)),
    CONSTRAINT refunds_refer_to_a_transfer CHECK ((kind = 'refund') = (refund_of IS NOT NULL)),
    -- Refunds of one transfer never exceed it in total.
    CONSTRAINT refunds_within_amount CHECK (refunded_amount >= 0 AND refunded_amount <= amount),
    CONSTRAINT only_transfers_are_refunded CHECK (kind = 'transfer' OR refunded_amount = 0)
);

CREATE INDEX transfers_refund_of_idx ON ledger.transfers (refund_of) WHERE refund_of IS NOT NULL;

CREATE TABLE ledger.entries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transfer_id     UUID NOT NULL REFERENCES ledger.transfers (id),
    account_id      UUID NOT NULL REFERENCES accounts.accounts (id),
    -- Signed: negative leaves the account, positive enters it.
    amount          NUMERIC(28, 4) NOT NULL CHECK (amount <> 0),
    balance_after   NUMERIC(28, 4) NOT NULL,
    -- The account's version after this entry. Assigned under the account's row lock, so it
    -- grows in commit order: history pages by it stay stable while postings arrive.
    account_version BIGINT NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    CONSTRAINT one_entry_per_account_version UNIQUE (account_id, account_version)
);

CREATE INDEX entries_transfer_idx ON ledger.entries (transfer_id);

-- Idempotency keys, scoped per user: the request's fingerprint and the outcome to replay.
CREATE TABLE ledger.idempotency_keys (
    user_id     UUID NOT NULL,
    key         TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint BYTEA NOT NULL CHECK (length(fingerprint) = 32),
    -- The original response: a status and either a body (success) or a problem slug.
    status      INT NOT NULL,
    body        JSONB,
    problem     TEXT,
    created_at  TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    expires_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, key),
    CHECK ((body IS NULL) <> (problem IS NULL))
);

-- Lets the bridge prune expired keys in bounded batches.
CREATE INDEX idempotency_keys_expiry_idx ON ledger.idempotency_keys (expires_at);

-- What a posting function returns to the component.
CREATE TYPE ledger.posting_result AS (
    status   INT,
    -- On success, the response body; on a refused posting, NULL.
    body     JSONB,
    -- On a refused posting, the problem type's slug.
    problem  TEXT,
    replayed BOOLEAN
);

-- A transfer as the API shows it. One rendering, used by the postings and GET /transfers.
CREATE FUNCTION ledger.transfer_json(t ledger.transfers) RETURNS JSONB
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
        'currency', t.currency,
        'description', t.description,
        'refundOf', t.refund_of,
        'refundedAmount', round(t.refunded_amount, t.scale)::text,
        'createdAt', to_char(t.created_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
$$;

-- Claims (user, key) for a request, or returns what it already produced.
-- A concurrent request with the same key waits here, on the primary key, until the first
-- commits; it then sees the stored outcome. An expired key is claimed afresh.
CREATE FUNCTION ledger.claim_key(p_user UUID, p_key TEXT, p_fingerprint BYTEA, p_ttl_secs BIGINT)
RETURNS ledger.posting_result
LANGUAGE plpgsql AS $$
DECLARE
    claimed BOOLEAN;
    previous ledger.idempotency_keys;
BEGIN
    -- status 0 marks "claimed, in progress": the posting overwrites it before committing.
    INSERT INTO ledger.idempotency_keys (user_id, key, fingerprint, status, problem, expires_at)
    VALUES (p_user, p_key, p_fingerprint, 0, 'in-progress',
            (now() AT TIME ZONE 'UTC') + p_ttl_secs * interval '1 second')
    ON CONFLICT (user_id, key) DO NOTHING
    RETURNING true INTO claimed;
    IF claimed THEN
        RETURN NULL;
    END IF;
    SELECT * INTO previous FROM ledger.idempotency_keys
    WHERE user_id = p_user AND key = p_key
    FOR UPDATE;
    IF previous.expires_at <= (now() AT TIME ZONE 'UTC') THEN
        UPDATE ledger.idempotency_keys
        SET fingerprint = p_fingerprint, status = 0, body = NULL, problem = 'in-progress',
            created_at = now() AT TIME ZONE 'UTC',
            expires_at = (now() AT TIME ZONE 'UTC') + p_ttl_secs * interval '1 second'
        WHERE user_id = p_user AND key = p_key;
        RETURN NULL;
    END IF;
    IF previous.fingerprint <> p_fingerprint THEN
        RETURN ROW(422, NULL, 'idempotency-key-reused', false)::ledger.posting_result;
    END IF;
    RETURN ROW(previous.status, previous.body, previous.problem, true)::ledger.posting_result;
END;
$$;

-- Records the outcome of a claimed key and returns it.
CREATE FUNCTION ledger.settle_key(p_user UUID, p_key TEXT, p_status INT, p_body JSONB, p_problem TEXT)
RETURNS ledger.posting_result
LANGUAGE sql AS $$
    UPDATE ledger.idempotency_keys
    SET status = p_status, body = p_body, problem = p_problem
    WHERE user_id = p_user AND key = p_key
    RETURNING status, body, problem, false;
$$;

-- Moves p_amount from p_from to p_to. The caller has locked both accounts (by id order)
-- and checked the rules; the CHECK constraints on accounts stay the last line of defence.
CREATE FUNCTION ledger.record_posting(
    p_id UUID, p_kind TEXT, p_from UUID, p_to UUID, p_currency TEXT, p_scale SMALLINT,
    p_amount NUMERIC, p_description TEXT, p_initiator UUID, p_refund_of UUID)
RETURNS ledger.transfers
LANGUAGE plpgsql AS $$
DECLARE
    posted ledger.transfers;
    stamp TIMESTAMP := now() AT TIME ZONE 'UTC';
    from_balance NUMERIC;
    from_version BIGINT;
    to_balance NUMERIC;
    to_version BIGINT;
BEGIN
    INSERT INTO ledger.transfers (id, kind, from_account_id, to_account_id, currency, scale, amount,
                                  description, initiated_by, refund_of, created_at)
    VALUES (p_id, p_kind, p_from, p_to, p_currency, p_scale, p_amount, p_description, p_initiator,
            p_refund_of, stamp)
    RETURNING * INTO posted;
    UPDATE accounts.accounts
    SET balance = balance - p_amount, version = version + 1, updated_at = stamp
    WHERE id = p_from
    RETURNING balance, version INTO from_balance, from_version;
    UPDATE accounts.accounts
    SET balance = balance + p_amount, version = version + 1, updated_at = stamp
    WHERE id = p_to
    RETURNING balance, version INTO to_balance, to_version;
    INSERT INTO ledger.entries (transfer_id, account_id, amount, balance_after, account_version, created_at)
    VALUES (p_id, p_from, -p_amount, from_balance, from_version, stamp),
           (p_id, p_to, p_amount, to_balance, to_version, stamp);
    RETURN posted;
END;
$$;

-- The people on either side of a posting, as events name them.
CREATE FUNCTION ledger.party_json(p_account UUID) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('accountId', a.id, 'userId', u.id, 'email', u.email, 'fullName', u.full_name)
    FROM accounts.accounts a JOIN identity.users u ON u.id = a.owner_id
    WHERE a.id = p_account
$$;

-- What every posting event says about its posting; each event adds its own members.
CREATE FUNCTION ledger.posting_event(posted ledger.transfers) RETURNS JSONB
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'transferId', posted.id,
        'amount', round(posted.amount, posted.scale)::text,
        'currency', posted.currency,
        'createdAt', to_char(posted.created_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
$$;

CREATE FUNCTION ledger.add_event(p_event_id UUID, p_aggregate_id UUID, p_type TEXT, p_payload JSONB)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO outbox.events (id, aggregate_type, aggregate_id, event_type, payload)
    VALUES (p_event_id, 'ledger', p_aggregate_id::text, p_type, p_payload);
$$;

-- POST /transfers. The recipient is p_to, or the active wallet in p_currency of the user
-- whose email_key is p_to_email_key.
CREATE FUNCTION ledger.transfer(
    p_user UUID, p_key TEXT, p_fingerprint BYTEA, p_key_ttl_secs BIGINT,
    p_transfer_id UUID, p_event_id UUID,
    p_from UUID, p_to UUID, p_to_email_key TEXT, p_currency TEXT, p_amount NUMERIC, p_description TEXT)
RETURNS ledger.posting_result
LANGUAGE plpgsql
SET lock_timeout = '10s'
AS $$
DECLARE
    outcome ledger.posting_result;
    target UUID := p_to;
    source accounts.accounts;
    destination accounts.accounts;
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
    -- Lock both wallets in id order: two opposite transfers cannot deadlock.
    PERFORM 1 FROM accounts.accounts WHERE id IN (p_from, target) ORDER BY id FOR UPDATE;
    SELECT * INTO source FROM accounts.accounts WHERE id = p_from;
    SELECT * INTO destination FROM accounts.accounts WHERE id = target;
    IF source.id IS NULL OR source.owner_id IS DISTINCT FROM p_user THEN
        RETURN ledger.settle_key(p_user, p_key, 404, NULL, 'account-not-found');
    END IF;
    IF destination.id IS NULL OR destination.kind <> 'user' THEN
        RETURN ledger.settle_key(p_user, p_key, 404, NULL, 'recipient-not-found');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM identity.users WHERE id = p_user AND email_verified_at IS NOT NULL) THEN
        RETURN ledger.settle_key(p_user, p_key, 403, NULL, 'email-not-verified');
    END IF;
    IF source.status <> 'active' OR destination.status <> 'active' THEN
        RETURN ledger.settle_key(p_user, p_key, 409, NULL, 'account-closed');
    END IF;
    IF source.currency <> p_currency OR destination.currency <> p_currency THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'currency-mismatch');
    END IF;
    IF source.balance < p_amount THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'insufficient-funds');
    END IF;
    posted := ledger.record_posting(p_transfer_id, 'transfer', p_from, target, p_currency, source.scale,
                                    p_amount, p_description, p_user, NULL);
    PERFORM ledger.add_event(p_event_id, posted.id, 'transfer.completed',
        ledger.posting_event(posted) || jsonb_build_object(
            'description', posted.description,
            'sender', ledger.party_json(posted.from_account_id),
            'recipient', ledger.party_json(posted.to_account_id)));
    RETURN ledger.settle_key(p_user, p_key, 201, ledger.transfer_json(posted), NULL);
END;
$$;

-- POST /deposits (p_direction 'deposit') and POST /withdrawals ('withdrawal'): between the
-- owner's wallet and the currency's settlement account.
CREATE FUNCTION ledger.settle(
    p_direction TEXT,
    p_user UUID, p_key TEXT, p_fingerprint BYTEA, p_key_ttl_secs BIGINT,
    p_transfer_id UUID, p_event_id UUID,
    p_account UUID, p_amount NUMERIC, p_limits JSONB)
RETURNS ledger.posting_result
LANGUAGE plpgsql
SET lock_timeout = '10s'
AS $$
DECLARE
    outcome ledger.posting_result;
    wallet accounts.accounts;
    settlement UUID;
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
    -- p_limits: the most one posting may move, by currency code, "*" for the others.
    IF p_amount > COALESCE((p_limits ->> wallet.currency)::numeric, (p_limits ->> '*')::numeric, p_amount) THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'amount-above-limit');
    END IF;
    SELECT id INTO settlement FROM accounts.accounts WHERE kind = 'settlement' AND currency = wallet.currency;
    PERFORM 1 FROM accounts.accounts WHERE id IN (p_account, settlement) ORDER BY id FOR UPDATE;
    SELECT * INTO wallet FROM accounts.accounts WHERE id = p_account;
    IF wallet.status <> 'active' THEN
        RETURN ledger.settle_key(p_user, p_key, 409, NULL, 'account-closed');
    END IF;
    IF p_direction = 'withdrawal' AND wallet.balance < p_amount THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'insufficient-funds');
    END IF;
    IF p_direction = 'deposit' THEN
        posted := ledger.record_posting(p_transfer_id, 'deposit', settlement, p_account, wallet.currency,
                                        wallet.scale, p_amount, NULL, p_user, NULL);
    ELSE
        posted := ledger.record_posting(p_transfer_id, 'withdrawal', p_account, settlement, wallet.currency,
                                        wallet.scale, p_amount, NULL, p_user, NULL);
    END IF;
    PERFORM ledger.add_event(p_event_id, posted.id, p_direction || '.completed',
        ledger.posting_event(posted) || jsonb_build_object(
            'account', ledger.party_json(p_account),
            'balanceAfter', round((SELECT balance FROM accounts.accounts WHERE id = p_account), posted.scale)::text));
    RETURN ledger.settle_key(p_user, p_key, 201, ledger.transfer_json(posted), NULL);
END;
$$;

-- POST /transfers/{id}/refunds: the recipient gives back part or all (p_amount NULL) of
-- what is left of a transfer. The original's row lock serialises refunds of one transfer,
-- and refunds_within_amount makes over-refunding impossible.
CREATE FUNCTION ledger.refund(
    p_user UUID, p_key TEXT, p_fingerprint BYTEA, p_key_ttl_secs BIGINT,
    p_refund_id UUID, p_event_id UUID,
    p_original UUID, p_amount NUMERIC)
RETURNS ledger.posting_result
LANGUAGE plpgsql
SET lock_timeout = '10s'
AS $$
DECLARE
    outcome ledger.posting_result;
    original ledger.transfers;
    refunder accounts.accounts;
    refundee accounts.accounts;
    refund_amount NUMERIC;
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
    PERFORM 1 FROM accounts.accounts
    WHERE id IN (original.from_account_id, original.to_account_id) ORDER BY id FOR UPDATE;
    SELECT * INTO refunder FROM accounts.accounts WHERE id = original.to_account_id;
    SELECT * INTO refundee FROM accounts.accounts WHERE id = original.from_account_id;
    IF NOT EXISTS (SELECT 1 FROM identity.users WHERE id = p_user AND email_verified_at IS NOT NULL) THEN
        RETURN ledger.settle_key(p_user, p_key, 403, NULL, 'email-not-verified');
    END IF;
    IF refunder.status <> 'active' OR refundee.status <> 'active' THEN
        RETURN ledger.settle_key(p_user, p_key, 409, NULL, 'account-closed');
    END IF;
    IF refunder.balance < refund_amount THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'insufficient-funds');
    END IF;
    UPDATE ledger.transfers SET refunded_amount = refunded_amount + refund_amount WHERE id = original.id
    RETURNING * INTO original;
    posted := ledger.record_posting(p_refund_id, 'refund', refunder.id, refundee.id, original.currency,
                                    original.scale, refund_amount, 'Refund of ' || original.id, p_user, original.id);
    -- Keyed by the original transfer, so its events stay in order; transferId names it.
    PERFORM ledger.add_event(p_event_id, original.id, 'transfer.refunded',
        ledger.posting_event(posted) || jsonb_build_object(
            'refundId', posted.id,
            'transferId', original.id,
            'refundedAmount', round(original.refunded_amount, original.scale)::text,
            'transferAmount', round(original.amount, original.scale)::text,
            'refundedBy', ledger.party_json(refunder.id),
            'refundedTo', ledger.party_json(refundee.id)));
    RETURN ledger.settle_key(p_user, p_key, 201, ledger.transfer_json(posted), NULL);
END;
$$;

-- Every invariant of the books and how many rows break it (all zero when sound).
CREATE FUNCTION ledger.check_invariants()
RETURNS TABLE (invariant TEXT, violations BIGINT)
LANGUAGE sql STABLE AS $$
    SELECT 'entries of a transfer sum to zero', count(*)
    FROM (SELECT transfer_id FROM ledger.entries GROUP BY transfer_id
          HAVING sum(amount) <> 0 OR count(*) <> 2) broken
    UNION ALL
    SELECT 'every transfer has its entries', count(*)
    FROM ledger.transfers t WHERE NOT EXISTS (SELECT 1 FROM ledger.entries e WHERE e.transfer_id = t.id)
    UNION ALL
    SELECT 'balance equals the sum of entries', count(*)
    FROM accounts.accounts a
    WHERE a.balance <> COALESCE((SELECT sum(e.amount) FROM ledger.entries e WHERE e.account_id = a.id), 0)
    UNION ALL
    SELECT 'money per currency sums to zero', count(*)
    FROM (SELECT currency FROM accounts.accounts GROUP BY currency HAVING sum(balance) <> 0) broken
    UNION ALL
    SELECT 'no user wallet below zero', count(*)
    FROM accounts.accounts WHERE kind = 'user' AND balance < 0
    UNION ALL
    SELECT 'refunds never exceed their transfer', count(*)
    FROM ledger.transfers t
    WHERE t.refunded_amount <> COALESCE((SELECT sum(r.amount) FROM ledger.transfers r WHERE r.refund_of = t.id), 0)
       OR t.refunded_amount > t.amount
$$;

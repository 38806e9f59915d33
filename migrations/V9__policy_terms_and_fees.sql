-- Policy plugins (wit/policy/policy.wit). The rules a posting must pass are no longer
-- written here: the transfers component asks its policy plugins, and hands what they
-- decided to the posting functions as terms (p_terms):
--
--   {"fee": "0.30",                        -- transfers only; absent or null: none
--    "requirements": [                     -- checked in order under the wallet locks
--      {"policy": 1,                       -- which slot asked (ceilings are scoped by it)
--       "check": "verified-initiator" | "initiator-age" | "ceiling",
--       "minAgeSecs": 86400,               -- initiator-age
--       "currency": "VND" | null,          -- ceiling: null = the currencies no other
--       "windowSecs": 0,                   --   ceiling of its policy and window names
--       "maxAmount": "25000000000" | null, -- ceiling: this posting and the window's
--       "maxCount": 10 | null,             --   postings of the same kind from the wallet
--       "problem": {"status": 422, "slug": "...", "title": "...", "detail": "..."}}]}
--
-- The first failing requirement refuses the posting with its problem, which is stored
-- with the idempotency key (slug in `problem`, title and detail in `body`) and replayed.
-- Because they are checked after the wallets are locked, two racing postings from one
-- wallet cannot both pass a window ceiling.
--
-- Fees: a transfer's fee leaves the sender's wallet with the amount (one entry of
-- -(amount + fee)) and enters the currency's fee account (a third entry), so the entries
-- of every transfer still sum to zero. Refunds give back principal, never the fee.

-- The platform's fee revenue: one account per currency, opened by the first fee charged.
ALTER TABLE accounts.accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts.accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN ('user', 'settlement', 'fees'));
-- Fee accounts only receive: user_balance_not_negative (kind = 'settlement' OR balance >= 0)
-- keeps them at or above zero, settlement_never_closes keeps them open.
CREATE UNIQUE INDEX accounts_one_fee_account_idx ON accounts.accounts (currency) WHERE kind = 'fees';

ALTER TABLE ledger.transfers ADD COLUMN fee NUMERIC(28, 4) NOT NULL DEFAULT 0;
ALTER TABLE ledger.transfers ADD CONSTRAINT fee_not_negative CHECK (fee >= 0);
ALTER TABLE ledger.transfers ADD CONSTRAINT fee_within_scale CHECK (fee = round(fee, scale));
ALTER TABLE ledger.transfers ADD CONSTRAINT only_transfers_carry_fees CHECK (kind = 'transfer' OR fee = 0);

-- A refusal by a policy keeps its title and detail in `body` beside its slug.
ALTER TABLE ledger.idempotency_keys DROP CONSTRAINT idempotency_keys_check;
ALTER TABLE ledger.idempotency_keys ADD CONSTRAINT outcome_is_a_body_or_a_problem
    CHECK (body IS NOT NULL OR problem IS NOT NULL);

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
        'createdAt', to_char(t.created_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
$$;

-- The outcome of a posting a requirement refused.
CREATE FUNCTION ledger.refuse(p_user UUID, p_key TEXT, p_problem JSONB)
RETURNS ledger.posting_result
LANGUAGE plpgsql AS $$
BEGIN
    RETURN ledger.settle_key(p_user, p_key, (p_problem ->> 'status')::int,
                             jsonb_build_object('title', p_problem ->> 'title', 'detail', p_problem ->> 'detail'),
                             p_problem ->> 'slug');
END;
$$;

-- The problem of the first requirement in p_terms that a posting of p_kind and p_amount,
-- asked for by p_user, about p_wallet (locked by the caller), fails; NULL when all pass.
-- Window totals count the wallet's postings of the same kind that p_wallet is the
-- source of (the destination, for deposits), walking its entries newest first.
CREATE FUNCTION ledger.failed_requirement(p_terms JSONB, p_kind TEXT, p_user UUID, p_wallet accounts.accounts, p_amount NUMERIC)
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
    posting RECORD;
BEGIN
    -- Indexing the array keeps the loop in PL/pgSQL's expression fast path (no query).
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
                -- Entries are stamped with their transaction's start, so versions (commit
                -- order) and stamps can disagree by as long as a posting waited for the
                -- lock (lock_timeout 10 s): walk a minute past the cutoff.
                FOR posting IN
                    SELECT e.created_at, t.kind, t.amount,
                           CASE WHEN t.kind = 'deposit' THEN t.to_account_id ELSE t.from_account_id END AS wallet
                    FROM ledger.entries e JOIN ledger.transfers t ON t.id = e.transfer_id
                    WHERE e.account_id = p_wallet.id
                    ORDER BY e.account_version DESC
                LOOP
                    EXIT WHEN posting.created_at < cutoff - interval '1 minute';
                    CONTINUE WHEN posting.created_at < cutoff OR posting.kind <> p_kind OR posting.wallet <> p_wallet.id;
                    window_count := window_count + 1;
                    window_amount := window_amount + posting.amount;
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

-- The posting functions take terms and charge fees: replaced, not overloaded, so no
-- component can post without its policies. (Components built before V9 call signatures
-- that no longer exist and fail loudly; deploy V9 with them.)
DROP FUNCTION ledger.transfer(UUID, TEXT, BYTEA, BIGINT, UUID, UUID, UUID, UUID, TEXT, TEXT, NUMERIC, TEXT);
DROP FUNCTION ledger.settle(TEXT, UUID, TEXT, BYTEA, BIGINT, UUID, UUID, UUID, NUMERIC, JSONB);
DROP FUNCTION ledger.refund(UUID, TEXT, BYTEA, BIGINT, UUID, UUID, UUID, NUMERIC);
DROP FUNCTION ledger.record_posting(UUID, TEXT, UUID, UUID, TEXT, SMALLINT, NUMERIC, TEXT, UUID, UUID);

-- Moves p_amount from p_from to p_to, and p_fee (if any) from p_from to p_fee_account. The
-- caller has locked every account involved (by id order) and checked the rules; the CHECK
-- constraints on accounts stay the last line of defence.
CREATE FUNCTION ledger.record_posting(
    p_id UUID, p_kind TEXT, p_from UUID, p_to UUID, p_currency TEXT, p_scale SMALLINT,
    p_amount NUMERIC, p_description TEXT, p_initiator UUID, p_refund_of UUID,
    p_fee NUMERIC, p_fee_account UUID)
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
                                  description, initiated_by, refund_of, created_at)
    VALUES (p_id, p_kind, p_from, p_to, p_currency, p_scale, p_amount, p_fee, p_description, p_initiator,
            p_refund_of, stamp)
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

-- The currency's fee account, opened on first use.
CREATE FUNCTION ledger.fee_account(p_currency TEXT, p_scale SMALLINT) RETURNS UUID
LANGUAGE plpgsql AS $$
DECLARE
    found UUID;
BEGIN
    SELECT id INTO found FROM accounts.accounts WHERE kind = 'fees' AND currency = p_currency;
    IF found IS NULL THEN
        INSERT INTO accounts.accounts (id, kind, currency, scale)
        VALUES (gen_random_uuid(), 'fees', p_currency, p_scale)
        ON CONFLICT (currency) WHERE kind = 'fees' DO NOTHING;
        SELECT id INTO found FROM accounts.accounts WHERE kind = 'fees' AND currency = p_currency;
    END IF;
    RETURN found;
END;
$$;

-- POST /transfers. The recipient is p_to, or the active wallet in p_currency of the user
-- whose email_key is p_to_email_key.
CREATE FUNCTION ledger.transfer(
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
    -- Lock every wallet in id order: two opposite transfers cannot deadlock.
    PERFORM 1 FROM accounts.accounts WHERE id IN (p_from, target, fee_account) ORDER BY id FOR UPDATE;
    SELECT * INTO source FROM accounts.accounts WHERE id = p_from;
    SELECT * INTO destination FROM accounts.accounts WHERE id = target;
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
    IF source.balance < p_amount + fee THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'insufficient-funds');
    END IF;
    posted := ledger.record_posting(p_transfer_id, 'transfer', p_from, target, p_currency, source.scale,
                                    p_amount, p_description, p_user, NULL, fee, fee_account);
    PERFORM ledger.add_event(p_event_id, posted.id, 'transfer.completed',
        ledger.posting_event(posted) || jsonb_build_object(
            'fee', round(posted.fee, posted.scale)::text,
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
    p_account UUID, p_amount NUMERIC, p_terms JSONB)
RETURNS ledger.posting_result
LANGUAGE plpgsql
SET lock_timeout = '10s'
AS $$
DECLARE
    outcome ledger.posting_result;
    wallet accounts.accounts;
    settlement UUID;
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
    PERFORM 1 FROM accounts.accounts WHERE id IN (p_account, settlement) ORDER BY id FOR UPDATE;
    SELECT * INTO wallet FROM accounts.accounts WHERE id = p_account;
    IF wallet.status <> 'active' THEN
        RETURN ledger.settle_key(p_user, p_key, 409, NULL, 'account-closed');
    END IF;
    refusal := ledger.failed_requirement(p_terms, p_direction, p_user, wallet, p_amount);
    IF refusal IS NOT NULL THEN
        RETURN ledger.refuse(p_user, p_key, refusal);
    END IF;
    IF p_direction = 'withdrawal' AND wallet.balance < p_amount THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'insufficient-funds');
    END IF;
    IF p_direction = 'deposit' THEN
        posted := ledger.record_posting(p_transfer_id, 'deposit', settlement, p_account, wallet.currency,
                                        wallet.scale, p_amount, NULL, p_user, NULL, 0, NULL);
    ELSE
        posted := ledger.record_posting(p_transfer_id, 'withdrawal', p_account, settlement, wallet.currency,
                                        wallet.scale, p_amount, NULL, p_user, NULL, 0, NULL);
    END IF;
    PERFORM ledger.add_event(p_event_id, posted.id, p_direction || '.completed',
        ledger.posting_event(posted) || jsonb_build_object(
            'account', ledger.party_json(p_account),
            'balanceAfter', round((SELECT balance FROM accounts.accounts WHERE id = p_account), posted.scale)::text));
    RETURN ledger.settle_key(p_user, p_key, 201, ledger.transfer_json(posted), NULL);
END;
$$;

-- POST /transfers/{id}/refunds: the recipient gives back part or all (p_amount NULL) of
-- what is left of a transfer's amount; a fee it carried stays with the platform. The
-- original's row lock serialises refunds of one transfer, and refunds_within_amount makes
-- over-refunding impossible.
CREATE FUNCTION ledger.refund(
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
    PERFORM 1 FROM accounts.accounts
    WHERE id IN (original.from_account_id, original.to_account_id) ORDER BY id FOR UPDATE;
    SELECT * INTO refunder FROM accounts.accounts WHERE id = original.to_account_id;
    SELECT * INTO refundee FROM accounts.accounts WHERE id = original.from_account_id;
    IF refunder.status <> 'active' OR refundee.status <> 'active' THEN
        RETURN ledger.settle_key(p_user, p_key, 409, NULL, 'account-closed');
    END IF;
    refusal := ledger.failed_requirement(p_terms, 'refund', p_user, refunder, refund_amount);
    IF refusal IS NOT NULL THEN
        RETURN ledger.refuse(p_user, p_key, refusal);
    END IF;
    IF refunder.balance < refund_amount THEN
        RETURN ledger.settle_key(p_user, p_key, 422, NULL, 'insufficient-funds');
    END IF;
    UPDATE ledger.transfers SET refunded_amount = refunded_amount + refund_amount WHERE id = original.id
    RETURNING * INTO original;
    posted := ledger.record_posting(p_refund_id, 'refund', refunder.id, refundee.id, original.currency,
                                    original.scale, refund_amount, 'Refund of ' || original.id, p_user, original.id,
                                    0, NULL);
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
CREATE OR REPLACE FUNCTION ledger.check_invariants()
RETURNS TABLE (invariant TEXT, violations BIGINT)
LANGUAGE sql STABLE AS $$
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
$$;

-- The transactional outbox (DESIGN §5). Every event is inserted in the same transaction as
-- the state change it describes; only the bridge's relay reads it and publishes to Kafka.

CREATE TABLE outbox.events (
    -- Relay order. Rows are never skipped: the relay publishes every row that is still
    -- unpublished, so a transaction that commits late (lower position) is still sent.
    position       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The event id (UUID v7), sent as the CloudEvents `ce_id` header for deduplication.
    id             UUID NOT NULL UNIQUE,
    -- Topic and key: `identity`/user id, `accounts`/account id, `ledger`/transfer id.
    aggregate_type TEXT NOT NULL CHECK (aggregate_type IN ('identity', 'accounts', 'ledger')),
    aggregate_id   TEXT NOT NULL CHECK (aggregate_id <> ''),
    event_type     TEXT NOT NULL CHECK (event_type ~ '^[a-z]+(_[a-z]+)*\.[a-z]+(_[a-z]+)*$'),
    payload        JSONB NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    created_at     TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    -- Set only after the broker acknowledged the event.
    published_at   TIMESTAMP
);

-- The relay's work queue: unpublished rows in order, small however large the table grows.
CREATE INDEX events_unpublished_idx ON outbox.events (position) WHERE published_at IS NULL;

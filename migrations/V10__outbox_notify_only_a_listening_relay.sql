-- The outbox's NOTIFY serialised commits: Postgres queues notifications under one lock
-- per database, held from just before a notifying transaction commits until it has
-- committed, so committing writers queue behind each other and lose group commit. With
-- V6's trigger on, pgbench on ledger.transfer ran at 0.63× of its rate with the trigger
-- off (BENCHMARKS.md). Writers now notify only while the relay is listening, that is
-- idle; a relay that has seen events recently polls instead (bridge/src/relay.rs).
--
-- Before it listens, the relay sets `listening` (committed), then tries the wake-up lock
-- exclusively, without waiting. A writer takes it shared, until it commits, before
-- reading `listening`. If the try succeeds, every writer that read `listening` before it
-- was set has committed, so the relay's next read of the outbox finds its event; every
-- later writer reads it set and notifies. If a writer holds the lock, the relay clears
-- `listening` and polls on. Writers never wait for the relay.

CREATE TABLE outbox.relay_wakeup (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    listening BOOLEAN NOT NULL
);

-- No relay has said it listens: the only listener is a relay, which sets this itself.
INSERT INTO outbox.relay_wakeup (listening) VALUES (FALSE);

CREATE OR REPLACE FUNCTION outbox.notify_relay() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The wake-up lock, shared ("wakeup" in ASCII; the relay's WAKEUP_LOCK_KEY).
    PERFORM pg_advisory_xact_lock_shared(131260297344368);
    IF (SELECT listening FROM outbox.relay_wakeup) THEN
        PERFORM pg_notify('outbox_events', '');
    END IF;
    RETURN NULL;
END;
$$;

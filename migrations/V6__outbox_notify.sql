-- Wakes the relay when events are committed: one notification per inserting statement,
-- delivered at commit (and folded with others of the same transaction). The relay also
-- polls, so a missed notification only delays an event, never loses it.

CREATE FUNCTION outbox.notify_relay() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_wake_relay
AFTER INSERT ON outbox.events
FOR EACH STATEMENT EXECUTE FUNCTION outbox.notify_relay();

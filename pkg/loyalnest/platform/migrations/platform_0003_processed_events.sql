-- Applied to every service schema: events a consumer has applied
-- (loyalnest.platform.events.inbox). Inserted in the same transaction as the event's
-- effect, so a redelivered event finds its row and is skipped.
CREATE TABLE processed_events (
    -- The consumer group: two consumers in one service each apply an event once.
    consumer     text        NOT NULL,
    -- text, not uuid: an id from a foreign producer must not make the insert fail.
    event_id     text        NOT NULL,
    topic        text        NOT NULL,
    "partition"  integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_processed_at ON processed_events USING brin (processed_at);

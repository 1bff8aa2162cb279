-- Applied to every service schema: the transactional outbox (loyalnest.platform.events.outbox).
-- Rows are written in the same transaction as the state change they announce; a relay
-- publishes them to Kafka and marks them sent.
CREATE TABLE outbox (
    -- Commit order per aggregate: enqueue() runs after the write that locks the aggregate,
    -- so a later change of the same aggregate always gets a larger id.
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      uuid        NOT NULL,
    event_type    text        NOT NULL,
    topic         text        NOT NULL,
    partition_key text        NOT NULL,
    -- crc32(partition_key) % 64. A relay owns a lane while it publishes it (row lock on
    -- outbox_lanes, SKIP LOCKED for the others), so one key is never published by two
    -- relays at once and its events leave in id order.
    lane          smallint    NOT NULL CHECK (lane >= 0 AND lane < 64),
    envelope      bytea       NOT NULL,
    headers       jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz
);
CREATE INDEX outbox_pending ON outbox (lane, id) WHERE sent_at IS NULL;

CREATE TABLE outbox_lanes (
    lane smallint PRIMARY KEY
);
INSERT INTO outbox_lanes (lane) SELECT generate_series(0, 63);

-- depends: event_tracking_0001_queue_tasks
-- Every pseudonym an event was queued under: the persons PostHog may know. Kept past the
-- queue's retention (queue_tasks are purged), so an erasure can still name them. Erasing a
-- customer or a merchant marks their rows (in the erasing transaction: a crash loses no
-- deletion); the deleter then deletes each person at PostHog with its events and drops the
-- row. The distinct id is a pseudonym (HMAC of merchant and id), never the customer's id.
CREATE TABLE posthog_persons (
    merchant_id       text        NOT NULL,
    distinct_id       text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- Set by an erasure: the person is to be deleted at PostHog.
    erase_requested_at timestamptz,
    attempts          integer     NOT NULL DEFAULT 0,
    last_error        text,
    -- Not before: after the lease of a batch that may still be on its way to PostHog, then
    -- after each failed attempt's backoff (a claim moves it ahead by a lease, too).
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, distinct_id)
);
-- What the deleter scans: only the persons to delete, by when they are due.
CREATE INDEX posthog_persons_due ON posthog_persons (next_attempt_at)
    WHERE erase_requested_at IS NOT NULL;
-- The persons of the events queued before this table existed.
INSERT INTO posthog_persons (merchant_id, distinct_id)
    SELECT DISTINCT merchant_id, subject FROM queue_tasks ON CONFLICT DO NOTHING;

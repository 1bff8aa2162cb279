-- depends: event_tracking_0001_queue_tasks
-- Every pseudonym an event was sent to PostHog under (registered when a shipper claims the
-- batch: from then on PostHog may know the person): kept past the queue's retention
-- (queue_tasks are purged), so an erasure can still name them. Erasing a customer or a
-- merchant marks their rows (in the erasing transaction: a crash loses no deletion); the
-- deleter then deletes each person at PostHog with its events and notes when; the erasure,
-- asked again (AdminCore retries until it succeeds), finds them all deleted, drops the rows
-- and only then succeeds. The distinct id is a pseudonym (HMAC of merchant and id).
CREATE TABLE posthog_persons (
    merchant_id        text        NOT NULL,
    distinct_id        text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- Set by an erasure: the person is to be deleted at PostHog.
    erase_requested_at timestamptz,
    -- Set by the deleter: PostHog has no such person any more.
    deleted_at         timestamptz,
    attempts           integer     NOT NULL DEFAULT 0,
    last_error         text,
    -- Not before: after the lease of a batch that may still be on its way to PostHog, then
    -- after each failed attempt's backoff (a claim moves it ahead by a lease, too).
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, distinct_id)
);
-- What the deleter scans: only the persons to delete, by when they are due.
CREATE INDEX posthog_persons_due ON posthog_persons (next_attempt_at)
    WHERE erase_requested_at IS NOT NULL AND deleted_at IS NULL;
-- The persons of the events sent (or being sent) before this table existed.
INSERT INTO posthog_persons (merchant_id, distinct_id)
    SELECT DISTINCT merchant_id, subject FROM queue_tasks
    WHERE status = 'completed' OR attempts > 0 OR next_attempt_at > now()
    ON CONFLICT DO NOTHING;

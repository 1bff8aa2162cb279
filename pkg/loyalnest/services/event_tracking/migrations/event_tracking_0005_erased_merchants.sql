-- depends: event_tracking_0004_erased_persons
-- The merchant-level tombstone of shop/redact: an event of the merchant that occurred before
-- its erasure and arrives after it (still in a topic, a consumer lagging, a relay catching
-- up, a storefront's late batch) is dropped, not shipped, so PostHog never gets the erased
-- merchant's persons or events again. By occurrence, not for good: a merchant that
-- reinstalls (same id) has its new events shipped. A second shop/redact (after another
-- uninstall) moves `erased_at` on. No personal data: the merchant's id and a time.
CREATE TABLE erased_merchants (
    merchant_id text        PRIMARY KEY,
    erased_at   timestamptz NOT NULL DEFAULT now()
);

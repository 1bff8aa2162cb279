-- depends: event_tracking_0003_purge
-- Tombstones of erased persons: an event about one arriving after the erasure completed (a
-- late domain event, a storefront still holding the id) is dropped, not shipped, so PostHog
-- never gets a new person for them. `subject` is the pseudonym (HMAC of merchant and id under
-- the pseudonym key), never the Shopify or Users id in clear. Written by a customer's erasure
-- in its transaction; kept for good (Shopify and Users never reuse an id), gone with the
-- merchant (shop/redact).
CREATE TABLE erased_persons (
    merchant_id text        NOT NULL,
    subject     text        NOT NULL,
    erased_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, subject)
);

-- Customer pseudonyms (platform/events/pseudonyms.py): a customer's pseudonym on Kafka is
-- `cust_` + their customer_keys.key_id, gone with the key when they are erased. What stays is
-- this tombstone: the pseudonym -> the erasure's anonymous id (`erased:...`, the id every
-- service gave the customer), so records still on the topics resolve to that anonymous
-- customer, never to the person. Keyed by merchant: shop/redact deletes them all.
CREATE TABLE customer_pseudonym_tombstones (
    merchant_id   text        NOT NULL,
    pseudonym     text        NOT NULL,
    anonymous_id  text        NOT NULL,
    erased_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, pseudonym)
);

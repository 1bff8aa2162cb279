-- Applied to every service schema: idempotency keys get a namespace (loyalnest.platform
-- .idempotency: 'request' for a request's idempotency_key, 'internal' for keys a service
-- derives itself, others for keys of other fields such as Core's import batch ids), part of
-- the primary key, so a client key can never claim a key of a service's own writes.
-- Existing rows are all client keys unless a service's own migration says otherwise
-- (points_0004, core_0002 move theirs).
ALTER TABLE idempotency_keys ADD COLUMN namespace text NOT NULL DEFAULT 'request';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (merchant_id, namespace, idempotency_key);

-- Points' own keys leave the clients' namespace (platform_0004): before it, a client's
-- EarnPoints with idempotency_key 'order:1234' claimed the key of order 1234's credit and
-- blocked it forever. A row moves only when it provably is the service's own: its
-- fingerprint is the one IdempotencyKey.internal / rewards.refund_key computes from the
-- transaction it recorded (a client key's fingerprint hashes its RPC's name first, so it
-- never matches). A client's 'order:...' key stays the client's.

-- Order credits ('order:<id>') and reversals ('order:<id>:<adjustment>'):
-- sha256(key \0 customer_id \0 points).
UPDATE idempotency_keys k
   SET namespace = 'internal'
  FROM points_transactions t
 WHERE k.namespace = 'request'
   AND k.idempotency_key LIKE 'order:%'
   AND t.transaction_id::text = k.result_ref
   AND t.merchant_id = k.merchant_id
   AND k.request_fingerprint = encode(sha256(
           convert_to(k.idempotency_key, 'UTF8') || '\x00'::bytea
           || convert_to(t.customer_id, 'UTF8') || '\x00'::bytea
           || convert_to(abs(t.points)::text, 'UTF8')), 'hex');

-- Refunds of failed reward redemptions: sha256('RewardRefund' \0 redemption_id).
UPDATE idempotency_keys
   SET namespace = 'internal'
 WHERE namespace = 'request'
   AND idempotency_key LIKE 'refund:reward-redemption:%'
   AND request_fingerprint = encode(sha256(
           convert_to('RewardRefund', 'UTF8') || '\x00'::bytea
           || convert_to(substr(idempotency_key, length('refund:reward-redemption:') + 1),
                         'UTF8')), 'hex');

-- POS offline items ('pos-offline:<client_transaction_id>'), a field of their own: their
-- fingerprint hashes the whole item, so the posting's reason, which offline sync always
-- ends with the device, tells them from a client's key.
UPDATE idempotency_keys k
   SET namespace = 'pos-offline',
       idempotency_key = substr(k.idempotency_key, length('pos-offline:') + 1)
  FROM points_transactions t
 WHERE k.namespace = 'request'
   AND k.idempotency_key LIKE 'pos-offline:%'
   AND t.transaction_id::text = k.result_ref
   AND t.merchant_id = k.merchant_id
   AND t.reason LIKE '% (device %)';

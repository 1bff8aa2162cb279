-- depends: core_0002_billing
-- ImportCustomers' batch ids were stored as 'import:<batch id>' among the merchant's
-- idempotency keys, so a client key 'import:b1' on another RPC collided with batch b1. They
-- move to the 'import' namespace (platform_0004). Only rows that are that batch's import
-- (its result is the batch's import_id) move: a client's own 'import:...' key stays.
UPDATE idempotency_keys k
   SET namespace = 'import', idempotency_key = substr(k.idempotency_key, length('import:') + 1)
  FROM customer_import_logs l
 WHERE k.namespace = 'request'
   AND k.idempotency_key LIKE 'import:%'
   AND l.merchant_id = k.merchant_id
   AND l.batch_id = substr(k.idempotency_key, length('import:') + 1)
   AND l.import_id::text = k.result_ref;

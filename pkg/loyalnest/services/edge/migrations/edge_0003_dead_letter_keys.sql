-- depends: edge_0002_webhook_binding_and_retention
-- A dead letter naming a customer is sealed under that customer's key (customer_keys.key_id;
-- services/edge/dead_letters.py): erasing the customer deletes the key, so every copy of the
-- dead letter (backups included) stays unreadable. NULL: sealed under the master key (a body
-- naming no customer), dropped by the retention purge.
ALTER TABLE webhook_dead_letters ADD COLUMN key_id text;
CREATE INDEX webhook_dead_letters_key ON webhook_dead_letters (key_id) WHERE key_id IS NOT NULL;

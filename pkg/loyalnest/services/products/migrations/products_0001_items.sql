-- depends: audit_0001_audit_logs
-- The Products service's items: one row per merchant and item.
CREATE TABLE items (
    item_id     uuid        NOT NULL,
    merchant_id text        NOT NULL,
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Every read names the merchant (from the caller's token) with the id.
    PRIMARY KEY (merchant_id, item_id)
);
CREATE INDEX items_merchant_created ON items (merchant_id, created_at);

CREATE TRIGGER items_audit AFTER INSERT OR UPDATE OR DELETE ON items
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('item_id', '');

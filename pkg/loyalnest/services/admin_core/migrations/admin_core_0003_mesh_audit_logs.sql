-- depends: admin_core_0002_merchants
-- Seed §10 /admin/logs: every audited service's audit rows (audit_log.recorded), one query
-- over the mesh. Named mesh_audit_logs: AdminCore's own audit_logs (the platform's, for its
-- own changes) is one of the sources feeding it.
CREATE TABLE mesh_audit_logs (
    -- Arrival order: per resource it is change order (the events of one resource come in
    -- order on one partition), so newest-first paging and the tail never reorder a resource.
    seq         bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    -- The source row's id: an event delivered twice is stored once.
    log_id      uuid        PRIMARY KEY,
    merchant_id text        NOT NULL,
    service     text        NOT NULL,
    user_id     text        NOT NULL DEFAULT '',
    resource    text        NOT NULL,
    action      text        NOT NULL,
    actor       text        NOT NULL DEFAULT '',
    details     jsonb       NOT NULL,
    -- When the source service made the change.
    created_at  timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mesh_audit_logs_merchant_seq ON mesh_audit_logs (merchant_id, seq);
CREATE INDEX mesh_audit_logs_resource ON mesh_audit_logs (merchant_id, resource, seq);
CREATE INDEX mesh_audit_logs_actor ON mesh_audit_logs (merchant_id, actor, seq);
CREATE INDEX mesh_audit_logs_created ON mesh_audit_logs USING brin (created_at);

-- Immutable: no UPDATE, no TRUNCATE, and no DELETE except the one documented exception, a
-- shop redaction (Shopify's shop/redact: everything of the merchant erased), which names the
-- merchant it erases in a transaction-local setting. The trigger binds the table's owner too;
-- REVOKE keeps any other role from trying.
REVOKE UPDATE, DELETE, TRUNCATE ON mesh_audit_logs FROM PUBLIC;

CREATE FUNCTION mesh_audit_logs_immutable() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    -- Nested: a statement-level (TRUNCATE) call has no OLD row to look at.
    IF TG_OP = 'DELETE' THEN
        IF OLD.merchant_id = current_setting('loyalnest.shop_redaction', true) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit log rows are immutable (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER mesh_audit_logs_no_change BEFORE UPDATE OR DELETE ON mesh_audit_logs
    FOR EACH ROW EXECUTE FUNCTION mesh_audit_logs_immutable();
CREATE TRIGGER mesh_audit_logs_no_truncate BEFORE TRUNCATE ON mesh_audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION mesh_audit_logs_immutable();

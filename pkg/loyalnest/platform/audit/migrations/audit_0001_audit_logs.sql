-- Shared by the services whose changes are audited (users, roles): see loyalnest.platform.audit.
-- Seed §6: audit_logs (log_id, merchant_id, user_id, action, details, created_at).
CREATE TABLE audit_logs (
    log_id      uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id text        NOT NULL,
    -- The user the change is about, when there is one.
    user_id     text,
    -- The table and primary key of the changed row.
    entity_type text        NOT NULL,
    entity_id   text        NOT NULL,
    action      text        NOT NULL CHECK (action IN ('create', 'update', 'delete')),
    -- Token subject of the caller, or the event that caused the change; NULL: not set
    -- (e.g. a manual change in psql).
    actor       text,
    -- {"old": row before, "new": row after, "changed": [column names]}, redacted columns
    -- removed from old/new but listed in changed.
    details     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_logs_merchant_created ON audit_logs (merchant_id, created_at);
CREATE INDEX audit_logs_user ON audit_logs (merchant_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX audit_logs_entity ON audit_logs (entity_type, entity_id);

-- AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW EXECUTE FUNCTION
--   audit_row_change(id_column, user_column_or_empty, redacted_column, ...)
CREATE FUNCTION audit_row_change() RETURNS trigger
LANGUAGE plpgsql
-- Resolve audit_logs in this schema whatever the caller's search_path.
SET search_path FROM CURRENT
AS $$
DECLARE
    old_row  jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
    new_row  jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
    any_row  jsonb := coalesce(new_row, old_row);
    redacted text[] := coalesce(TG_ARGV[2:], '{}');
    changed  text[];
BEGIN
    SELECT coalesce(array_agg(key ORDER BY key), '{}') INTO changed
    FROM (
        SELECT key FROM jsonb_object_keys(coalesce(new_row, '{}') || coalesce(old_row, '{}')) AS key
        WHERE new_row -> key IS DISTINCT FROM old_row -> key
    ) AS keys;
    INSERT INTO audit_logs (merchant_id, user_id, entity_type, entity_id, action, actor, details)
    VALUES (
        any_row ->> 'merchant_id',
        CASE WHEN TG_ARGV[1] <> '' THEN any_row ->> TG_ARGV[1] END,
        TG_TABLE_NAME,
        any_row ->> TG_ARGV[0],
        CASE TG_OP WHEN 'INSERT' THEN 'create' WHEN 'UPDATE' THEN 'update' ELSE 'delete' END,
        nullif(current_setting('loyalnest.actor', true), ''),
        jsonb_build_object(
            'old', old_row - redacted,
            'new', new_row - redacted,
            'changed', to_jsonb(changed)
        )
    );
    RETURN NULL;
END;
$$;

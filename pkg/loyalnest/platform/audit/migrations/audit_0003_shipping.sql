-- depends: audit_0002_platform_rows
-- Audit rows leave for AdminCore (loyalnest.platform.audit.shipper): a second trigger, on
-- audit_logs itself, queues each new row's id; the shipper turns queued rows into
-- audit_log.recorded events in queue order. A queue, not a flag on audit_logs: the audit rows
-- stay insert-only. Rows of no merchant (a platform admin's actions in Auth) stay local: an
-- event needs a merchant.
CREATE TABLE audit_log_queue (
    -- Per resource, queue order is change order: the second change of a row waits on the
    -- first's row lock, so it is queued (and numbered) after the first committed.
    seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    log_id uuid   NOT NULL
);

CREATE FUNCTION audit_log_enqueue() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO audit_log_queue (log_id) VALUES (NEW.log_id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER audit_logs_ship AFTER INSERT ON audit_logs
    FOR EACH ROW WHEN (NEW.merchant_id IS NOT NULL) EXECUTE FUNCTION audit_log_enqueue();

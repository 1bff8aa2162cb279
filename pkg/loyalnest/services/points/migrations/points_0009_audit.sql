-- depends: audit_0003_shipping points_0008_redemption_cancel
-- The merchant's rewards catalog is audited (README "Audit logs"); the ledger is not: it is
-- its own append-only history, and a trigger there would tax the hot path.
CREATE TRIGGER rewards_audit AFTER INSERT OR UPDATE OR DELETE ON rewards
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('reward_id', '', 'request_fingerprint');

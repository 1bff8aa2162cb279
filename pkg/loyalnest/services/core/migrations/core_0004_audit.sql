-- depends: audit_0003_shipping core_0003_import_key_namespace
-- The merchant's program (plan, earning, tiers) is audited: every version's change is a row
-- in audit_logs, shipped to AdminCore's mesh-wide log (README "Audit logs"). No customer data
-- in these rows, so the audit image needs no redaction.
CREATE TRIGGER program_settings_audit AFTER INSERT OR UPDATE OR DELETE ON program_settings
    FOR EACH ROW EXECUTE FUNCTION audit_row_change('merchant_id', '');

-- Actions that concern no merchant (a platform admin created, a token revoked by its id, an
-- admin's MFA enrolment) are audited too: their rows have merchant_id NULL.
ALTER TABLE audit_logs ALTER COLUMN merchant_id DROP NOT NULL;
CREATE INDEX audit_logs_platform_created ON audit_logs (created_at) WHERE merchant_id IS NULL;

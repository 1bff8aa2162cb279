-- depends: auth_0004_uninstall_drops_shop_tokens
-- Admin sign-in lockout (servicer.AdminLogin / VerifyMfa, store.claim_attempt): one counter
-- per factor (password, totp) and scope (account, source address). An attempt is counted
-- *before* its secret is checked, in one statement (INSERT .. ON CONFLICT DO UPDATE, which
-- locks the row), so parallel guesses cannot all slip under the limit; the attempt past the
-- limit locks the counter for base * 2^lockouts (capped). The account of a password attempt
-- is the email's blind index, so an unknown email locks exactly like a known one.
CREATE TABLE sign_in_throttles (
    factor       text        NOT NULL CHECK (factor IN ('password', 'totp')),
    scope        text        NOT NULL CHECK (scope IN ('account', 'source')),
    subject      text        NOT NULL,
    -- Attempts counted since the last success (account) or lockout.
    attempts     integer     NOT NULL DEFAULT 0,
    -- Consecutive lockouts: the backoff's exponent.
    lockouts     integer     NOT NULL DEFAULT 0,
    locked_until timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (factor, scope, subject)
);
CREATE INDEX sign_in_throttles_updated_at ON sign_in_throttles (updated_at);

-- A lock in force under the old single counter carries over to the password counter.
INSERT INTO sign_in_throttles (factor, scope, subject, locked_until)
SELECT 'password', 'account', encode(email_index, 'hex'), locked_until
FROM admin_users WHERE locked_until > now();
-- admin_users.failed_attempts / locked_until are no longer read or written; they stay for
-- the pods of the previous release during a rolling update (drop them in a later release).
COMMENT ON COLUMN admin_users.failed_attempts IS 'unused since auth_0004 (sign_in_throttles)';
COMMENT ON COLUMN admin_users.locked_until IS 'unused since auth_0004 (sign_in_throttles)';

-- MFA enrolment needs more than the password: a single-use enrolment token (SHA-256 of a
-- 256-bit random value), handed out by CreateAdminUser (an authenticated admin) to be passed
-- to the new admin out of band. EnrollMfa spends it.
CREATE TABLE mfa_enrollment_tokens (
    token_hash bytea       PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES admin_users (user_id) ON DELETE CASCADE,
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX mfa_enrollment_tokens_user_id ON mfa_enrollment_tokens (user_id);

-- Fixed-window rate limits of unauthenticated calls that write (Login's OAuth states), per
-- scope ('login-source', 'login-shop') and subject; counted in one statement like the above.
CREATE TABLE request_rates (
    scope        text        NOT NULL,
    subject      text        NOT NULL,
    window_start timestamptz NOT NULL,
    hits         integer     NOT NULL,
    PRIMARY KEY (scope, subject)
);
CREATE INDEX request_rates_window_start ON request_rates (window_start);

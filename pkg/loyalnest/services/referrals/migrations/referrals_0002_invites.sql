-- depends: referrals_0001_referrals
-- Invites (issue 16 item 6): a friend invited by email or SMS, queued by SendInvite and
-- delivered by the send job (never in the request).

CREATE TABLE invites (
    merchant_id    text        NOT NULL,
    invite_id      uuid        NOT NULL,
    referral_id    uuid        NOT NULL,
    referrer_id    text        NOT NULL,
    channel        text        NOT NULL CHECK (channel IN ('email', 'sms')),
    -- The friend's address; cleared once the invite is sent or failed (no need to keep it).
    recipient      text        NOT NULL,
    status         text        NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sent', 'failed')),
    provider       text        NOT NULL DEFAULT '',
    fallback_used  boolean     NOT NULL DEFAULT false,
    failure_reason text        NOT NULL DEFAULT '',
    attempts       integer     NOT NULL DEFAULT 0,
    -- When a send job may take it (again): a taken invite is leased, not locked, so a job
    -- that dies mid-send leaves it to another after the lease.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- SES has no idempotency: set (and committed) before the one SES call, never cleared,
    -- so no retry or other replica calls SES a second time for the invite.
    ses_claimed_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    PRIMARY KEY (merchant_id, invite_id),
    -- Erasing a referral (a customer's or merchant's erasure) takes its invites with it.
    FOREIGN KEY (merchant_id, referral_id) REFERENCES referrals (merchant_id, referral_id)
        ON DELETE CASCADE
);
CREATE INDEX invites_due ON invites (next_attempt_at) WHERE status = 'queued';
CREATE INDEX invites_referral ON invites (merchant_id, referral_id, created_at);
-- Daily caps count a merchant's and a referrer's invites of the day.
CREATE INDEX invites_merchant_day ON invites (merchant_id, created_at);
CREATE INDEX invites_referrer_day ON invites (merchant_id, referrer_id, created_at);

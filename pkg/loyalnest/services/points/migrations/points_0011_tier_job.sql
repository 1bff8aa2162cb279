-- depends: points_0010_reward_conditions
-- The VIP tier job's progress per merchant (tiers.py VipTiers.run): the last customer of the
-- last page done, so a run that crashed resumes after it; the row goes when the run finishes.
CREATE TABLE tier_job_progress (
    merchant_id    text        PRIMARY KEY,
    after_customer text        NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

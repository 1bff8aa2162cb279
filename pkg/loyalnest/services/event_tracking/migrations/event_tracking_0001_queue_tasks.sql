-- depends: audit_0001_audit_logs
-- Analytics events waiting for PostHog, and what became of them (seed §9, queue_tasks).
-- One row per event: from POST /v1/api/events, from domain events, from CreateTask.
CREATE TABLE queue_tasks (
    -- Also the event's uuid at PostHog (its dedupe key).
    task_id         uuid        NOT NULL,
    merchant_id     text        NOT NULL,
    -- The event's name at PostHog, e.g. points_earned.
    event_type      text        NOT NULL,
    source          text        NOT NULL CHECK (source IN ('client', 'domain', 'task')),
    -- The pseudonymous distinct id PostHog gets: never a customer's own id.
    subject         text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'completed', 'failed')),
    -- The allow-listed properties.
    payload         jsonb       NOT NULL,
    occurred_at     timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    -- When a shipper may take it (again): a claim moves it ahead by a lease.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    -- Every read names the merchant (from the caller's token) with the id.
    PRIMARY KEY (merchant_id, task_id)
);
CREATE INDEX queue_tasks_merchant_created ON queue_tasks (merchant_id, created_at);
-- What the shippers scan: only the pending rows, by when they are due.
CREATE INDEX queue_tasks_due ON queue_tasks (next_attempt_at) WHERE status = 'pending';
-- Export and erasure of one person find their rows by pseudonym.
CREATE INDEX queue_tasks_subject ON queue_tasks (merchant_id, subject);

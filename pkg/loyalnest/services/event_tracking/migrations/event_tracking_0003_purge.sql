-- depends: event_tracking_0002_posthog_persons
-- What the purge scans: finished tasks by when they finished (pending ones are never purged).
CREATE INDEX queue_tasks_finished ON queue_tasks (completed_at) WHERE status <> 'pending';

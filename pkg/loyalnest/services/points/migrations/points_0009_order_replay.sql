-- Rule simulation (simulation.py) replays stored orders under a draft rule set: what the rules
-- saw of each order. Orders recorded before stay NULL / false (replayed on their eligible amount).
ALTER TABLE order_earnings ADD COLUMN weighted_amount numeric;
ALTER TABLE order_earnings ADD COLUMN pos boolean NOT NULL DEFAULT false;

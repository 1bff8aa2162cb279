-- A redemption cancelled unused: its code deactivated at Shopify, its points given back once.
ALTER TABLE reward_redemptions DROP CONSTRAINT reward_redemptions_status_check;
ALTER TABLE reward_redemptions ADD CONSTRAINT reward_redemptions_status_check
    CHECK (status IN ('pending', 'completed', 'refunded', 'cancelled'));

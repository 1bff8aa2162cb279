-- depends: roles_0002_merchant_scoped_permissions
-- Owner roles written with the former default set (roles_0002) lack event_tracking:*, which
-- the default Owner has held since Event Tracking landed (issue 18): add it, the list kept
-- sorted. An Owner a merchant has edited is left as the merchant made it.
UPDATE roles SET permissions = (
    SELECT jsonb_agg(p ORDER BY p)
    FROM (
        SELECT jsonb_array_elements_text(permissions) AS p
        UNION
        SELECT 'event_tracking:*'
    ) AS merged
)
WHERE name = 'Owner'
  AND permissions = '["campaign:*", "core:*", "gamification:*", "gateway:*", "points:*",
                      "products:*", "referrals:*", "rewards:*", "rfm:*", "roles:*",
                      "users:*"]'::jsonb;

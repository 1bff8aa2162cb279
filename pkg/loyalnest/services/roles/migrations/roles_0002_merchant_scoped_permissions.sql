-- depends: roles_0001_roles
-- Merchant roles never carry mesh-global permissions (admin:full, admin:*, auth:...; see
-- loyalnest.platform.auth.permissions): RolesService refuses them from now on, and this
-- removes them from roles written before. The default "Owner" role (admin:full alone) gets
-- the owner's merchant-scoped set instead. No role.updated is published: Auth asks Roles for
-- a staff member's permissions at every sign-in and refresh, and never put these in a token.
UPDATE roles SET
    permissions = CASE
        WHEN name = 'Owner' AND permissions = '["admin:full"]'::jsonb THEN
            '["campaign:*", "core:*", "gamification:*", "gateway:*", "points:*", "products:*",
              "referrals:*", "rewards:*", "rfm:*", "roles:*", "users:*"]'::jsonb
        ELSE (
            SELECT coalesce(jsonb_agg(p ORDER BY p), '[]'::jsonb)
            FROM jsonb_array_elements_text(permissions) AS p
            WHERE p NOT IN ('admin:full', 'admin:*') AND p NOT LIKE 'auth:%'
        )
    END,
    updated_at = now()
WHERE permissions ?| ARRAY['admin:full', 'admin:*']
   OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(permissions) AS p WHERE p LIKE 'auth:%');

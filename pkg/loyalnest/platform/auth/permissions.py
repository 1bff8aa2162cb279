"""Which permissions a merchant may hold, and which are mesh-global.

A merchant-bound token (a shop owner's, a staff member's) acts inside one merchant, but some
permissions reach past it, whatever merchant the token names:

- `admin:full` passes every permission check (`Principal.has`), and `admin:*` every `admin:`
  one: a platform operator's, never a merchant's;
- the whole `auth:` domain: `auth:validate` reads any merchant, `auth:shop-token` hands out a
  shop's Shopify credentials (service tokens only), `auth:impersonate` acts as any merchant,
  `auth:admin` creates admin accounts, `auth:revoke` revokes by bare token id. They are
  platform admins' and services' (SERVICE_GRANTS), granted by Auth, never by a merchant's role.

Roles refuses them in a merchant's roles, and Auth never puts them in a staff token
(`merchant_holdable` also drops what the merchant's owner could not hold either).
"""

from __future__ import annotations

from collections.abc import Iterable

# The default of what the owner of an installed shop may do (Auth's
# LOYALNEST_AUTH_OWNER_PERMISSIONS) and of the default "Owner" role: every merchant-scoped
# domain, none of the global ones above.
# Sorted, as roles store permissions.
MERCHANT_OWNER_PERMISSIONS: tuple[str, ...] = (
    "campaign:*",
    "core:*",
    "event_tracking:*",
    "gamification:*",
    "gateway:*",
    "points:*",
    "products:*",
    "referrals:*",
    "rewards:*",
    "rfm:*",
    "roles:*",
    "users:*",
)

GLOBAL_DOMAINS = frozenset({"auth"})
GLOBAL_PERMISSIONS = frozenset({"admin:full", "admin:*"})


def is_mesh_global(permission: str) -> bool:
    """True for a permission that reaches past one merchant (see the module's docstring)."""
    domain = permission.split(":", 1)[0]
    return permission in GLOBAL_PERMISSIONS or domain in GLOBAL_DOMAINS


def covers(granted: str, permission: str) -> bool:
    """Whether holding `granted` passes a check of `permission` (`Principal.has` without
    admin:full, which no merchant holds)."""
    if granted == permission:
        return True
    domain, _, action = granted.partition(":")
    return action == "*" and permission.split(":", 1)[0] == domain


def merchant_holdable(permissions: Iterable[str], ceiling: Iterable[str]) -> list[str]:
    """`permissions` less the mesh-global ones and those `ceiling` (what the merchant's owner
    holds) does not cover: a staff member never gets more than the shop's owner."""
    limits = [p for p in ceiling if not is_mesh_global(p)]
    return sorted(
        {
            p
            for p in permissions
            if not is_mesh_global(p) and any(covers(limit, p) for limit in limits)
        }
    )

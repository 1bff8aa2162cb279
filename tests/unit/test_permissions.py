"""Which permissions a merchant may hold (loyalnest.platform.auth.permissions)."""

from __future__ import annotations

import pytest

from loyalnest.platform.auth.permissions import (
    MERCHANT_OWNER_PERMISSIONS,
    is_mesh_global,
    merchant_holdable,
)
from loyalnest.platform.auth.service_identity import SERVICE_GRANTS


@pytest.mark.parametrize(
    "permission",
    ["admin:full", "admin:*", "auth:*", "auth:validate", "auth:shop-token", "auth:revoke"],
)
def test_mesh_global(permission: str) -> None:
    assert is_mesh_global(permission)


@pytest.mark.parametrize("permission", ["admin:analytics", "points:*", "roles:write", "users:read"])
def test_merchant_scoped(permission: str) -> None:
    assert not is_mesh_global(permission)


def test_owner_permissions_are_merchant_scoped_and_sorted() -> None:
    assert not [p for p in MERCHANT_OWNER_PERMISSIONS if is_mesh_global(p)]
    assert list(MERCHANT_OWNER_PERMISSIONS) == sorted(MERCHANT_OWNER_PERMISSIONS)


def test_a_staff_token_never_holds_more_than_the_owner_nor_anything_global() -> None:
    role = ["admin:full", "auth:validate", "admin:analytics", "points:read", "roles:*", "x:y"]
    owner = ["points:*", "roles:*", "auth:*"]  # a misconfigured ceiling cannot leak auth:
    assert merchant_holdable(role, owner) == ["points:read", "roles:*"]
    assert merchant_holdable(["points:*"], ["points:read"]) == []


def test_shop_tokens_are_granted_to_the_services_that_call_shopify_only() -> None:
    # Points: reward discount codes; Core: Shopify Billing of paid plans; Campaign: campaigns'
    # discounts; Products: the catalogue sync; Referrals: the friends' discount codes.
    granted = [s for s, grant in SERVICE_GRANTS.items() if "auth:shop-token" in grant]
    assert sorted(granted) == ["campaign", "core", "points", "products", "referrals"]

"""Which merchant a call acts for: always the verified token's, never a request field."""

from __future__ import annotations

import uuid

from loyalnest.platform.auth.context import current_merchant_id

# The auth interceptor has verified the call's token by the time a handler asks.
merchant_id = current_merchant_id


# Fixed forever: changing it would give every shop a new merchant id.
_SHOP_NAMESPACE = uuid.UUID("4f1c2a8e-5b7d-4c3e-9a61-2d8f0b7e6c15")


def merchant_id_for_shop(shop_domain: str) -> str:
    """The merchant id of a Shopify shop: a name-based UUID of its permanent myshopify domain.

    Derived rather than assigned so that every component agrees on it without a lookup: the
    webhook ingress keys a delivery by its merchant before Auth's merchant.created may have
    been consumed, and a reinstall finds the merchant it had.
    """
    return str(uuid.uuid5(_SHOP_NAMESPACE, shop_domain.strip().lower()))

"""What Auth tells the mesh: merchant.created (a first install), merchant.uninstalled and
merchant.reinstalled, auth.revoked; and the consumer group its consumers (consumers.py) read
with."""

from __future__ import annotations

from datetime import datetime

from loyalnest.gen.events.v1 import auth_pb2 as auth_events
from loyalnest.platform.protos import epoch_timestamp, timestamp

# The consumer group of every Auth process: each event it consumes (consumers.py) is applied
# by one of them.
CONSUMER_GROUP = "loyalnest.auth"


def merchant_created(shop: str) -> auth_events.MerchantCreated:
    return auth_events.MerchantCreated(shop_domain=shop, plan="free")


def merchant_uninstalled(shop: str, at: datetime) -> auth_events.MerchantUninstalled:
    return auth_events.MerchantUninstalled(shop_domain=shop, uninstall_time=timestamp(at))


def merchant_reinstalled(shop: str) -> auth_events.MerchantReinstalled:
    return auth_events.MerchantReinstalled(shop_domain=shop)


def auth_revoked(
    *, token_id: str, user_id: str, expires_at: int, reason: str
) -> auth_events.AuthRevoked:
    return auth_events.AuthRevoked(
        token_id=token_id,
        user_id=user_id,
        expire_time=epoch_timestamp(expires_at),
        reason=reason,
    )

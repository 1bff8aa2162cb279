"""What Auth tells the mesh: merchant.created (a first install) and auth.revoked."""

from __future__ import annotations

from loyalnest.gen.events.v1 import auth_pb2 as auth_events
from loyalnest.platform.protos import epoch_timestamp

# The consumer group of every Auth process (it consumes nothing yet).
CONSUMER_GROUP = "loyalnest.auth"


def merchant_created(shop: str) -> auth_events.MerchantCreated:
    return auth_events.MerchantCreated(shop_domain=shop, plan="free")


def auth_revoked(
    *, token_id: str, user_id: str, expires_at: int, reason: str
) -> auth_events.AuthRevoked:
    return auth_events.AuthRevoked(
        token_id=token_id,
        user_id=user_id,
        expire_time=epoch_timestamp(expires_at),
        reason=reason,
    )

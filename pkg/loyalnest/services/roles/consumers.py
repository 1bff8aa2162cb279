"""The events Roles applies: merchant.created (the default roles)."""

from __future__ import annotations

from loyalnest.gen.events.v1 import auth_pb2
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.services.roles.store import RoleStore


def handlers(store: RoleStore) -> dict[str, Handler]:
    async def on_merchant_created(event: ConsumedEvent) -> bool:
        event.payload_as(auth_pb2.MerchantCreated)  # a mismatch is a poison message
        return await store.create_default_roles(event.merchant_id, event=event)

    return {"merchant.created": on_merchant_created}

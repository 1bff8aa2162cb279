"""The events Users applies: merchant.created (the owner's account), role.assigned."""

from __future__ import annotations

from loyalnest.gen.events.v1 import auth_pb2, roles_pb2
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.services.users.store.postgres import UserStore


def handlers(store: UserStore) -> dict[str, Handler]:
    async def on_merchant_created(event: ConsumedEvent) -> bool:
        event.payload_as(auth_pb2.MerchantCreated)  # a mismatch is a poison message
        # Every merchant starts with the account of whoever installed the app; its email and
        # role come later (the admin UI, RolesService.AssignRole).
        return await store.create_owner(event.merchant_id, event=event)

    async def on_role_assigned(event: ConsumedEvent) -> bool:
        assignment = event.payload_as(roles_pb2.RoleAssigned)
        return await store.apply_role_assignment(
            event.merchant_id,
            assignment.user_id,
            assignment.role_id,
            assigned_at=event.occurred_at,
            event=event,
        )

    return {"merchant.created": on_merchant_created, "role.assigned": on_role_assigned}

"""What Roles tells the mesh (role.updated, role.assigned) and the events it applies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loyalnest.gen.events.v1 import auth_pb2, roles_pb2
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.services.roles.domain import Assignment, Role

if TYPE_CHECKING:
    from loyalnest.services.roles.store import RoleStore

# The consumer group of every Roles process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.roles"


def role_updated(role: Role) -> roles_pb2.RoleUpdated:
    # Also sent for a new role: consumers that map roles to permissions (Auth) learn the
    # whole set from one event type and never need to call back.
    return roles_pb2.RoleUpdated(role_id=role.role_id, permissions=list(role.permissions))


def role_assigned(assignment: Assignment) -> roles_pb2.RoleAssigned:
    return roles_pb2.RoleAssigned(role_id=assignment.role_id, user_id=assignment.user_id)


def handlers(store: RoleStore) -> dict[str, Handler]:
    async def on_merchant_created(event: ConsumedEvent) -> bool:
        event.payload_as(auth_pb2.MerchantCreated)  # a mismatch is a poison message
        return await store.create_default_roles(event.merchant_id, event=event)

    return {"merchant.created": on_merchant_created}

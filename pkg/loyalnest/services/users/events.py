"""What Users tells the mesh (user.created / user.updated) and the events it applies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from google.protobuf import field_mask_pb2

from loyalnest.gen.events.v1 import auth_pb2, roles_pb2, users_pb2
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.services.users.domain import User, UserKind

if TYPE_CHECKING:
    from loyalnest.services.users.store import UserStore

# The consumer group of every Users process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.users"

_KINDS = {
    UserKind.CUSTOMER: users_pb2.USER_KIND_CUSTOMER,
    UserKind.STAFF: users_pb2.USER_KIND_STAFF,
}


def user_created(user: User) -> users_pb2.UserCreated:
    # No email: events fan out to every service and topic retention; PII stays here.
    return users_pb2.UserCreated(
        user_id=user.user_id, kind=_KINDS[user.kind], role_id=user.role_id or ""
    )


def user_updated(user: User, changed: Iterable[str]) -> users_pb2.UserUpdated:
    return users_pb2.UserUpdated(
        user_id=user.user_id,
        update_mask=field_mask_pb2.FieldMask(paths=sorted(changed)),
        role_id=user.role_id or "",
    )


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

"""What Users tells the mesh: user.created and user.updated (never an email)."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import field_mask_pb2

from loyalnest.gen.events.v1 import users_pb2
from loyalnest.services.users.domain import User, UserKind

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

"""Users' API messages (loyalnest.users.v1) <-> domain values."""

from __future__ import annotations

from loyalnest.gen.users.v1 import users_pb2
from loyalnest.platform.protos import timestamp
from loyalnest.services.users.domain import CustomerBirthday, User, UserKind

KINDS = {
    UserKind.CUSTOMER: users_pb2.USER_KIND_CUSTOMER,
    UserKind.STAFF: users_pb2.USER_KIND_STAFF,
}
KINDS_FROM_PROTO = {value: kind for kind, value in KINDS.items()}
KIND_RULE = "must be USER_KIND_CUSTOMER or USER_KIND_STAFF"


def user_proto(user: User) -> users_pb2.User:
    return users_pb2.User(
        user_id=user.user_id,
        email=user.email or "",
        kind=KINDS[user.kind],
        role_id=user.role_id or "",
        create_time=timestamp(user.created_at),
        update_time=timestamp(user.updated_at),
    )


def birthday_proto(found: CustomerBirthday) -> users_pb2.CustomerBirthday:
    birthday = found.birthday
    return users_pb2.CustomerBirthday(
        customer_id=found.customer_id,
        birthday=users_pb2.Birthday(
            month=birthday.month, day=birthday.day, year=birthday.year or 0
        ),
        consent_time=timestamp(found.consent_at),
    )

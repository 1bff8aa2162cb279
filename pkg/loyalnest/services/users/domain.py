"""Users: what an account is, independent of gRPC and PostgreSQL."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime

from loyalnest.platform.errors import AlreadyExists, NotFound

# Fixed forever: ids derived from it (the owner account) must not change between releases.
_OWNER_NAMESPACE = uuid.UUID("6f1c2f53-2b0c-4a53-9f55-5c3d8e3b7a10")


class UserKind(enum.StrEnum):
    CUSTOMER = "customer"
    STAFF = "staff"


@dataclass(frozen=True)
class User:
    user_id: str
    merchant_id: str
    seq: int
    kind: UserKind
    # Plaintext, only in memory: the store encrypts and decrypts at its boundary.
    email: str | None
    role_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class UserChanges:
    """The fields of an update, each None when not to be changed."""

    kind: UserKind | None = None
    # "" removes the email.
    email: str | None = None

    @property
    def empty(self) -> bool:
        return self.kind is None and self.email is None


class UserNotFound(NotFound):
    def __init__(self, user_id: str) -> None:
        super().__init__("user", user_id)


class EmailTaken(AlreadyExists):
    def __init__(self) -> None:
        # The email itself stays out of the message: errors end up in logs.
        super().__init__("the merchant already has a user with this email")


def owner_user_id(merchant_id: str) -> str:
    """The id of the account created for a merchant's owner at install (merchant.created).

    Derived, not random, so a replay of the event long after its processed-events record
    was purged still finds the same account instead of creating a second one.
    """
    return str(uuid.uuid5(_OWNER_NAMESPACE, f"owner/{merchant_id}"))

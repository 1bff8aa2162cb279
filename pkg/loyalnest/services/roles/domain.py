"""Roles: named permission sets, and which role each user has."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from loyalnest.platform.auth.permissions import MERCHANT_OWNER_PERMISSIONS, is_mesh_global
from loyalnest.platform.errors import AlreadyExists, NotFound

# "<domain>:<action>", lower case, as the auth interceptor matches them
# (loyalnest.platform.auth.tokens.Principal.has): "points:read", "admin:analytics", "users:*".
PERMISSION_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}:(\*|[a-z][a-z0-9_]{0,31})$")
MAX_PERMISSIONS = 100
MAX_NAME_LENGTH = 64
# Fixed forever: ids derived from it (default roles) must not change between releases.
_DEFAULT_ROLE_NAMESPACE = uuid.UUID("0b7f3c1e-5a7d-4f35-8f0e-2d9c6a4b1e27")
# Every merchant starts with these (merchant.created); they are ordinary roles afterwards.
# Merchant-scoped only: "Owner" is what the shop's owner holds, not admin:full (mesh-global).
DEFAULT_ROLES: dict[str, tuple[str, ...]] = {
    "Owner": MERCHANT_OWNER_PERMISSIONS,
    "Staff": ("points:read", "points:write", "users:read"),
}
# Printable, no leading/trailing space: names are shown in pickers and audit logs.
NAME_RE = re.compile(r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$")


@dataclass(frozen=True)
class Role:
    role_id: str
    merchant_id: str
    seq: int
    name: str
    description: str
    permissions: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RoleChanges:
    """The fields of an update, each None when not to be changed."""

    name: str | None = None
    description: str | None = None
    permissions: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Assignment:
    user_id: str
    role_id: str
    assigned_at: datetime


class RoleNotFound(NotFound):
    def __init__(self, role_id: str) -> None:
        super().__init__("role", role_id)


class AssignmentNotFound(NotFound):
    def __init__(self, user_id: str) -> None:
        super().__init__("role assignment of user", user_id)


class RoleNameTaken(AlreadyExists):
    def __init__(self, name: str) -> None:
        super().__init__(f"the merchant already has a role named {name!r}")


def normalize_permissions(permissions: Iterable[str]) -> tuple[str, ...]:
    """Sorted and without duplicates: two equal sets compare equal, in events too."""
    return tuple(sorted({p.strip() for p in permissions}))


def invalid_permissions(permissions: tuple[str, ...]) -> list[str]:
    return [p for p in permissions if not PERMISSION_RE.match(p)]


def global_permissions(permissions: tuple[str, ...]) -> list[str]:
    """Those that reach past one merchant (admin:full, admin:*, auth:...): a merchant's role
    never carries them (loyalnest.platform.auth.permissions)."""
    return [p for p in permissions if is_mesh_global(p)]


def default_role_id(merchant_id: str, name: str) -> str:
    """Derived, not random: a replay of merchant.created finds the roles it made before."""
    return str(uuid.uuid5(_DEFAULT_ROLE_NAMESPACE, f"{merchant_id}/{name}"))

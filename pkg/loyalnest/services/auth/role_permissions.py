"""A staff member's permissions come from their role in RolesService.

Staff sign in through a session the shop owner (or staff allowed to manage roles) opens for
them (`IssueStaffSession`). Their tokens carry exactly the permissions of the role Roles
assigns them (`GetUserRole`), less what a merchant may not hold
(`loyalnest.platform.auth.permissions.merchant_holdable`, capped by the owner's permissions).
Auth asks Roles when the session opens and at every refresh, so a refresh always carries
the role as it is now; `consumers.py` revokes a session's live access tokens as soon as the
user's role or the role's permissions change.

Auth asks with its own service token (`service:auth`, `roles:read`, bound to the merchant),
never with the caller's (`on_own_behalf`): at a refresh there is no caller, and when an owner
opens a staff session the answer must not depend on what the owner's token may read. Auth
signs that token itself (it holds the signing keys), instead of asking itself over gRPC:
`SelfIssuedServiceTokens` is the `ServiceTokens` source it passes to `CALLS.connect`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from loyalnest.gen.roles.v1 import roles_pb2, roles_pb2_grpc
from loyalnest.platform.auth.context import on_own_behalf
from loyalnest.platform.auth.permissions import merchant_holdable
from loyalnest.platform.auth.service_identity import (
    SERVICE_GRANTS,
    SERVICE_TOKEN_TTL_SECONDS,
    token_audiences,
)
from loyalnest.platform.auth.tokens import SERVICE, SERVICE_SUBJECT_PREFIX
from loyalnest.platform.errors import NotFound, Unavailable
from loyalnest.platform.observability import get_logger
from loyalnest.services.auth.keys import SigningKeys

log = get_logger(__name__)

# Reuse a self-signed token until this much of its life is left.
_REFRESH_BEFORE_SECONDS = 60
_AUTH_SERVICE = "auth"


@dataclass(frozen=True)
class StaffGrant:
    role_id: str
    # What a token for this staff member carries: the role's, merchant-holdable only.
    permissions: tuple[str, ...]
    # The role's own list, for the log when something was left out.
    role_permissions: tuple[str, ...]


class NoRole(NotFound):
    def __init__(self, user_id: str) -> None:
        super().__init__("role assignment of user", user_id)


class SelfIssuedServiceTokens:
    """Auth's own service tokens (`service:auth`, its SERVICE_GRANTS), per merchant, signed
    locally and reused until a minute before they expire. A `ServiceTokens` source
    (loyalnest.platform.client) for Auth's outgoing calls."""

    def __init__(self, keys: SigningKeys, *, audience: str) -> None:
        self._keys = keys
        self._permissions = sorted(SERVICE_GRANTS[_AUTH_SERVICE])
        self._audiences = token_audiences(audience, self._permissions)
        self._cache: dict[str | None, tuple[str, float]] = {}

    async def token(self, merchant_id: str | None = None) -> str:
        cached = self._cache.get(merchant_id)
        now = time.time()
        if cached is not None and cached[1] - _REFRESH_BEFORE_SECONDS > now:
            return cached[0]
        token = self._keys.current().issuer.mint(
            subject=SERVICE_SUBJECT_PREFIX + _AUTH_SERVICE,
            merchant_id=merchant_id,
            permissions=self._permissions,
            ttl_seconds=SERVICE_TOKEN_TTL_SECONDS,
            token_type=SERVICE,
            audience=self._audiences,
        )
        self._cache[merchant_id] = (token, now + SERVICE_TOKEN_TTL_SECONDS)
        return token

    async def close(self) -> None:
        self._cache.clear()


class RolePermissions:
    def __init__(self, roles: roles_pb2_grpc.RolesServiceStub, *, ceiling: Sequence[str]) -> None:
        # On a channel whose service tokens are Auth's own (SelfIssuedServiceTokens).
        self._roles = roles
        self._ceiling = tuple(ceiling)

    async def of(self, merchant_id: str, user_id: str) -> StaffGrant:
        """The staff member's grant now. NoRole when Roles assigns them none."""
        try:
            with on_own_behalf(merchant_id):
                response = await self._roles.GetUserRole(
                    roles_pb2.GetUserRoleRequest(user_id=user_id)
                )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise NoRole(user_id) from error
            log.warning(
                "roles could not tell a staff member's role",
                merchant_id=merchant_id,
                code=error.code().name,
                details=error.details(),
            )
            raise Unavailable("RolesService did not answer; try again") from error
        role = response.role
        permissions = tuple(merchant_holdable(role.permissions, self._ceiling))
        if len(permissions) != len(role.permissions):
            log.info(
                "role permissions a merchant cannot hold left out of a staff token",
                merchant_id=merchant_id,
                role_id=role.role_id,
                left_out=sorted(set(role.permissions) - set(permissions)),
            )
        return StaffGrant(role.role_id, permissions, tuple(role.permissions))

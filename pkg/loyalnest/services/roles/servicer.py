"""gRPC surface of the Roles service: validation and tenancy; mapping is in wire.py."""

from __future__ import annotations

from collections.abc import Sequence

from loyalnest.gen.roles.v1 import roles_pb2, roles_pb2_grpc
from loyalnest.platform import pagination, tenancy
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.validation import Validator
from loyalnest.services.roles.domain import (
    MAX_NAME_LENGTH,
    MAX_PERMISSIONS,
    NAME_RE,
    RoleChanges,
    invalid_permissions,
    normalize_permissions,
)
from loyalnest.services.roles.store import RoleStore
from loyalnest.services.roles.wire import assignment_proto, role_proto

UPDATABLE_FIELDS = frozenset({"name", "description", "permissions"})


def _check_name(v: Validator, field: str, name: str) -> None:
    if v.check(bool(name.strip()), field, "is required"):
        v.check(
            len(name) <= MAX_NAME_LENGTH and bool(NAME_RE.match(name)),
            field,
            f"must be at most {MAX_NAME_LENGTH} printable characters,"
            " without leading or trailing spaces",
        )


def _check_permissions(v: Validator, field: str, permissions: Sequence[str]) -> None:
    if not v.check(bool(permissions), field, "must grant at least one permission"):
        return
    v.check(len(permissions) <= MAX_PERMISSIONS, field, f"at most {MAX_PERMISSIONS} permissions")
    bad = invalid_permissions(tuple(permissions))
    v.check(
        not bad,
        field,
        f"{', '.join(map(repr, bad[:5]))} not of the form '<domain>:<action>'"
        " (lower case letters, digits, _; action may be *), e.g. 'points:read'",
    )


class RolesServicer(roles_pb2_grpc.RolesServiceServicer):
    def __init__(self, store: RoleStore) -> None:
        self._store = store

    async def CreateRole(
        self, request: roles_pb2.CreateRoleRequest, context: Context
    ) -> roles_pb2.CreateRoleResponse:
        merchant_id = tenancy.merchant_id()
        role = request.role
        permissions = normalize_permissions(role.permissions)
        with Validator() as v:
            if v.check(request.HasField("role"), "role", "is required"):
                _check_name(v, "role.name", role.name)
                v.text("role.description", role.description)
                _check_permissions(v, "role.permissions", permissions)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        created = await self._store.create(
            merchant_id,
            name=role.name,
            description=role.description.strip(),
            permissions=permissions,
            key=IdempotencyKey.of("CreateRole", request),
        )
        return roles_pb2.CreateRoleResponse(role=role_proto(created))

    async def UpdateRole(
        self, request: roles_pb2.UpdateRoleRequest, context: Context
    ) -> roles_pb2.UpdateRoleResponse:
        merchant_id = tenancy.merchant_id()
        role = request.role
        paths = set(request.update_mask.paths)
        permissions = normalize_permissions(role.permissions)
        with Validator() as v:
            if v.check(request.HasField("role"), "role", "is required"):
                v.uuid("role.role_id", role.role_id)
            v.update_mask("update_mask", paths, UPDATABLE_FIELDS)
            if "name" in paths:
                _check_name(v, "role.name", role.name)
            if "description" in paths:
                v.text("role.description", role.description)
            if "permissions" in paths:
                _check_permissions(v, "role.permissions", permissions)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        changes = RoleChanges(
            name=role.name if "name" in paths else None,
            description=role.description.strip() if "description" in paths else None,
            permissions=permissions if "permissions" in paths else None,
        )
        updated = await self._store.update(
            merchant_id,
            role.role_id,
            changes,
            key=IdempotencyKey.of("UpdateRole", request),
        )
        return roles_pb2.UpdateRoleResponse(role=role_proto(updated))

    async def GetRole(
        self, request: roles_pb2.GetRoleRequest, context: Context
    ) -> roles_pb2.GetRoleResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.uuid("role_id", request.role_id)
        return roles_pb2.GetRoleResponse(
            role=role_proto(await self._store.get(merchant_id, request.role_id))
        )

    async def ListRoles(
        self, request: roles_pb2.ListRolesRequest, context: Context
    ) -> roles_pb2.ListRolesResponse:
        merchant_id = tenancy.merchant_id()
        page, token = await pagination.keyset_page(
            page_size_requested=request.page_size,
            page_token=request.page_token,
            scope=f"roles/{merchant_id}",
            fetch=lambda limit, after: self._store.list(merchant_id, limit=limit, after_seq=after),
            position=lambda role: role.seq,
        )
        return roles_pb2.ListRolesResponse(
            roles=[role_proto(r) for r in page], next_page_token=token
        )

    async def AssignRole(
        self, request: roles_pb2.AssignRoleRequest, context: Context
    ) -> roles_pb2.AssignRoleResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.uuid("user_id", request.user_id)
            v.uuid("role_id", request.role_id)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        assignment = await self._store.assign(
            merchant_id,
            request.user_id,
            request.role_id,
            key=IdempotencyKey.of("AssignRole", request),
        )
        return roles_pb2.AssignRoleResponse(assignment=assignment_proto(assignment))

    async def GetUserRole(
        self, request: roles_pb2.GetUserRoleRequest, context: Context
    ) -> roles_pb2.GetUserRoleResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.uuid("user_id", request.user_id)
        assignment, role = await self._store.user_role(merchant_id, request.user_id)
        return roles_pb2.GetUserRoleResponse(
            assignment=assignment_proto(assignment), role=role_proto(role)
        )

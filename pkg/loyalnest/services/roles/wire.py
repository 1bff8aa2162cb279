"""Roles' API messages (loyalnest.roles.v1) <-> domain values."""

from __future__ import annotations

from loyalnest.gen.roles.v1 import roles_pb2
from loyalnest.platform.protos import timestamp
from loyalnest.services.roles.domain import Assignment, Role


def role_proto(role: Role) -> roles_pb2.Role:
    return roles_pb2.Role(
        role_id=role.role_id,
        name=role.name,
        description=role.description,
        permissions=list(role.permissions),
        create_time=timestamp(role.created_at),
        update_time=timestamp(role.updated_at),
    )


def assignment_proto(assignment: Assignment) -> roles_pb2.RoleAssignment:
    return roles_pb2.RoleAssignment(
        user_id=assignment.user_id,
        role_id=assignment.role_id,
        assign_time=timestamp(assignment.assigned_at),
    )

"""What Roles tells the mesh: role.updated (permission sets) and role.assigned."""

from __future__ import annotations

from loyalnest.gen.events.v1 import roles_pb2
from loyalnest.services.roles.domain import Assignment, Role

# The consumer group of every Roles process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.roles"


def role_updated(role: Role) -> roles_pb2.RoleUpdated:
    # Also sent for a new role: consumers that map roles to permissions (Auth) learn the
    # whole set from one event type and never need to call back.
    return roles_pb2.RoleUpdated(role_id=role.role_id, permissions=list(role.permissions))


def role_assigned(assignment: Assignment) -> roles_pb2.RoleAssigned:
    return roles_pb2.RoleAssigned(role_id=assignment.role_id, user_id=assignment.user_id)

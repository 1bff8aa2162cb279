"""`IssueStaffSession`: how a merchant's staff member signs in to LoyalNest.

A staff member is a Users user (kind STAFF) of the merchant with a role in RolesService. The
shop owner (or staff allowed to manage roles: `roles:write`) opens a session for them, e.g.
from the admin app's staff page; the tokens go to the staff member's own browser (an
invitation link, or the owner's device handed over). The session's tokens carry the role's
permissions (role_permissions.py), and the caller must hold each of them: opening a session
never hands out more than the caller could do itself.

Chosen over Shopify's per-user (online) OAuth tokens because it needs nothing from Shopify a
staff member may not have (a Shopify staff account with app access); mapping Shopify's
`associated_user` onto a Users user is the natural next way in, reusing the same session kind.
"""

from __future__ import annotations

from loyalnest.gen.auth.v1 import auth_pb2
from loyalnest.platform.auth.context import current_merchant_id, current_principal
from loyalnest.platform.errors import FailedPrecondition, NotFound, PermissionDenied
from loyalnest.platform.observability import get_logger
from loyalnest.platform.validation import Validator, is_uuid
from loyalnest.services.auth.role_permissions import RolePermissions
from loyalnest.services.auth.sessions import IssuedSession, SessionTokens
from loyalnest.services.auth.store import AuthStore

log = get_logger(__name__)


class StaffSessions:
    def __init__(
        self,
        store: AuthStore,
        sessions: SessionTokens,
        roles: RolePermissions,
        *,
        max_age_seconds: int,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._roles = roles
        self._max_age = max_age_seconds

    async def issue(
        self, request: auth_pb2.IssueStaffSessionRequest
    ) -> tuple[IssuedSession, str, tuple[str, ...]]:
        caller = current_principal()
        merchant_id = current_merchant_id()  # the caller's merchant, never a request field
        with Validator() as v:
            v.uuid("user_id", request.user_id)
        if not is_uuid(merchant_id):  # merchants are UUIDs: no such merchant
            raise NotFound("merchant", merchant_id)
        merchant = await self._store.get_merchant(merchant_id)
        if merchant.status != "active":
            raise FailedPrecondition(
                "the merchant uninstalled the app",
                violation_type="MERCHANT_INACTIVE",
                subject=f"merchants/{merchant_id}",
            )
        grant = await self._roles.of(merchant_id, request.user_id)
        beyond = sorted(p for p in grant.permissions if not caller.has(p))
        if beyond:
            raise PermissionDenied(
                f"the staff member's role grants what the caller lacks: {beyond}"
            )
        async with self._store.pool.connection() as conn, conn.transaction():
            issued = await self._sessions.open(
                conn,
                kind="staff",
                subject=request.user_id,
                merchant_id=merchant_id,
                permissions=grant.permissions,
                max_age_seconds=self._max_age,
                role_id=grant.role_id,
            )
        log.info(
            "staff session opened",
            merchant_id=merchant_id,
            user_id=request.user_id,
            role_id=grant.role_id,
            by=caller.subject,
            session_id=issued.session_id,
        )
        return issued, grant.role_id, grant.permissions

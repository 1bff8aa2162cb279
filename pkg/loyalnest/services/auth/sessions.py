"""Sessions: an access token plus a family of single-use, rotating refresh tokens.

Refreshing spends the presented refresh token and issues the next one. A spent token that
comes back means two parties hold the family (a stolen token, or a replayed request): the
whole session is revoked, including the newest refresh token and the access tokens still
alive (their jtis go to the revocation list), and both parties must sign in again.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
from psycopg import AsyncConnection

from loyalnest.platform.auth.revocation import RevocationList
from loyalnest.platform.auth.tokens import ACCESS
from loyalnest.platform.errors import FailedPrecondition, Unauthenticated
from loyalnest.platform.observability import get_logger
from loyalnest.platform.postgres import Database
from loyalnest.services.auth.credentials import new_opaque_token, token_hash
from loyalnest.services.auth.keys import SigningKeys
from loyalnest.services.auth.role_permissions import NoRole, StaffGrant

log = get_logger(__name__)

# merchant: a shop owner (Shopify OAuth); admin: password + TOTP; staff: a merchant's Users
# user whose permissions come from their role (role_permissions.py), read at every refresh.
SessionKind = Literal["merchant", "admin", "staff"]
# (merchant_id, user_id) -> the staff member's grant now.
StaffGrants = Callable[[str, str], Awaitable[StaffGrant]]


@dataclass(frozen=True)
class Minted:
    token: str
    token_id: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class IssuedSession:
    session_id: str
    access: Minted
    refresh_token: str
    refresh_expires_at: datetime


@dataclass(frozen=True)
class _Family:
    session_id: str
    subject: str
    merchant_id: str | None
    permissions: Sequence[str]
    expires_at: datetime


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


class SessionTokens:
    def __init__(
        self,
        database: Database,
        keys: SigningKeys,
        revocations: RevocationList | None,
        *,
        access_ttl_seconds: int,
        refresh_ttl_seconds: int,
    ) -> None:
        self._pool = database.pool
        self._keys = keys
        self._revocations = revocations
        self._access_ttl = access_ttl_seconds
        self._refresh_ttl = timedelta(seconds=refresh_ttl_seconds)

    def mint_access(
        self,
        *,
        subject: str,
        merchant_id: str | None,
        permissions: Iterable[str],
        ttl_seconds: int | None = None,
        token_type: str = ACCESS,
        extra: dict[str, Any] | None = None,
    ) -> Minted:
        token = self._keys.current().issuer.mint(
            subject=subject,
            merchant_id=merchant_id,
            permissions=permissions,
            ttl_seconds=ttl_seconds or self._access_ttl,
            token_type=token_type,
            extra={"user_id": subject, **(extra or {})},
        )
        # Our own token, just signed: reading its claims back needs no verification.
        claims = jwt.decode(token, options={"verify_signature": False})
        return Minted(
            token,
            str(claims["jti"]),
            datetime.fromtimestamp(claims["iat"], UTC),
            datetime.fromtimestamp(claims["exp"], UTC),
        )

    def _mint_for(self, family: _Family) -> Minted:
        return self.mint_access(
            subject=family.subject,
            merchant_id=family.merchant_id,
            permissions=family.permissions,
            extra={"sid": family.session_id},
        )

    async def _add_refresh_token(
        self, conn: AsyncConnection, family: _Family, access: Minted
    ) -> tuple[str, datetime]:
        refresh = new_opaque_token()
        expires_at = min(datetime.now(UTC) + self._refresh_ttl, family.expires_at)
        await conn.execute(
            "INSERT INTO refresh_tokens"
            " (token_hash, session_id, expires_at, access_jti, access_expires_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (
                token_hash(refresh),
                family.session_id,
                expires_at,
                access.token_id,
                access.expires_at,
            ),
        )
        return refresh, expires_at

    async def open(
        self,
        conn: AsyncConnection,
        *,
        kind: SessionKind,
        subject: str,
        merchant_id: str | None,
        permissions: Sequence[str],
        max_age_seconds: int,
        role_id: str | None = None,
    ) -> IssuedSession:
        """A new session inside the caller's transaction (commits with the sign-in)."""
        family = _Family(
            str(uuid.uuid4()),
            subject,
            merchant_id,
            sorted(set(permissions)),
            datetime.now(UTC) + timedelta(seconds=max_age_seconds),
        )
        await conn.execute(
            "INSERT INTO sessions"
            " (session_id, kind, subject, merchant_id, permissions, expires_at, role_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                family.session_id,
                kind,
                subject,
                merchant_id,
                family.permissions,
                family.expires_at,
                role_id,
            ),
        )
        access = self._mint_for(family)
        refresh, refresh_expires_at = await self._add_refresh_token(conn, family, access)
        return IssuedSession(family.session_id, access, refresh, refresh_expires_at)

    async def refresh(
        self, refresh_token: str, *, staff_grants: StaffGrants | None = None
    ) -> IssuedSession:
        """The next token pair of the session. A staff session's permissions are read again
        (`staff_grants`, a call to Roles) while the session row is locked: a role change
        being applied (`revoke_staff_access`, same lock) either waits for this refresh and
        then revokes the access token issued here, or went first and is what Roles answers."""
        # A session ended here (and why, for the client), once the transaction committed.
        ended: tuple[str, str] | None = None
        async with self._pool.connection() as conn, conn.transaction():
            # Locking the session serialises concurrent refreshes of one family.
            cursor = await conn.execute(
                "SELECT s.session_id::text, s.subject, s.merchant_id::text, s.permissions,"
                " s.expires_at, s.revoked_at, r.expires_at, r.rotated_at, s.kind"
                " FROM refresh_tokens r JOIN sessions s USING (session_id)"
                " WHERE r.token_hash = %s FOR UPDATE OF s, r",
                (token_hash(refresh_token),),
            )
            row = await cursor.fetchone()
            if row is None:
                raise Unauthenticated("unknown refresh token")
            session_id, subject, merchant_id, permissions, session_end, revoked_at = row[:6]
            token_expires_at, rotated_at, kind = row[6:]
            now = datetime.now(UTC)
            if revoked_at is not None:
                raise Unauthenticated("the session was revoked; sign in again")
            if rotated_at is not None:
                await self._revoke_family(conn, session_id, "refresh token reused")
                log.warning("refresh token reused; session revoked", session_id=session_id)
                ended = (session_id, "refresh token already used; the session has been revoked")
            elif token_expires_at <= now or session_end <= now:
                raise Unauthenticated("the refresh token expired; sign in again")
            elif not await self._account_valid(conn, kind, subject, merchant_id):
                # The merchant uninstalled or the admin is gone since the sign-in: the
                # session ends (every token of it), whatever ended it elsewhere or not.
                await self._revoke_family(conn, session_id, "account no longer valid")
                log.warning("refresh of an ended account; session revoked", session_id=session_id)
                ended = (session_id, "the account is no longer active; sign in again")
            else:
                await conn.execute(
                    "UPDATE refresh_tokens SET rotated_at = now() WHERE token_hash = %s",
                    (token_hash(refresh_token),),
                )
                if kind == "staff":
                    permissions = await self._staff_permissions(
                        conn, session_id, merchant_id, subject, staff_grants
                    )
                family = _Family(session_id, subject, merchant_id, permissions, session_end)
                access = self._mint_for(family)
                refresh, refresh_expires_at = await self._add_refresh_token(conn, family, access)
                return IssuedSession(session_id, access, refresh, refresh_expires_at)
        # Committed: the family stays revoked although this call fails.
        assert ended is not None  # every other path returned or raised inside
        await self._revoke_access_tokens(ended[0])
        raise Unauthenticated(ended[1])

    @staticmethod
    async def _account_valid(
        conn: AsyncConnection, kind: str, subject: str, merchant_id: str | None
    ) -> bool:
        """Whoever the session is for may still sign in: its merchant (owner, staff, a
        merchant's admin) is installed, and an admin still exists with MFA."""
        if merchant_id is not None:
            cursor = await conn.execute(
                "SELECT 1 FROM merchants WHERE merchant_id = %s AND status = 'active'",
                (merchant_id,),
            )
            if await cursor.fetchone() is None:
                return False
        if kind == "admin":
            cursor = await conn.execute(
                "SELECT 1 FROM admin_users WHERE user_id::text = %s AND mfa_enabled_at IS NOT NULL",
                (subject,),
            )
            if await cursor.fetchone() is None:
                return False
        return True

    async def _staff_permissions(
        self,
        conn: AsyncConnection,
        session_id: str,
        merchant_id: str,
        user_id: str,
        staff_grants: StaffGrants | None,
    ) -> list[str]:
        """The staff member's permissions now, recorded on the session with their role."""
        if staff_grants is None:
            raise FailedPrecondition(
                "staff sessions need RolesService", violation_type="CONFIGURATION", subject="roles"
            )
        try:
            grant = await staff_grants(merchant_id, user_id)
        except NoRole as exc:
            # Rolled back with the rest: the refresh token stays unspent.
            raise Unauthenticated("the staff member no longer has a role; sign in again") from exc
        permissions = sorted(set(grant.permissions))
        await conn.execute(
            "UPDATE sessions SET permissions = %s, role_id = %s WHERE session_id = %s",
            (permissions, grant.role_id, session_id),
        )
        return permissions

    async def revoke_staff_access(
        self,
        conn: AsyncConnection,
        merchant_id: str,
        *,
        user_id: str | None = None,
        role_id: str | None = None,
    ) -> int:
        """Revokes the live access tokens of the merchant's open staff sessions of `user_id`
        (their role was changed) or of `role_id` (its permissions were), inside the caller's
        transaction. The sessions stay open: their next refresh reads the role again. Returns
        how many access tokens were revoked."""
        cursor = await conn.execute(
            "SELECT session_id FROM sessions"
            " WHERE kind = 'staff' AND merchant_id = %s AND revoked_at IS NULL"
            " AND expires_at > now() AND (subject = %s OR role_id = %s)"
            " ORDER BY session_id FOR UPDATE",
            (merchant_id, user_id, role_id),
        )
        session_ids = [row[0] for row in await cursor.fetchall()]
        if not session_ids:
            return 0
        cursor = await conn.execute(
            "SELECT access_jti, access_expires_at FROM refresh_tokens"
            " WHERE session_id = ANY(%s) AND access_expires_at > now()",
            (session_ids,),
        )
        live = await cursor.fetchall()
        if self._revocations is None:
            log.warning(
                "no revocation list (LOYALNEST_REDIS_URL): staff tokens keep their old "
                "permissions until they expire",
                merchant_id=merchant_id,
                sessions=len(session_ids),
            )
            return 0
        for jti, expires_at in live:
            await self._revocations.revoke(jti, _epoch(expires_at))
        return len(live)

    async def revoke_merchant_sessions(
        self, conn: AsyncConnection, merchant_id: str, reason: str
    ) -> int:
        """Ends every open session of the merchant (owner and staff; admins of the merchant
        too) inside the caller's transaction, live access tokens included."""
        cursor = await conn.execute(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = %s"
            " WHERE merchant_id = %s AND revoked_at IS NULL AND expires_at > now()"
            " RETURNING session_id",
            (reason, merchant_id),
        )
        session_ids = [row[0] for row in await cursor.fetchall()]
        if session_ids and self._revocations is not None:
            cursor = await conn.execute(
                "SELECT access_jti, access_expires_at FROM refresh_tokens"
                " WHERE session_id = ANY(%s) AND access_expires_at > now()",
                (session_ids,),
            )
            for jti, expires_at in await cursor.fetchall():
                await self._revocations.revoke(jti, _epoch(expires_at))
        return len(session_ids)

    async def _revoke_family(self, conn: AsyncConnection, session_id: str, reason: str) -> bool:
        cursor = await conn.execute(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = %s"
            " WHERE session_id = %s AND revoked_at IS NULL RETURNING 1",
            (reason, session_id),
        )
        return await cursor.fetchone() is not None

    async def _revoke_access_tokens(self, session_id: str | None) -> None:
        """Puts the family's access tokens that have not expired yet on the revocation list."""
        if session_id is None:
            return
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT access_jti, access_expires_at FROM refresh_tokens"
                " WHERE session_id = %s AND access_expires_at > now()",
                (session_id,),
            )
            live = await cursor.fetchall()
        if self._revocations is None:
            if live:
                log.warning(
                    "no revocation list (LOYALNEST_REDIS_URL): the session's access tokens "
                    "stay valid until they expire",
                    session_id=session_id,
                )
            return
        for jti, expires_at in live:
            await self._revocations.revoke(jti, _epoch(expires_at))

    async def revoke(self, session_id: str, reason: str) -> bool:
        """Ends a session: no refresh any more, live access tokens revoked."""
        async with self._pool.connection() as conn, conn.transaction():
            revoked = await self._revoke_family(conn, session_id, reason)
        await self._revoke_access_tokens(session_id)
        return revoked

    async def is_active(self, session_id: str) -> bool:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT 1 FROM sessions"
                " WHERE session_id = %s AND revoked_at IS NULL AND expires_at > now()",
                (session_id,),
            )
            return await cursor.fetchone() is not None

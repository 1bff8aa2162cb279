"""The Auth service's tables (auth_0001_init.sql): merchants, OAuth states, admin users and
impersonation sessions. Secrets are encrypted here and nowhere else; changes of merchants and
impersonation sessions are audited by the platform's trigger (loyalnest.platform.audit)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from loyalnest.platform import audit
from loyalnest.platform.crypto import BlindIndex, FieldCipher
from loyalnest.platform.errors import NotFound
from loyalnest.platform.events import outbox
from loyalnest.platform.postgres import Database
from loyalnest.platform.tenancy import merchant_id_for_shop
from loyalnest.services.auth import events
from loyalnest.services.auth.credentials import token_hash
from loyalnest.services.auth.domain import (
    LOCKOUT,
    MAX_FAILED_ATTEMPTS,
    AdminUserRecord,
    ImpersonationRecord,
    MerchantRecord,
    ShopTokenRecord,
    normalise_email,
)
from loyalnest.services.auth.shopify import ShopifyTokens

_MERCHANT_COLUMNS = "merchant_id::text, shop_domain, status, scopes, created_at"
_IMPERSONATION_COLUMNS = (
    "session_id::text, admin_id::text, merchant_id::text, reason, token_id,"
    " created_at, expires_at, ended_at"
)


def _access_token_context(merchant_id: str) -> str:
    return f"auth.merchants.access_token:{merchant_id}"


def _refresh_token_context(merchant_id: str) -> str:
    return f"auth.merchants.refresh_token:{merchant_id}"


def _email_context(user_id: str) -> str:
    return f"auth.admin_users.email:{user_id}"


def _totp_context(user_id: str) -> str:
    return f"auth.admin_users.totp_secret:{user_id}"


EMAIL_INDEX_CONTEXT = "auth.admin_users.email"


class AuthStore:
    def __init__(self, database: Database, cipher: FieldCipher, email_index: BlindIndex) -> None:
        self.pool = database.pool
        self._cipher = cipher
        self._email_index = email_index

    # ---- OAuth states -------------------------------------------------------------------

    async def save_state(self, state: str, shop: str, expires_at: datetime) -> None:
        async with self.pool.connection() as conn:
            # Expired states are dropped as new ones arrive; the table stays small.
            await conn.execute(
                "DELETE FROM oauth_states WHERE expires_at < now() - interval '1 hour'"
            )
            await conn.execute(
                "INSERT INTO oauth_states (state_hash, shop_domain, expires_at)"
                " VALUES (%s, %s, %s)",
                (token_hash(state), shop, expires_at),
            )

    async def consume_state(self, state: str, shop: str) -> bool:
        """True once for a state issued for `shop` that has not expired: the row goes."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM oauth_states WHERE state_hash = %s RETURNING shop_domain, expires_at",
                (token_hash(state),),
            )
            row = await cursor.fetchone()
        return row is not None and row[0] == shop and row[1] > datetime.now(UTC)

    # ---- merchants ----------------------------------------------------------------------

    async def install(
        self, conn: AsyncConnection, shop: str, tokens: ShopifyTokens
    ) -> tuple[MerchantRecord, bool]:
        """Creates or reactivates the shop's merchant with its new Shopify tokens, inside the
        caller's transaction; a first install publishes merchant.created (outbox)."""
        await audit.set_actor(conn, f"shop:{shop}")
        cursor = await conn.execute(
            "SELECT merchant_id::text, status FROM merchants WHERE shop_domain = %s FOR UPDATE",
            (shop,),
        )
        row = await cursor.fetchone()
        created = row is None
        merchant_id = merchant_id_for_shop(shop) if row is None else row[0]
        reinstalled = row is not None and row[1] == "uninstalled"
        values = (
            self._cipher.encrypt(tokens.access_token, context=_access_token_context(merchant_id)),
            tokens.expires_at,
            self._cipher.encrypt(tokens.refresh_token, context=_refresh_token_context(merchant_id))
            if tokens.refresh_token
            else None,
            tokens.refresh_token_expires_at,
            list(tokens.scopes),
        )
        if created:
            cursor = await conn.execute(
                "INSERT INTO merchants (merchant_id, shop_domain, access_token,"
                " access_token_expires_at, refresh_token, refresh_token_expires_at, scopes)"
                f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_MERCHANT_COLUMNS}",
                (merchant_id, shop, *values),
            )
        else:
            cursor = await conn.execute(
                "UPDATE merchants SET access_token = %s, access_token_expires_at = %s,"
                " refresh_token = %s, refresh_token_expires_at = %s, scopes = %s,"
                " status = 'active', updated_at = now(), installed_at = now(),"
                " uninstalled_at = NULL"
                f" WHERE merchant_id = %s RETURNING {_MERCHANT_COLUMNS}",
                (*values, merchant_id),
            )
        merchant = MerchantRecord(*await _one(cursor))
        if created:
            await outbox.enqueue(conn, merchant_id, events.merchant_created(shop))
        elif reinstalled:
            # The same merchant again, its data kept: not merchant.created (nothing is to be
            # set up a second time), but consumers learn it is back.
            await outbox.enqueue(conn, merchant_id, events.merchant_reinstalled(shop))
        return merchant, created

    async def get_merchant(self, merchant_id: str) -> MerchantRecord:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {_MERCHANT_COLUMNS} FROM merchants WHERE merchant_id = %s",
                (merchant_id,),
            )
            row = await cursor.fetchone()
        if row is None:
            raise NotFound("merchant", merchant_id)
        return MerchantRecord(*row)

    # ---- shop tokens (shop_tokens.py) ----------------------------------------------------

    async def shop_token(
        self, conn: AsyncConnection, merchant_id: str, *, lock: bool = False
    ) -> ShopTokenRecord:
        """The merchant's decrypted tokens; `lock` holds the row for a refresh (Shopify's
        refresh token works once, so two refreshes must not run at the same time)."""
        cursor = await conn.execute(
            "SELECT merchant_id::text, shop_domain, status, scopes, access_token,"
            " access_token_expires_at, refresh_token, refresh_token_expires_at"
            " FROM merchants WHERE merchant_id = %s" + (" FOR UPDATE" if lock else ""),
            (merchant_id,),
        )
        row = await cursor.fetchone()
        if row is None:
            raise NotFound("merchant", merchant_id)
        refresh = row[6]
        if row[4] is None:  # uninstalled: the tokens were dropped (mark_uninstalled)
            return ShopTokenRecord(
                merchant_id=row[0],
                shop_domain=row[1],
                status=row[2],
                scopes=row[3],
                access_token=None,
                expires_at=None,
                refresh_token=None,
                refresh_token_expires_at=None,
            )
        return ShopTokenRecord(
            merchant_id=row[0],
            shop_domain=row[1],
            status=row[2],
            scopes=row[3],
            access_token=self._cipher.decrypt_text(
                row[4], context=_access_token_context(merchant_id)
            ),
            expires_at=row[5],
            refresh_token=self._cipher.decrypt_text(
                refresh, context=_refresh_token_context(merchant_id)
            )
            if refresh is not None
            else None,
            refresh_token_expires_at=row[7],
        )

    async def save_refreshed_tokens(
        self, conn: AsyncConnection, merchant_id: str, tokens: ShopifyTokens
    ) -> None:
        """Shopify's answer to a refresh, encrypted, inside the transaction that locked the
        row. A refresh token Shopify did not rotate is kept."""
        await audit.set_actor(conn, "auth:shop-token-refresh")
        await conn.execute(
            "UPDATE merchants SET access_token = %s, access_token_expires_at = %s,"
            " refresh_token = coalesce(%s, refresh_token),"
            " refresh_token_expires_at = coalesce(%s, refresh_token_expires_at),"
            " scopes = CASE WHEN cardinality(%s::text[]) > 0 THEN %s::text[] ELSE scopes END,"
            " access_token_refreshed_at = now(), updated_at = now()"
            " WHERE merchant_id = %s",
            (
                self._cipher.encrypt(
                    tokens.access_token, context=_access_token_context(merchant_id)
                ),
                tokens.expires_at,
                self._cipher.encrypt(
                    tokens.refresh_token, context=_refresh_token_context(merchant_id)
                )
                if tokens.refresh_token
                else None,
                tokens.refresh_token_expires_at,
                list(tokens.scopes),
                list(tokens.scopes),
                merchant_id,
            ),
        )

    async def record_shop_token_read(
        self, merchant_id: str, *, service: str, token_id: str, refreshed: bool
    ) -> None:
        """The audit trail of a hand-out (the trigger copies it into audit_logs)."""
        async with self.pool.connection() as conn, conn.transaction():
            await audit.set_actor(conn, f"service:{service}")
            await conn.execute(
                "INSERT INTO shop_token_reads (merchant_id, service, token_id, refreshed)"
                " VALUES (%s, %s, %s, %s)",
                (merchant_id, service, token_id, refreshed),
            )

    async def mark_uninstalled(
        self, conn: AsyncConnection, shop: str, *, triggered_at: datetime | None, actor: str
    ) -> str | None:
        """Marks the shop's merchant uninstalled, inside the caller's transaction, unless it
        was (re)installed after the uninstall happened: its Shopify tokens are dropped (Shopify
        revoked them; a reinstall brings new ones) and merchant.uninstalled is published
        (outbox). The merchant id, or None if nothing changed."""
        await audit.set_actor(conn, actor)
        cursor = await conn.execute(
            "UPDATE merchants SET status = 'uninstalled', uninstalled_at = now(),"
            " access_token = NULL, access_token_expires_at = NULL,"
            " refresh_token = NULL, refresh_token_expires_at = NULL,"
            " updated_at = now()"
            " WHERE shop_domain = %s AND status = 'active'"
            " AND (%s::timestamptz IS NULL OR installed_at <= %s::timestamptz)"
            " RETURNING merchant_id::text, uninstalled_at",
            (shop, triggered_at, triggered_at),
        )
        row = await cursor.fetchone()
        if row is None:
            return None
        merchant_id = str(row[0])
        await outbox.enqueue(
            conn, merchant_id, events.merchant_uninstalled(shop, triggered_at or row[1])
        )
        return merchant_id

    # ---- admin users --------------------------------------------------------------------

    def _admin(self, row: dict[str, Any]) -> AdminUserRecord:
        user_id = row["user_id"]
        secret = row["totp_secret"]
        return AdminUserRecord(
            user_id=user_id,
            merchant_id=row["merchant_id"],
            email=self._cipher.decrypt_text(row["email"], context=_email_context(user_id)),
            permissions=row["permissions"],
            password_hash=row["password_hash"],
            totp_secret=self._cipher.decrypt_text(secret, context=_totp_context(user_id))
            if secret is not None
            else None,
            mfa_enabled=row["mfa_enabled_at"] is not None,
            totp_last_step=row["totp_last_step"],
            locked_until=row["locked_until"],
            created_at=row["created_at"],
        )

    _ADMIN_COLUMNS = (
        "user_id::text AS user_id, merchant_id::text AS merchant_id, email, permissions,"
        " password_hash, totp_secret, mfa_enabled_at, totp_last_step, locked_until, created_at"
    )

    async def create_admin(
        self,
        *,
        email: str,
        password_hash: str,
        permissions: Sequence[str],
        merchant_id: str | None,
        actor: str,
    ) -> AdminUserRecord | None:
        """None when the email is taken. Audited, with `actor` as who did it."""
        user_id = str(uuid.uuid4())
        email = normalise_email(email)
        async with audit.transaction(self.pool, actor) as conn:
            row = await _fetch_dict(
                conn,
                "INSERT INTO admin_users"
                " (user_id, merchant_id, email, email_index, password_hash, permissions)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (email_index) DO NOTHING"
                f" RETURNING {self._ADMIN_COLUMNS}",
                (
                    user_id,
                    merchant_id,
                    self._cipher.encrypt(email, context=_email_context(user_id)),
                    self._email_index.digest(email, context=EMAIL_INDEX_CONTEXT),
                    password_hash,
                    sorted(set(permissions)),
                ),
            )
        return self._admin(row) if row else None

    async def admin_by_email(self, email: str) -> AdminUserRecord | None:
        index = self._email_index.digest(normalise_email(email), context=EMAIL_INDEX_CONTEXT)
        async with self.pool.connection() as conn:
            row = await _fetch_dict(
                conn,
                f"SELECT {self._ADMIN_COLUMNS} FROM admin_users WHERE email_index = %s",
                (index,),
            )
        return self._admin(row) if row else None

    async def admin_by_id(self, user_id: str) -> AdminUserRecord:
        async with self.pool.connection() as conn:
            row = await _fetch_dict(
                conn,
                f"SELECT {self._ADMIN_COLUMNS} FROM admin_users WHERE user_id = %s",
                (user_id,),
            )
        if row is None:
            raise NotFound("admin user", user_id)
        return self._admin(row)

    async def record_failed_attempt(self, user_id: str) -> None:
        """Counts a wrong password or code; the fifth in a row locks the account a while."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE admin_users SET"
                " failed_attempts = CASE WHEN failed_attempts + 1 >= %s THEN 0"
                "   ELSE failed_attempts + 1 END,"
                " locked_until = CASE WHEN failed_attempts + 1 >= %s THEN now() + %s"
                "   ELSE locked_until END"
                " WHERE user_id = %s",
                (MAX_FAILED_ATTEMPTS, MAX_FAILED_ATTEMPTS, LOCKOUT, user_id),
            )

    async def reset_failed_attempts(self, user_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE admin_users SET failed_attempts = 0 WHERE user_id = %s", (user_id,)
            )

    async def set_totp_secret(self, user_id: str, secret: str) -> bool:
        """Stores a pending secret; False once MFA is enabled (it cannot be replaced)."""
        async with audit.transaction(self.pool, user_id) as conn:
            cursor = await conn.execute(
                "UPDATE admin_users SET totp_secret = %s, totp_last_step = NULL"
                " WHERE user_id = %s AND mfa_enabled_at IS NULL RETURNING 1",
                (self._cipher.encrypt(secret, context=_totp_context(user_id)), user_id),
            )
            return await cursor.fetchone() is not None

    async def accept_totp_step(self, conn: AsyncConnection, user_id: str, step: int) -> bool:
        """Records `step` as used (and enables MFA on the first code), unless a concurrent
        call used it or a later one first."""
        await audit.set_actor(conn, user_id)
        cursor = await conn.execute(
            "UPDATE admin_users SET totp_last_step = %s, failed_attempts = 0,"
            " mfa_enabled_at = coalesce(mfa_enabled_at, now())"
            " WHERE user_id = %s AND (totp_last_step IS NULL OR totp_last_step < %s)"
            " RETURNING 1",
            (step, user_id, step),
        )
        return await cursor.fetchone() is not None

    async def record_revocation(
        self,
        conn: AsyncConnection,
        *,
        token_id: str,
        merchant_id: str | None,
        subject: str | None,
        session_id: str | None,
        reason: str,
        revoked_by: str,
        expires_at: datetime,
    ) -> None:
        """Inside the caller's transaction; the audit trigger logs it."""
        await audit.set_actor(conn, revoked_by)
        await conn.execute(
            "INSERT INTO token_revocations (token_id, merchant_id, subject, session_id, reason,"
            " revoked_by, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (token_id, merchant_id, subject, session_id, reason, revoked_by, expires_at),
        )

    # ---- impersonation ------------------------------------------------------------------

    async def start_impersonation(
        self,
        conn: AsyncConnection,
        *,
        session_id: str,
        admin_id: str,
        merchant_id: str,
        reason: str,
        token_id: str,
        created_at: datetime,
        expires_at: datetime,
    ) -> ImpersonationRecord:
        await audit.set_actor(conn, admin_id)
        cursor = await conn.execute(
            "INSERT INTO impersonation_sessions"
            " (session_id, admin_id, merchant_id, reason, token_id, created_at, expires_at)"
            f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_IMPERSONATION_COLUMNS}",
            (session_id, admin_id, merchant_id, reason, token_id, created_at, expires_at),
        )
        return ImpersonationRecord(*await _one(cursor))

    async def get_impersonation(self, session_id: str) -> ImpersonationRecord:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {_IMPERSONATION_COLUMNS} FROM impersonation_sessions"
                " WHERE session_id = %s",
                (session_id,),
            )
            row = await cursor.fetchone()
        if row is None:
            raise NotFound("impersonation session", session_id)
        return ImpersonationRecord(*row)

    async def end_impersonation(self, session_id: str, actor_id: str) -> ImpersonationRecord:
        async with audit.transaction(self.pool, actor_id) as conn:
            cursor = await conn.execute(
                "UPDATE impersonation_sessions SET ended_at = coalesce(ended_at, now())"
                f" WHERE session_id = %s RETURNING {_IMPERSONATION_COLUMNS}",
                (session_id,),
            )
            row = await cursor.fetchone()
            if row is None:
                raise NotFound("impersonation session", session_id)
        return ImpersonationRecord(*row)


async def _one(cursor: Any) -> tuple[Any, ...]:
    row = await cursor.fetchone()
    if row is None:  # pragma: no cover - RETURNING of a statement that wrote a row
        raise RuntimeError("expected a row")
    return tuple(row)


async def _fetch_dict(
    conn: AsyncConnection, query: str, params: Sequence[Any]
) -> dict[str, Any] | None:
    """One row as a dict (without changing the pooled connection's row factory)."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(query, params)
    return await cursor.fetchone()

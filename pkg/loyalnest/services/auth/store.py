"""The Auth service's tables (auth_0001_init.sql): merchants, OAuth states, admin users and
impersonation sessions. Secrets are encrypted here and nowhere else; changes of merchants and
impersonation sessions are audited by the platform's trigger (loyalnest.platform.audit)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from loyalnest.platform import audit, personal_data
from loyalnest.platform.crypto import BlindIndex, FieldCipher
from loyalnest.platform.errors import NotFound
from loyalnest.platform.events import outbox
from loyalnest.platform.personal_data import CustomerExport, CustomerRef
from loyalnest.platform.postgres import Database
from loyalnest.platform.tenancy import merchant_id_for_shop
from loyalnest.services.auth import events
from loyalnest.services.auth.credentials import token_hash
from loyalnest.services.auth.domain import (
    AdminUserRecord,
    Factor,
    ImpersonationRecord,
    MerchantRecord,
    Scope,
    ShopTokenRecord,
    Throttle,
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
# Expired rows deleted per write at most (OAuth states, rate windows).
PURGE_BATCH = 100


class AuthStore:
    def __init__(self, database: Database, cipher: FieldCipher, email_index: BlindIndex) -> None:
        self.pool = database.pool
        self._cipher = cipher
        self._email_index = email_index

    # ---- personal data (loyalnest.platform.personal_data) -------------------------------
    # Auth holds no Shopify customer's data: its people are the merchant's staff (admin
    # accounts, sessions), erased with the merchant (shop/redact). The merchant's row stays:
    # its tokens went at the uninstall, and it is what a reinstall finds (and what lets Auth
    # issue the service tokens the rest of the erasure runs with).

    async def export_customer(self, merchant_id: str, customer: CustomerRef) -> CustomerExport:
        return CustomerExport({})

    async def erase_customer(self, merchant_id: str, customer: CustomerRef) -> int:
        return 0

    async def erase_merchant(self, merchant_id: str) -> int:
        erased = 0
        async with audit.transaction(self.pool) as conn:
            for statement in (
                "DELETE FROM impersonation_sessions WHERE merchant_id = %(m)s OR admin_id IN"
                " (SELECT user_id FROM admin_users WHERE merchant_id = %(m)s)",
                # Their refresh tokens go with them (ON DELETE CASCADE).
                "DELETE FROM sessions WHERE merchant_id = %(m)s",
                # MFA enrolment tokens cascade; the audit row of a delete keeps no email.
                "DELETE FROM admin_users WHERE merchant_id = %(m)s",
                "DELETE FROM shop_token_reads WHERE merchant_id = %(m)s",
            ):
                erased += (await conn.execute(statement, {"m": merchant_id})).rowcount
            erased += await personal_data.erase_platform_rows(conn, merchant_id)
        return erased

    # ---- OAuth states -------------------------------------------------------------------

    async def save_state(self, state: str, shop: str, expires_at: datetime) -> None:
        async with self.pool.connection() as conn:
            # Expired states are dropped as new ones arrive (a bounded batch, so one call
            # never pays for a backlog): with Login's rate limits the table stays small.
            await conn.execute(
                "DELETE FROM oauth_states WHERE state_hash IN (SELECT state_hash"
                " FROM oauth_states WHERE expires_at < now() LIMIT %s)",
                (PURGE_BATCH,),
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

    async def hit_rate(
        self, scope: str, subject: str, *, limit: int, window: timedelta
    ) -> float | None:
        """Counts a request of `subject` in its fixed window, in one statement (row lock of
        the upsert: concurrent requests cannot all read the same count). None while within
        `limit`, else the seconds until the window ends (the request is refused: it is
        counted all the same, which does not matter, the window resets)."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "DELETE FROM request_rates WHERE (scope, subject) IN (SELECT scope, subject"
                " FROM request_rates WHERE window_start < now() - %s LIMIT %s)",
                (window, PURGE_BATCH),
            )
            cursor = await conn.execute(
                "INSERT INTO request_rates AS r (scope, subject, window_start, hits)"
                " VALUES (%(scope)s, %(subject)s, now(), 1)"
                " ON CONFLICT (scope, subject) DO UPDATE SET"
                " hits = CASE WHEN r.window_start <= now() - %(window)s THEN 1"
                "   ELSE r.hits + 1 END,"
                " window_start = CASE WHEN r.window_start <= now() - %(window)s THEN now()"
                "   ELSE r.window_start END"
                " RETURNING hits, extract(epoch FROM window_start + %(window)s - now())",
                {"scope": scope, "subject": subject, "window": window},
            )
            hits, remaining = await _one(cursor)
        return None if hits <= limit else max(float(remaining), 0.0)

    # ---- sign-in lockout (domain.Throttle) -----------------------------------------------

    async def claim_attempt(
        self, factor: Factor, scope: Scope, subject: str, throttle: Throttle
    ) -> bool:
        """Counts an attempt before its secret is checked: True if it may be checked, False
        if a lock is in force or this attempt is the one past the limit (which starts the
        next lock, twice as long as the last). One statement: the upsert locks the row, so
        concurrent attempts are counted one after the other, never against a stale count."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO sign_in_throttles AS t (factor, scope, subject, attempts)"
                " VALUES (%(factor)s, %(scope)s, %(subject)s, 1)"
                " ON CONFLICT (factor, scope, subject) DO UPDATE SET"
                " attempts = CASE WHEN t.locked_until > now() THEN t.attempts"
                "   WHEN t.attempts + 1 > %(limit)s THEN 0 ELSE t.attempts + 1 END,"
                " lockouts = CASE WHEN t.locked_until > now() THEN t.lockouts"
                "   WHEN t.attempts + 1 > %(limit)s THEN t.lockouts + 1 ELSE t.lockouts END,"
                " locked_until = CASE WHEN t.locked_until > now() THEN t.locked_until"
                "   WHEN t.attempts + 1 > %(limit)s"
                "   THEN now() + least(%(base)s * power(2, least(t.lockouts, 30)), %(ceiling)s)"
                "   ELSE t.locked_until END,"
                " updated_at = now()"
                " RETURNING locked_until IS NULL OR locked_until <= now()",
                {
                    "factor": factor.value,
                    "scope": scope.value,
                    "subject": subject,
                    "limit": throttle.limit,
                    "base": throttle.base,
                    "ceiling": throttle.ceiling,
                },
            )
            (allowed,) = await _one(cursor)
        return bool(allowed)

    async def attempt_succeeded(self, factor: Factor, *, account: str, source: str) -> None:
        """The secret was right: the account's counter and backoff start over; the source
        only gets this attempt back (Throttle)."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE sign_in_throttles SET attempts = 0, lockouts = 0, updated_at = now()"
                " WHERE factor = %s AND scope = 'account' AND subject = %s",
                (factor.value, account),
            )
            await conn.execute(
                "UPDATE sign_in_throttles SET attempts = greatest(attempts - 1, 0),"
                " updated_at = now()"
                " WHERE factor = %s AND scope = 'source' AND subject = %s",
                (factor.value, source),
            )

    def email_account(self, email: str) -> str:
        """The account key of a password attempt: the email's blind index, which exists
        whether or not an admin has that email (unknown emails lock like known ones)."""
        return self._email_index.digest(normalise_email(email), context=EMAIL_INDEX_CONTEXT).hex()

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
            created_at=row["created_at"],
        )

    _ADMIN_COLUMNS = (
        "user_id::text AS user_id, merchant_id::text AS merchant_id, email, permissions,"
        " password_hash, totp_secret, mfa_enabled_at, totp_last_step, created_at"
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

    async def create_enrollment_token(
        self, user_id: str, token: str, *, expires_at: datetime, actor: str
    ) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO mfa_enrollment_tokens (token_hash, user_id, created_by, expires_at)"
                " VALUES (%s, %s, %s, %s)",
                (token_hash(token), user_id, actor, expires_at),
            )

    async def spend_enrollment_token(self, user_id: str, token: str) -> bool:
        """True once for an unexpired, unused enrolment token of `user_id` (atomic: of two
        concurrent calls with one token, one gets True)."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "UPDATE mfa_enrollment_tokens SET used_at = now()"
                " WHERE token_hash = %s AND user_id = %s AND used_at IS NULL"
                " AND expires_at > now() RETURNING 1",
                (token_hash(token), user_id),
            )
            return await cursor.fetchone() is not None

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
            "UPDATE admin_users SET totp_last_step = %s,"
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

"""Auth's records and rules: merchants, admin users and their lockout, impersonation sessions.
No gRPC, no PostgreSQL. Sessions and tokens are the sub-module sessions.py, signing keys
keys.py, passwords and TOTP credentials.py, Shopify's OAuth shopify.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MAX_FAILED_ATTEMPTS = 5
LOCKOUT = timedelta(minutes=5)


@dataclass(frozen=True)
class MerchantRecord:
    merchant_id: str
    shop_domain: str
    status: str
    scopes: Sequence[str]
    created_at: datetime


@dataclass(frozen=True)
class ShopTokenRecord:
    """A merchant's Shopify offline token, decrypted."""

    merchant_id: str
    shop_domain: str
    status: str
    scopes: Sequence[str]
    # None once the merchant uninstalled the app (the tokens are dropped then).
    access_token: str | None
    # Expiring offline tokens only (None: the token does not expire).
    expires_at: datetime | None
    refresh_token: str | None
    refresh_token_expires_at: datetime | None


@dataclass(frozen=True)
class AdminUserRecord:
    user_id: str
    merchant_id: str | None
    email: str
    permissions: Sequence[str]
    password_hash: str
    totp_secret: str | None
    mfa_enabled: bool
    totp_last_step: int | None
    locked_until: datetime | None
    created_at: datetime

    @property
    def locked(self) -> bool:
        return self.locked_until is not None and self.locked_until > datetime.now(UTC)


@dataclass(frozen=True)
class ImpersonationRecord:
    session_id: str
    admin_id: str
    merchant_id: str
    reason: str
    token_id: str
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None

    @property
    def active(self) -> bool:
        return self.ended_at is None and self.expires_at > datetime.now(UTC)


def normalise_email(email: str) -> str:
    return email.strip().lower()

"""Auth's records and rules: merchants, admin users and their lockout, impersonation sessions.
No gRPC, no PostgreSQL. Sessions and tokens are the sub-module sessions.py, signing keys
keys.py, passwords and TOTP credentials.py, Shopify's OAuth shopify.py."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# One answer for every refused sign-in attempt under a lock: the same for a known and an
# unknown account (both lock, see Throttle), so it tells nothing about who exists.
LOCKED_MESSAGE = "too many failed attempts; try again later"


class Factor(StrEnum):
    """What an attempt tries: each has its own counters, so a correct password never
    resets the count of wrong TOTP codes."""

    PASSWORD = "password"
    TOTP = "totp"


class Scope(StrEnum):
    # The account: a password attempt's email (its blind index, known or not), a TOTP
    # attempt's admin. The source: the client's address (source_address).
    ACCOUNT = "account"
    SOURCE = "source"


@dataclass(frozen=True)
class Throttle:
    """`limit` attempts, then a lock of `base * 2**(lockouts so far)`, at most `ceiling`.
    Attempts are counted before the secret is checked (increment, then check the result,
    in one statement: store.claim_attempt): the attempt past the limit starts the lock and
    is refused, so at most `limit` secrets are ever checked between two locks, however many
    arrive at once. A success resets an account's counter and its backoff; at a source it
    only takes its own attempt back (a source's valid account must not buy it more guesses
    on others)."""

    limit: int
    base: timedelta
    ceiling: timedelta


def peer_address(peer: str) -> str:
    """The IP address in grpc's peer string ("ipv4:10.0.0.7:5501", "ipv6:[::1]:5501");
    the whole string for anything else (a unix socket)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        host = rest.rpartition(":")[0]
        return host.removeprefix("[").removesuffix("]")
    return peer


def source_address(
    peer: str, forwarded_for: Sequence[str], trusted_proxies: Iterable[IpNetwork]
) -> str:
    """The client's address as far as it can be trusted. The direct peer, unless the peer is
    a trusted proxy (the gateway): then the *last* X-Forwarded-For entry, the one the gateway
    appended itself (it runs with use_remote_address and no trusted hops, so that entry is
    the address it saw; entries before it are the client's own word and never used).
    x-envoy-external-address is not used: Envoy sets it only for peers outside its internal
    ranges and passes a client's own copy through for peers inside them."""
    address = peer_address(peer)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if not any(ip in network for network in trusted_proxies):
        return str(ip)
    entries = [e.strip() for header in forwarded_for for e in header.split(",") if e.strip()]
    if not entries:
        return str(ip)
    try:
        return str(ipaddress.ip_address(entries[-1]))
    except ValueError:
        return str(ip)  # not an address: the proxy's own then, never the client's text


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
    created_at: datetime


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

"""Service identity: what each LoyalNest service may do on its own behalf, and how it proves
who it is to the Auth service (an OAuth2 client-credentials grant, with an HMAC as the proof).

Credentials. Auth holds ONE master key (LOYALNEST_AUTH_SERVICE_CREDENTIAL_KEY, from a Secret);
each service's credential is derived from it (`service_credential`, HKDF-SHA256 with the
service's name), so Auth stores no per-service secret and no table, a service's Secret holds
only its own credential (leaking it exposes that service alone), and `loyalnest
service-credential NAME` prints one for the Secret. Rotating the master key rotates all.

Proof. The credential never travels: a token request carries the service, merchant,
permissions, a timestamp and a random nonce, signed with HMAC-SHA256 under the credential
(`request_signature`). Auth recomputes the credential and the signature, compares in constant
time, refuses timestamps more than `MAX_REQUEST_SKEW_SECONDS` away and a nonce seen before
(Redis, kept for the skew window), so a captured request cannot be replayed.

Grants. `SERVICE_GRANTS` below is the one list of what each service may ask for; a token
carries at most that, and its audience is limited to the services those permissions are for
(`token_audiences`): a token for Users is refused by Points even on RPCs that need no
permission.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from loyalnest.platform.crypto import derive_key
from loyalnest.platform.events import pseudonyms
from loyalnest.platform.personal_data import caller_grants as personal_data_grants

# What each service may do when it acts on its own behalf (a Kafka consumer, a scheduled job):
# permissions as in the RPCs' `(loyalnest.options.v1.access)`. A service missing here cannot
# get a service token. Keep it to what the service's calls need (its ServiceSpec's `calls`).
SERVICE_GRANTS: dict[str, frozenset[str]] = {
    # auth:shop-token: the shop's Admin API token, for reward discount codes; users:birthdays:
    # whose birthday is today (ListBirthdays), for the occasions job's BIRTHDAY rules.
    "points": frozenset(
        {"auth:validate", "auth:shop-token", "users:read", "users:birthdays", "core:read"}
    ),
    # auth:shop-token: the shop's Admin API token, for Shopify Billing (paid plans).
    "core": frozenset(
        {
            "auth:validate",
            "auth:shop-token",
            "users:read",
            "points:read",
            "points:write",
            "rfm:read",
        }
    ),
    # auth:shop-token: the shop's Admin API token, for campaigns' Shopify discounts.
    "campaign": frozenset({"auth:shop-token"}),
    # auth:shop-token: the shop's Admin API token, for the catalogue sync (products query).
    "products": frozenset({"auth:shop-token"}),
    "users": frozenset({"auth:validate", "roles:read"}),
    "roles": frozenset({"auth:validate"}),
    "auth": frozenset({"roles:read", "users:read"}),
    # ValidateMerchant of a webhook's shop, to skip those of unknown or uninstalled merchants
    # (webhooks carry no caller token).
    "edge": frozenset({"auth:validate"}),
    # GDPR requests: every personal-data holder's export and erasure (platform/personal_data).
    "admin_core": frozenset({"auth:validate", *personal_data_grants()}),
    # auth:validate: the merchant's shop domain for referral links; auth:shop-token: friends'
    # discount codes at Shopify; points:write: referrers' rewards (EarnPoints).
    "referrals": frozenset({"auth:validate", "auth:shop-token", "points:write"}),
}
# Customer pseudonyms (platform/events/pseudonyms.py): every relay and consumer but the edge's
# asks the edge for them.
for _service in pseudonyms.CALLERS:
    SERVICE_GRANTS[_service] = SERVICE_GRANTS.get(_service, frozenset()) | {pseudonyms.PERMISSION}

SERVICE_TOKEN_TTL_SECONDS = 5 * 60
MAX_REQUEST_SKEW_SECONDS = 60
MIN_NONCE_LENGTH = 16
_CREDENTIAL_PURPOSE = "loyalnest service credential v1:"
_SIGNATURE_CONTEXT = "loyalnest-service-token-request-v1"


def service_credential(master_key: bytes, service: str) -> str:
    """The credential of `service` (base64 of 32 bytes), derived from Auth's master key."""
    return base64.b64encode(derive_key(master_key, _CREDENTIAL_PURPOSE + service)).decode()


def request_signature(
    credential: str,
    *,
    service: str,
    merchant_id: str,
    permissions: Iterable[str],
    timestamp: int,
    nonce: str,
) -> str:
    """base64url HMAC-SHA256 over every field of a token request."""
    message = "\n".join(
        (
            _SIGNATURE_CONTEXT,
            service,
            merchant_id,
            ",".join(sorted(set(permissions))),
            str(timestamp),
            nonce,
        )
    ).encode()
    digest = hmac.new(credential.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def signature_matches(expected: str, presented: str) -> bool:
    return hmac.compare_digest(expected.encode(), presented.encode())


def permission_domain(permission: str) -> str:
    return permission.split(":", 1)[0]


def not_granted(service: str, requested: Iterable[str]) -> list[str]:
    """The requested permissions outside the service's grant (exact names only: a grant of
    `users:read` does not cover `users:*`)."""
    granted = SERVICE_GRANTS.get(service, frozenset())
    return sorted(set(requested) - granted)


def token_audiences(audience: str, permissions: Iterable[str]) -> list[str]:
    """A service token's `aud`: "<audience>/<service>" for every service its permissions are
    for (permission domains are service names)."""
    return sorted({f"{audience}/{permission_domain(p)}" for p in permissions})


def accepted_audiences(audience: str, service: str) -> list[str]:
    """What a service accepts as `aud`: user tokens (the mesh's audience) and service tokens
    meant for it."""
    return [audience, f"{audience}/{service}"]

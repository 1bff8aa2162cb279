"""Access tokens: what they claim, how they are minted and verified."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from loyalnest.platform.auth.keys import ALGORITHM, KeySet
from loyalnest.platform.errors import Unauthenticated
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

ACCESS = "access"
REFRESH = "refresh"
# Minted for one of LoyalNest's own services (client credentials): sub = "service:<name>".
SERVICE = "service"
SERVICE_SUBJECT_PREFIX = "service:"
DEFAULT_ACCESS_TTL_SECONDS = 15 * 60
CLOCK_SKEW_SECONDS = 30


@dataclass(frozen=True)
class Principal:
    """Who is calling, as established by a verified token."""

    subject: str  # user id, or "service:<name>" for service identities
    merchant_id: str | None
    permissions: frozenset[str]
    token_id: str
    expires_at: int
    # The LoyalNest service making the call: the subject of a service token, or the service
    # that relays a user's token and proved it with its own service token (another header).
    service: str | None = None

    def has(self, permission: str) -> bool:
        domain = permission.split(":", 1)[0]
        return bool({permission, f"{domain}:*", "admin:full"} & self.permissions)


class TokenIssuer:
    def __init__(self, keyset: KeySet, *, issuer: str, audience: str) -> None:
        self._keyset = keyset
        self._issuer = issuer
        self._audience = audience

    def mint(
        self,
        *,
        subject: str,
        merchant_id: str | None,
        permissions: Iterable[str] = (),
        ttl_seconds: int = DEFAULT_ACCESS_TTL_SECONDS,
        token_type: str = ACCESS,
        extra: dict[str, Any] | None = None,
        audience: str | Sequence[str] | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience if audience is None else audience,
            "sub": subject,
            "typ": token_type,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            "perms": sorted(set(permissions)),
            **(extra or {}),
        }
        if merchant_id is not None:
            claims["merchant_id"] = merchant_id
        return jwt.encode(
            claims,
            self._keyset.signing_key,
            algorithm=ALGORITHM,
            headers={"kid": self._keyset.active_kid},
        )


class TokenVerifier:
    """Verifies tokens against a public JWKS; only EdDSA, so `alg: none` and HMAC-with-the-
    public-key confusions are rejected before any signature check."""

    def __init__(self, jwks: dict[str, Any], *, issuer: str, audience: str | Sequence[str]) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for jwk in jwks.get("keys", []):
            key = OKPAlgorithm.from_jwk(json.dumps(jwk))
            if isinstance(key, Ed25519PublicKey):  # only Ed25519 public keys verify tokens
                self._keys[jwk["kid"]] = key
        self._issuer = issuer
        self._audience = audience

    def verify(
        self, token: str, *, token_type: str = ACCESS, token_types: Collection[str] = ()
    ) -> Principal:
        """A verified token of `token_type` (or of any of `token_types`, when given)."""
        accepted = frozenset(token_types or (token_type,))
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.get(header.get("kid", ""))
            if key is None:
                raise Unauthenticated("token signed by an unknown key")
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=(
                    self._audience if isinstance(self._audience, str) else list(self._audience)
                ),
                issuer=self._issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti", "typ"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthenticated("token is for another audience") from exc
        except jwt.PyJWTError as exc:
            # PyJWT's text describes the token's inside (claims, header, padding): a probe's
            # oracle, so the client gets a fixed message and the log the detail.
            log.info("token rejected", reason=f"{type(exc).__name__}: {exc}")
            raise Unauthenticated("invalid token") from exc
        if claims["typ"] not in accepted:
            raise Unauthenticated(
                f"expected a {' or '.join(sorted(accepted))} token, got {claims['typ']!r}"
            )
        subject = str(claims["sub"])
        service = None
        if claims["typ"] == SERVICE:
            service = subject.removeprefix(SERVICE_SUBJECT_PREFIX)
            if not subject.startswith(SERVICE_SUBJECT_PREFIX) or not service:
                raise Unauthenticated("a service token's subject must be 'service:<name>'")
        return Principal(
            subject=subject,
            merchant_id=claims.get("merchant_id"),
            permissions=frozenset(claims.get("perms", ())),
            token_id=str(claims["jti"]),
            expires_at=int(claims["exp"]),
            service=service,
        )

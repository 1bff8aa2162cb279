"""Verifies the caller's token on every non-public RPC and enforces its declared permission.

The gateway verifies tokens too; services check again so a call that reaches them directly
(inside the mesh, or through a misconfigured route) is held to the same rules.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from loyalnest.platform.auth import context as auth_context
from loyalnest.platform.auth.policy import access_policy, declares_access
from loyalnest.platform.auth.revocation import RevocationList
from loyalnest.platform.auth.tokens import ACCESS, SERVICE, Principal, TokenVerifier
from loyalnest.platform.errors import PermissionDenied, Unauthenticated
from loyalnest.platform.grpctypes import Context, Handler
from loyalnest.platform.interceptors import (
    StreamBehavior,
    UnaryBehavior,
    WrappingInterceptor,
)
from loyalnest.platform.memo import RecentlyUsed

JWKS_RELOAD_SECONDS = 10.0
# Verified tokens remembered per process: a client reuses its token for up to 15 minutes, and
# an Ed25519 check costs more than the rest of a cheap RPC. Expiry and revocation are still
# checked on every call.
VERIFIED_CACHE_SIZE = 10_000
# A service relaying its caller's token names itself with its own service token here; the
# callee verifies it (a forged or expired one fails the call).
SERVICE_TOKEN_HEADER = "loyalnest-service-token"
CALLER_TOKEN_TYPES = (ACCESS, SERVICE)


class JwksFile:
    """A public JWKS file (a mounted ConfigMap in Kubernetes), re-read when it changes so a
    published key rotation needs no restart."""

    def __init__(self, path: Path, *, issuer: str, audience: str | Sequence[str]) -> None:
        self._path = path
        self._issuer = issuer
        self._audience = audience
        self._mtime = 0.0
        self._checked = 0.0
        self._verified: RecentlyUsed[str, Principal] = RecentlyUsed(VERIFIED_CACHE_SIZE)
        self._verifier = self._load()

    def _load(self) -> TokenVerifier:
        self._verified.clear()  # a removed key must stop verifying at once
        self._mtime = self._path.stat().st_mtime
        jwks = json.loads(self._path.read_text())
        return TokenVerifier(jwks, issuer=self._issuer, audience=self._audience)

    def verifier(self) -> TokenVerifier:
        now = time.monotonic()
        if now - self._checked > JWKS_RELOAD_SECONDS:
            self._checked = now
            if self._path.stat().st_mtime != self._mtime:
                self._verifier = self._load()
        return self._verifier

    def verify(self, token: str, token_types: Sequence[str] = CALLER_TOKEN_TYPES) -> Principal:
        """A verified access or service token (`token_types`)."""
        verifier = self.verifier()
        principal = self._verified.get(token)
        if principal is not None and principal.expires_at > time.time():
            if (SERVICE if principal.service else ACCESS) not in token_types:
                raise Unauthenticated(f"expected a {' or '.join(token_types)} token")
            return principal
        principal = verifier.verify(token, token_types=token_types)
        self._verified.put(token, principal)
        return principal


def _metadata(context: Context, name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value.decode() if isinstance(value, bytes) else value
    return None


def _bearer_token(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise Unauthenticated("authorization must be 'Bearer <token>'")
    raise Unauthenticated("this call needs an access token (authorization: Bearer ...)")


class AuthInterceptor(WrappingInterceptor):
    def __init__(self, jwks: JwksFile, revocations: RevocationList | None) -> None:
        super().__init__()
        self._jwks = jwks
        self._revocations = revocations

    async def close(self) -> None:
        if self._revocations is not None:
            await self._revocations.close()

    def _wrap(self, method: str, handler: Any) -> Handler:
        if access_policy(method).public:
            return handler  # type: ignore[no-any-return]
        return super()._wrap(method, handler)

    async def _authenticate(self, method: str, context: Context) -> tuple[Principal, str]:
        policy = access_policy(method)
        if not declares_access(policy):
            # Fail closed: an RPC whose proto forgot (loyalnest.options.v1.access) is nobody's.
            raise PermissionDenied("this call declares no access policy; it is refused")
        token = _bearer_token(context)
        principal = self._jwks.verify(token)
        await self._not_revoked(principal)
        # Checked on the bearer token itself, before a relaying service is recorded: a user's
        # token relayed by a service is still a user's call.
        if policy.internal and not principal.service:
            raise PermissionDenied("this call is for LoyalNest's services (a service token) only")
        relayed_by = _metadata(context, SERVICE_TOKEN_HEADER)
        if relayed_by is not None:
            if principal.service:
                raise Unauthenticated(f"{SERVICE_TOKEN_HEADER} goes with a user's token only")
            relay = self._jwks.verify(relayed_by, (SERVICE,))
            await self._not_revoked(relay)
            principal = dataclasses.replace(principal, service=relay.service)
        permission = policy.permission
        if permission and not principal.has(permission):
            raise PermissionDenied(f"this call needs the {permission!r} permission")
        return principal, token

    async def _not_revoked(self, principal: Principal) -> None:
        revocations = self._revocations
        if revocations and await revocations.is_revoked(principal.token_id, principal.expires_at):
            raise Unauthenticated("token revoked")

    def wrap_unary(self, method: str, kind: str, behavior: UnaryBehavior) -> UnaryBehavior:
        async def authenticated(request: Any, context: Context) -> Any:
            bound = auth_context.bind(*await self._authenticate(method, context))
            try:
                return await behavior(request, context)
            finally:
                auth_context.unbind(bound)

        return authenticated

    def wrap_stream(self, method: str, kind: str, behavior: StreamBehavior) -> StreamBehavior:
        async def authenticated(request: Any, context: Context) -> AsyncIterator[Any]:
            bound = auth_context.bind(*await self._authenticate(method, context))
            try:
                async for item in behavior(request, context):
                    yield item
            finally:
                auth_context.unbind(bound)

        return authenticated

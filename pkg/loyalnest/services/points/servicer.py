"""gRPC surface of the Points service: validation, tenancy and proto mapping only."""

from __future__ import annotations

from google.protobuf.message import Message

from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform import pagination, tenancy
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.validation import Validator
from loyalnest.services.points.domain import MAX_POINTS_PER_TRANSACTION, Posting, TransactionType
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.wire import balance_proto, transaction_proto

_PostingRequest = (
    points_pb2.EarnPointsRequest | points_pb2.RedeemPointsRequest | points_pb2.AdjustPointsRequest
)
# RPC name -> the ledger movement it posts and the response it returns.
_POSTINGS: dict[str, tuple[TransactionType, type[Message]]] = {
    "EarnPoints": (TransactionType.EARN, points_pb2.EarnPointsResponse),
    "RedeemPoints": (TransactionType.REDEEM, points_pb2.RedeemPointsResponse),
    "AdjustPoints": (TransactionType.ADJUST, points_pb2.AdjustPointsResponse),
}


def _validate_amount(v: Validator, points: int, *, allow_negative: bool) -> None:
    if allow_negative:
        v.check(points != 0, "points", "must not be zero")
    else:
        v.check(points > 0, "points", "must be positive")
    v.check(
        abs(points) <= MAX_POINTS_PER_TRANSACTION,
        "points",
        f"must be at most {MAX_POINTS_PER_TRANSACTION} in absolute value",
    )


class PointsServicer(points_pb2_grpc.PointsServiceServicer):
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._store = ledger.store

    async def GetPointsBalance(
        self, request: points_pb2.GetPointsBalanceRequest, context: Context
    ) -> points_pb2.GetPointsBalanceResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.identifier("customer_id", request.customer_id)
        balance = await self._ledger.balance(merchant_id, request.customer_id)
        return points_pb2.GetPointsBalanceResponse(balance=balance)

    async def _post(self, method: str, request: _PostingRequest, context: Context) -> Message:
        kind, response_type = _POSTINGS[method]
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.identifier("customer_id", request.customer_id)
            _validate_amount(v, request.points, allow_negative=kind is TransactionType.ADJUST)
            v.text("reason", request.reason, required=kind is TransactionType.ADJUST)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        points = -request.points if kind is TransactionType.REDEEM else request.points
        posting = Posting(merchant_id, request.customer_id, kind, points, request.reason.strip())
        result = await self._ledger.post(posting, IdempotencyKey.of(method, request))
        return response_type(
            transaction=transaction_proto(result.transaction), balance=balance_proto(result.balance)
        )

    async def EarnPoints(
        self, request: points_pb2.EarnPointsRequest, context: Context
    ) -> points_pb2.EarnPointsResponse:
        return await self._post("EarnPoints", request, context)  # type: ignore[return-value]

    async def RedeemPoints(
        self, request: points_pb2.RedeemPointsRequest, context: Context
    ) -> points_pb2.RedeemPointsResponse:
        return await self._post("RedeemPoints", request, context)  # type: ignore[return-value]

    async def AdjustPoints(
        self, request: points_pb2.AdjustPointsRequest, context: Context
    ) -> points_pb2.AdjustPointsResponse:
        return await self._post("AdjustPoints", request, context)  # type: ignore[return-value]

    async def ListTransactions(
        self, request: points_pb2.ListTransactionsRequest, context: Context
    ) -> points_pb2.ListTransactionsResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.identifier("customer_id", request.customer_id)
        customer_id = request.customer_id
        page, token = await pagination.keyset_page(
            page_size_requested=request.page_size,
            page_token=request.page_token,
            scope=f"{merchant_id}/{customer_id}",
            fetch=lambda limit, before: self._store.list_transactions(
                merchant_id, customer_id, limit=limit, before_sequence=before
            ),
            position=lambda transaction: transaction.sequence,
        )
        return points_pb2.ListTransactionsResponse(
            transactions=[transaction_proto(t) for t in page], next_page_token=token
        )

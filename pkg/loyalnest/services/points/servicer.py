"""gRPC surface of the Points service: validation, tenancy and proto mapping only."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from loyalnest.gen.events.v1 import gateway_pb2
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform import pagination, tenancy
from loyalnest.platform.errors import NotFound
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.validation import Validator
from loyalnest.services.points import offline_sync
from loyalnest.services.points.domain import (
    MAX_POINTS_PER_TRANSACTION,
    Posting,
    Reward,
    RewardKind,
    TransactionType,
)
from loyalnest.services.points.earning import Activities, OrderEarnings
from loyalnest.services.points.expiry import PointsExpiry
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.liability import (
    DEFAULT_HORIZON_DAYS,
    MAX_HORIZON_DAYS,
    PointsLiability,
)
from loyalnest.services.points.rewards import RewardRedemptions
from loyalnest.services.points.simulation import RuleSimulation
from loyalnest.services.points.store.base import REWARD_UPDATABLE
from loyalnest.services.points.tiers import VipTiers
from loyalnest.services.points.wire import (
    REWARD_KINDS,
    REWARD_KINDS_BY_PROTO,
    activity_award_proto,
    balance_proto,
    expiring_proto,
    liability_proto,
    order_earning_proto,
    reward_proto,
    simulation_proto,
    transaction_proto,
    vip_proto,
)

_PostingRequest = (
    points_pb2.EarnPointsRequest | points_pb2.RedeemPointsRequest | points_pb2.AdjustPointsRequest
)
# RPC name -> the ledger movement it posts.
_POSTINGS: dict[str, TransactionType] = {
    "EarnPoints": TransactionType.EARN,
    "RedeemPoints": TransactionType.REDEEM,
    "AdjustPoints": TransactionType.ADJUST,
}


def _validate_amount(
    v: Validator, points: int, *, allow_negative: bool, field: str = "points"
) -> None:
    if allow_negative:
        v.check(points != 0, field, "must not be zero")
    else:
        v.check(points > 0, field, "must be positive")
    v.check(
        abs(points) <= MAX_POINTS_PER_TRANSACTION,
        field,
        f"must be at most {MAX_POINTS_PER_TRANSACTION} in absolute value",
    )


ACTIVITY_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
PRODUCT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,254}$")
MAX_PREVIEW_LINES = 250
MAX_QUANTITY = 1_000_000
MAX_AMOUNT = Decimal(10**12)


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _is_amount(text: str) -> bool:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return False
    return value.is_finite() and Decimal(0) <= value <= MAX_AMOUNT


class PointsServicer(points_pb2_grpc.PointsServiceServicer):
    def __init__(
        self,
        ledger: Ledger,
        redemptions: RewardRedemptions,
        expiry: PointsExpiry,
        orders: OrderEarnings,
        activities: Activities,
        tiers: VipTiers,
        liability: PointsLiability,
        simulation: RuleSimulation,
    ) -> None:
        self._ledger = ledger
        self._store = ledger.store
        self._redemptions = redemptions
        self._expiry = expiry
        self._orders = orders
        self._activities = activities
        self._tiers = tiers
        self._liability = liability
        self._simulation = simulation

    async def GetPointsBalance(
        self, request: points_pb2.GetPointsBalanceRequest, context: Context
    ) -> points_pb2.GetPointsBalanceResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.identifier("customer_id", request.customer_id)
        balance = await self._ledger.balance(merchant_id, request.customer_id)
        response = points_pb2.GetPointsBalanceResponse(balance=balance)
        # Read from the history, not cached with the balance: it depends on the time.
        expiring = await self._expiry.expiring(merchant_id, request.customer_id)
        if expiring is not None:
            response.expiring.CopyFrom(expiring_proto(expiring))
        progress = await self._tiers.progress(merchant_id, request.customer_id)
        if progress is not None:
            response.vip.CopyFrom(vip_proto(progress))
        return response

    async def GetPointsLiability(
        self, request: points_pb2.GetPointsLiabilityRequest, context: Context
    ) -> points_pb2.GetPointsLiabilityResponse:
        merchant_id = tenancy.merchant_id()
        horizon = request.breakage_horizon_days or DEFAULT_HORIZON_DAYS
        with Validator() as v:
            v.check(
                0 < horizon <= MAX_HORIZON_DAYS,
                "breakage_horizon_days",
                f"must be 1 to {MAX_HORIZON_DAYS} (0: {DEFAULT_HORIZON_DAYS})",
            )
        return liability_proto(await self._liability.report(merchant_id, horizon))

    async def SimulateEarningRules(
        self, request: points_pb2.SimulateEarningRulesRequest, context: Context
    ) -> points_pb2.SimulateEarningRulesResponse:
        report = await self._simulation.simulate(tenancy.merchant_id(), request.days, request.rules)
        return simulation_proto(report)

    async def GetOrderEarning(
        self, request: points_pb2.GetOrderEarningRequest, context: Context
    ) -> points_pb2.GetOrderEarningResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.identifier("order_id", request.order_id)
        settlement = await self._store.order_settlement(merchant_id, request.order_id)
        if settlement is None:
            raise NotFound("order_earning", request.order_id)
        return points_pb2.GetOrderEarningResponse(order=order_earning_proto(settlement))

    async def _post(
        self, method: str, request: _PostingRequest
    ) -> tuple[points_pb2.PointsTransaction, points_pb2.PointsBalance]:
        """Posts the movement `method` stands for: the new transaction and balance."""
        kind = _POSTINGS[method]
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.identifier("customer_id", request.customer_id)
            _validate_amount(v, request.points, allow_negative=kind is TransactionType.ADJUST)
            v.text("reason", request.reason, required=kind is TransactionType.ADJUST)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        points = -request.points if kind is TransactionType.REDEEM else request.points
        posting = Posting(merchant_id, request.customer_id, kind, points, request.reason.strip())
        result = await self._ledger.post(posting, IdempotencyKey.of(method, request))
        return transaction_proto(result.transaction), balance_proto(result.balance)

    async def EarnPoints(
        self, request: points_pb2.EarnPointsRequest, context: Context
    ) -> points_pb2.EarnPointsResponse:
        transaction, balance = await self._post("EarnPoints", request)
        return points_pb2.EarnPointsResponse(transaction=transaction, balance=balance)

    async def RedeemPoints(
        self, request: points_pb2.RedeemPointsRequest, context: Context
    ) -> points_pb2.RedeemPointsResponse:
        transaction, balance = await self._post("RedeemPoints", request)
        return points_pb2.RedeemPointsResponse(transaction=transaction, balance=balance)

    async def AdjustPoints(
        self, request: points_pb2.AdjustPointsRequest, context: Context
    ) -> points_pb2.AdjustPointsResponse:
        transaction, balance = await self._post("AdjustPoints", request)
        return points_pb2.AdjustPointsResponse(transaction=transaction, balance=balance)

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

    async def StreamPoints(
        self, request: points_pb2.StreamPointsRequest, context: Context
    ) -> AsyncIterator[points_pb2.StreamPointsResponse]:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.identifier("customer_id", request.customer_id)
        async for balance in self._ledger.watch(merchant_id, request.customer_id):
            yield points_pb2.StreamPointsResponse(balance=balance)

    async def RecordActivity(
        self, request: points_pb2.RecordActivityRequest, context: Context
    ) -> points_pb2.RecordActivityResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.identifier("customer_id", request.customer_id)
            v.check(
                bool(ACTIVITY_RE.match(request.activity)),
                "activity",
                "must be 1-64 characters of a-z, 0-9, - and _",
            )
            v.idempotency_key("idempotency_key", request.idempotency_key)
        results = await self._activities.record(
            merchant_id, request.customer_id, request.activity, request.idempotency_key
        )
        return points_pb2.RecordActivityResponse(awards=[activity_award_proto(r) for r in results])

    async def CancelRedemption(
        self, request: points_pb2.CancelRedemptionRequest, context: Context
    ) -> points_pb2.CancelRedemptionResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.check(_is_uuid(request.redemption_id), "redemption_id", "must be a redemption id")
        redemption, refund = await self._redemptions.cancel(merchant_id, request.redemption_id)
        return points_pb2.CancelRedemptionResponse(
            redemption_id=redemption.redemption_id,
            refund=transaction_proto(refund.transaction),
            balance=balance_proto(refund.balance),
        )

    async def PreviewEarning(
        self, request: points_pb2.PreviewEarningRequest, context: Context
    ) -> points_pb2.PreviewEarningResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.check(
                len(request.lines) <= MAX_PREVIEW_LINES,
                "lines",
                f"at most {MAX_PREVIEW_LINES} lines",
            )
            for i, line in enumerate(request.lines):
                v.check(
                    0 < line.quantity <= MAX_QUANTITY,
                    f"lines[{i}].quantity",
                    f"must be 1 to {MAX_QUANTITY}",
                )
                for name in ("price", "discount"):
                    value = getattr(line, name)
                    v.check(
                        (name == "discount" and not value) or _is_amount(value),
                        f"lines[{i}].{name}",
                        "must be a decimal amount of at least 0",
                    )
                v.check(
                    not line.product_id or bool(PRODUCT_ID_RE.match(line.product_id)),
                    f"lines[{i}].product_id",
                    "must be a Shopify product id (numeric or gid://shopify/Product/...)",
                )
        order = gateway_pb2.ShopifyOrder(
            order_id="preview",
            source_name="pos" if request.pos else "web",
            line_items=[
                gateway_pb2.ShopifyLineItem(
                    product_id=line.product_id,
                    quantity=line.quantity,
                    price=line.price,
                    discount=line.discount or "0",
                )
                for line in request.lines
            ],
        )
        totals, awards = await self._orders.preview(merchant_id, order)
        return points_pb2.PreviewEarningResponse(
            points=min(sum(a.points for a in awards), MAX_POINTS_PER_TRANSACTION),
            awards=[points_pb2.RuleAward(rule_id=a.rule_id, points=a.points) for a in awards],
            eligible_amount=str(totals.eligible_amount),
        )

    async def SyncOfflineTransactions(
        self, request: points_pb2.SyncOfflineTransactionsRequest, context: Context
    ) -> points_pb2.SyncOfflineTransactionsResponse:
        return await offline_sync.sync(self._ledger, tenancy.merchant_id(), request)

    # ---- rewards ------------------------------------------------------------------------

    async def CreateReward(
        self, request: points_pb2.CreateRewardRequest, context: Context
    ) -> points_pb2.CreateRewardResponse:
        merchant_id = tenancy.merchant_id()
        r = request.reward
        with Validator() as v:
            v.idempotency_key("idempotency_key", request.idempotency_key)
            kind = _validate_reward(v, r.name, r.kind, r.value, r.points_cost, prefix="reward.")
        assert kind is not None
        now = datetime.now(UTC)
        reward = Reward(
            merchant_id=merchant_id,
            reward_id=str(uuid.uuid5(_REWARD_IDS, f"{merchant_id}\0{request.idempotency_key}")),
            name=r.name.strip(),
            kind=kind,
            value=r.value.strip(),
            points_cost=r.points_cost,
            active=r.active if r.HasField("active") else True,
            created_at=now,
            updated_at=now,
        )
        key = IdempotencyKey.of("CreateReward", request)
        created = await self._store.create_reward(reward, key.fingerprint)
        return points_pb2.CreateRewardResponse(reward=reward_proto(created))

    async def ListRewards(
        self, request: points_pb2.ListRewardsRequest, context: Context
    ) -> points_pb2.ListRewardsResponse:
        merchant_id = tenancy.merchant_id()
        scope = f"rewards/{merchant_id}/{request.active_only}"
        limit = pagination.page_size(request.page_size)
        offset = pagination.decode_page_token(request.page_token, scope) or 0
        rows = await self._store.list_rewards(
            merchant_id, active_only=request.active_only, limit=limit + 1, offset=offset
        )
        token = pagination.encode_page_token(scope, offset + limit) if len(rows) > limit else ""
        return points_pb2.ListRewardsResponse(
            rewards=[reward_proto(r) for r in rows[:limit]], next_page_token=token
        )

    async def UpdateReward(
        self, request: points_pb2.UpdateRewardRequest, context: Context
    ) -> points_pb2.UpdateRewardResponse:
        merchant_id = tenancy.merchant_id()
        r = request.reward
        paths = set(request.update_mask.paths)
        with Validator() as v:
            v.uuid("reward.reward_id", r.reward_id)
            v.check(bool(paths), "update_mask", "must name at least one field")
            unknown = sorted(paths - REWARD_UPDATABLE)
            v.check(not unknown, "update_mask", f"cannot update {unknown}; only {_UPDATABLE}")
        current = await self._store.get_reward(merchant_id, r.reward_id)
        merged = {
            "name": r.name if "name" in paths else current.name,
            "kind": r.kind if "kind" in paths else REWARD_KINDS[current.kind],
            "value": r.value if "value" in paths else current.value,
            "points_cost": r.points_cost if "points_cost" in paths else current.points_cost,
        }
        with Validator() as v:
            kind = _validate_reward(v, prefix="reward.", **merged)  # type: ignore[arg-type]
        changes: dict[str, object] = {
            "name": str(merged["name"]).strip(),
            "kind": kind,
            "value": str(merged["value"]).strip(),
            "points_cost": merged["points_cost"],
            "active": r.active if "active" in paths else current.active,
        }
        updated = await self._store.update_reward(
            merchant_id, r.reward_id, {k: v for k, v in changes.items() if k in paths}
        )
        return points_pb2.UpdateRewardResponse(reward=reward_proto(updated))

    async def RedeemReward(
        self, request: points_pb2.RedeemRewardRequest, context: Context
    ) -> points_pb2.RedeemRewardResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.uuid("reward_id", request.reward_id)
            v.identifier("customer_id", request.customer_id)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        redeemed = await self._redemptions.redeem(
            merchant_id,
            request.customer_id,
            request.reward_id,
            IdempotencyKey.of("RedeemReward", request),
        )
        return points_pb2.RedeemRewardResponse(
            discount_code=redeemed.redemption.discount_code,
            redemption_id=redeemed.redemption.redemption_id,
            transaction=transaction_proto(redeemed.debit.transaction),
            balance=balance_proto(redeemed.debit.balance),
            reward=reward_proto(redeemed.reward),
        )


_REWARD_IDS = uuid.UUID("6f1c1f43-2d55-4d3e-9a53-0c7e1d1f9b10")
_UPDATABLE = ", ".join(sorted(REWARD_UPDATABLE))
MAX_AMOUNT = Decimal(1_000_000)


def _decimal(value: str) -> Decimal | None:
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _validate_reward(
    v: Validator, name: str, kind: int, value: str, points_cost: int, *, prefix: str
) -> RewardKind | None:
    v.text(f"{prefix}name", name, required=True)
    resolved = REWARD_KINDS_BY_PROTO.get(kind)
    v.check(resolved is not None, f"{prefix}kind", "must be a REWARD_KIND other than UNSPECIFIED")
    _validate_amount(v, points_cost, allow_negative=False, field=f"{prefix}points_cost")
    number = _decimal(value)
    match resolved:
        case RewardKind.FIXED_AMOUNT:
            v.check(
                number is not None
                and 0 < number <= MAX_AMOUNT
                and number == number.quantize(Decimal("0.01")),
                f"{prefix}value",
                f'must be an amount above 0 and at most {MAX_AMOUNT}, e.g. "5.00"',
            )
        case RewardKind.PERCENTAGE:
            v.check(
                number is not None and 0 < number <= 100,
                f"{prefix}value",
                'must be a percentage above 0 and at most 100, e.g. "10"',
            )
        case RewardKind.FREE_SHIPPING:
            v.check(not value.strip(), f"{prefix}value", "must be empty for free shipping")
    return resolved

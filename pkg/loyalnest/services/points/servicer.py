"""gRPC surface of the Points service: validation, tenancy and proto mapping only."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from loyalnest.gen.events.v1 import core_pb2, gateway_pb2
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform import pagination, tenancy
from loyalnest.platform.errors import FailedPrecondition, NotFound
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.merchants import MerchantGate, MerchantStatus
from loyalnest.platform.protos import timestamp
from loyalnest.platform.validation import Validator
from loyalnest.services.points import offline_sync
from loyalnest.services.points.domain import (
    MAX_POINTS_PER_TRANSACTION,
    Channel,
    LimitPeriod,
    PlanFeatureRequired,
    Posting,
    Reward,
    RewardKind,
    RewardNotFound,
    Segment,
    TransactionType,
)
from loyalnest.services.points.earning import Activities, OrderEarnings
from loyalnest.services.points.expiry import PointsExpiry
from loyalnest.services.points.integrations import MAX_NAME_LENGTH, Integrations
from loyalnest.services.points.ledger import Ledger
from loyalnest.services.points.liability import (
    DEFAULT_HORIZON_DAYS,
    MAX_HORIZON_DAYS,
    LiabilityTable,
    PointsLiability,
)
from loyalnest.services.points.rewards import RewardRedemptions, plan_refusal
from loyalnest.services.points.simulation import RuleSimulation
from loyalnest.services.points.tiers import VipTiers
from loyalnest.services.points.wire import (
    CHANNELS_BY_PROTO,
    LIMIT_PERIODS_BY_PROTO,
    REWARD_KINDS_BY_PROTO,
    SEGMENTS_BY_PROTO,
    activity_award_proto,
    balance_proto,
    eligibility_proto,
    expiring_proto,
    integration_proto,
    liability_proto,
    liability_summary_proto,
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
        integrations: Integrations,
        *,
        liability_table: LiabilityTable | None = None,
        merchants: MerchantGate | None = None,
    ) -> None:
        """`merchants`: where signed activities of merchants Auth does not know (or that
        uninstalled the app) are refused; None (no Auth): they go ahead."""
        self._ledger = ledger
        self._store = ledger.store
        self._redemptions = redemptions
        self._expiry = expiry
        self._orders = orders
        self._activities = activities
        self._tiers = tiers
        self._liability = liability
        self._simulation = simulation
        self._integrations = integrations
        self._liability_table = liability_table
        self._merchants = merchants

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

    async def GetLiabilitySummary(
        self, request: points_pb2.GetLiabilitySummaryRequest, context: Context
    ) -> points_pb2.GetLiabilitySummaryResponse:
        summary = await self._liability.summary(tenancy.merchant_id(), self._liability_table)
        return liability_summary_proto(summary)

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
            if request.customer_id:
                v.identifier("customer_id", request.customer_id)
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
        totals, awards, tier_id = await self._orders.preview(
            merchant_id, order, request.customer_id
        )
        return points_pb2.PreviewEarningResponse(
            points=min(sum(a.points for a in awards), MAX_POINTS_PER_TRANSACTION),
            awards=[points_pb2.RuleAward(rule_id=a.rule_id, points=a.points) for a in awards],
            eligible_amount=str(totals.eligible_amount),
            tier_id=tier_id,
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
        with Validator() as v:
            v.idempotency_key("idempotency_key", request.idempotency_key)
            fields = _validate_reward(v, request.reward, prefix="reward.")
        assert fields is not None
        now = datetime.now(UTC)
        reward = Reward(
            merchant_id=merchant_id,
            reward_id=str(uuid.uuid5(_REWARD_IDS, f"{merchant_id}\0{request.idempotency_key}")),
            active=request.reward.active if request.reward.HasField("active") else True,
            created_at=now,
            updated_at=now,
            **fields,  # type: ignore[arg-type]
        )
        key = IdempotencyKey.of("CreateReward", request)
        refused = await self._plan_refusal(merchant_id, reward.kind, "GIFT_CARD rewards")
        if refused is not None:
            try:  # a retry of a create made before a downgrade returns it
                await self._store.get_reward(merchant_id, reward.reward_id)
            except RewardNotFound:
                raise refused from None
        created = await self._store.create_reward(reward, key.fingerprint)
        return points_pb2.CreateRewardResponse(reward=reward_proto(created))

    async def ListRewards(
        self, request: points_pb2.ListRewardsRequest, context: Context
    ) -> points_pb2.ListRewardsResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            if request.customer_id:
                v.identifier("customer_id", request.customer_id)
            channel = _channel(v, request.channel)
        scope = f"rewards/{merchant_id}/{request.active_only}"
        limit = pagination.page_size(request.page_size)
        offset = pagination.decode_page_token(request.page_token, scope) or 0
        rows = await self._store.list_rewards(
            merchant_id, active_only=request.active_only, limit=limit + 1, offset=offset
        )
        token = pagination.encode_page_token(scope, offset + limit) if len(rows) > limit else ""
        page = rows[:limit]
        response = points_pb2.ListRewardsResponse(
            rewards=[reward_proto(r) for r in page], next_page_token=token
        )
        if request.customer_id:
            answers = await self._redemptions.eligibility(
                merchant_id, request.customer_id, page, channel
            )
            response.eligibility.extend(eligibility_proto(a) for a in answers)
        return response

    async def UpdateReward(
        self, request: points_pb2.UpdateRewardRequest, context: Context
    ) -> points_pb2.UpdateRewardResponse:
        merchant_id = tenancy.merchant_id()
        r = request.reward
        paths = set(request.update_mask.paths)
        with Validator() as v:
            v.uuid("reward.reward_id", r.reward_id)
            v.update_mask("update_mask", paths, _UPDATABLE)
        current = await self._store.get_reward(merchant_id, r.reward_id)
        # The reward as it would be: every rule is checked on the whole (a kind change
        # must fit the value, scope and variant it keeps).
        merged = reward_proto(current)
        for path in paths:
            if path == "customer_limit":
                merged.customer_limit.CopyFrom(r.customer_limit)
            elif path in _REPEATED:
                merged.ClearField(path)
                getattr(merged, path).extend(getattr(r, path))
            else:
                setattr(merged, path, getattr(r, path))
        with Validator() as v:
            fields = _validate_reward(v, merged, prefix="reward.")
        assert fields is not None
        if paths & {"kind", "active"} and merged.active:
            # Making (or switching back on) a gift card needs the plan feature; other
            # changes to one a downgrade left behind do not.
            refused = await self._plan_refusal(
                merchant_id, REWARD_KINDS_BY_PROTO[merged.kind], "GIFT_CARD rewards"
            )
            if refused is not None:
                raise refused
        changes: dict[str, object] = {**fields, "active": merged.active}
        stored = {
            name
            for path in paths
            for name in (("limit_max", "limit_period") if path == "customer_limit" else (path,))
        }
        updated = await self._store.update_reward(
            merchant_id, r.reward_id, {k: v for k, v in changes.items() if k in stored}
        )
        return points_pb2.UpdateRewardResponse(reward=reward_proto(updated))

    async def _plan_refusal(
        self, merchant_id: str, kind: RewardKind, what: str
    ) -> PlanFeatureRequired | None:
        program = await self._orders.programs.get(merchant_id)
        return plan_refusal(program.plan, kind, what)

    async def RedeemReward(
        self, request: points_pb2.RedeemRewardRequest, context: Context
    ) -> points_pb2.RedeemRewardResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.uuid("reward_id", request.reward_id)
            v.identifier("customer_id", request.customer_id)
            v.idempotency_key("idempotency_key", request.idempotency_key)
            channel = _channel(v, request.channel)
        redeemed = await self._redemptions.redeem(
            merchant_id,
            request.customer_id,
            request.reward_id,
            IdempotencyKey.of("RedeemReward", request),
            channel,
        )
        redemption = redeemed.redemption
        response = points_pb2.RedeemRewardResponse(
            discount_code=redemption.discount_code,
            redemption_id=redemption.redemption_id,
            transaction=transaction_proto(redeemed.debit.transaction),
            balance=balance_proto(redeemed.debit.balance),
            reward=reward_proto(redeemed.reward),
        )
        if redemption.expires_at is not None:
            response.expire_time.CopyFrom(timestamp(redemption.expires_at))
        if redemption.gift_card_id:
            response.gift_card.CopyFrom(
                points_pb2.GiftCardIssued(
                    code=redeemed.gift_card_code,
                    last_characters=redemption.gift_card_last_characters,
                    gift_card_id=redemption.gift_card_id,
                )
            )
        return response

    # ---- merchant integrations: signed custom activities (integrations.py) ---------------

    async def CreateIntegration(
        self, request: points_pb2.CreateIntegrationRequest, context: Context
    ) -> points_pb2.CreateIntegrationResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.check(
                bool(request.name.strip())
                and len(request.name) <= MAX_NAME_LENGTH
                and request.name.isprintable(),
                "name",
                f"must be 1-{MAX_NAME_LENGTH} printable characters",
            )
            v.idempotency_key("idempotency_key", request.idempotency_key)
        integration, secret = await self._integrations.create(
            merchant_id, request.name, request.idempotency_key
        )
        return points_pb2.CreateIntegrationResponse(
            integration=integration_proto(integration), secret=secret
        )

    async def RotateIntegrationSecret(
        self, request: points_pb2.RotateIntegrationSecretRequest, context: Context
    ) -> points_pb2.RotateIntegrationSecretResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.check(_is_uuid(request.integration_id), "integration_id", "must be an integration id")
            v.idempotency_key("idempotency_key", request.idempotency_key)
        integration, secret = await self._integrations.rotate(
            merchant_id,
            request.integration_id,
            request.idempotency_key,
            revoke_previous=request.revoke_previous,
        )
        return points_pb2.RotateIntegrationSecretResponse(
            integration=integration_proto(integration), secret=secret
        )

    async def ListIntegrations(
        self, request: points_pb2.ListIntegrationsRequest, context: Context
    ) -> points_pb2.ListIntegrationsResponse:
        merchant_id = tenancy.merchant_id()
        integrations = await self._integrations.listing(merchant_id)
        return points_pb2.ListIntegrationsResponse(
            integrations=[integration_proto(i) for i in integrations]
        )

    async def RecordSignedActivity(
        self, request: points_pb2.RecordSignedActivityRequest, context: Context
    ) -> points_pb2.RecordSignedActivityResponse:
        headers = {
            key: value
            for key, value in (context.invocation_metadata() or ())
            if isinstance(value, str)
        }
        # The signature first (integrations.verify): an unsigned request learns nothing.
        activity = await self._integrations.verify(headers, request.body.data)
        if self._merchants is not None and (await self._merchants.status(activity.merchant_id)) in (
            MerchantStatus.UNKNOWN,
            MerchantStatus.UNINSTALLED,
        ):
            raise FailedPrecondition(
                "the integration's merchant has no installed shop: nothing is earned",
                violation_type="MERCHANT_INACTIVE",
                subject=f"integration/{activity.integration_id}",
            )
        results = await self._activities.record(
            activity.merchant_id,
            activity.customer_id,
            activity.activity,
            activity.occurrence_id,
            occurred_at=activity.occurred_at,
            strict=True,
        )
        return points_pb2.RecordSignedActivityResponse(
            awards=[activity_award_proto(r) for r in results]
        )


_REWARD_IDS = uuid.UUID("6f1c1f43-2d55-4d3e-9a53-0c7e1d1f9b10")
# The Reward fields UpdateReward's update_mask may name (customer_limit: the whole message).
_UPDATABLE = frozenset(
    {
        "name",
        "kind",
        "value",
        "points_cost",
        "active",
        "min_subtotal",
        "product_ids",
        "collection_ids",
        "code_expiry_days",
        "customer_limit",
        "tier_ids",
        "variant_id",
        "channels",
        "eligible_segments",
    }
)
_REPEATED = frozenset(
    {"product_ids", "collection_ids", "tier_ids", "channels", "eligible_segments"}
)
MAX_AMOUNT = Decimal(1_000_000)
MAX_SCOPE_IDS = 100
MAX_TIER_IDS = 20
MAX_CODE_EXPIRY_DAYS = 3650
MAX_REDEMPTIONS_PER_CUSTOMER = 1000
# Kinds a scope (products or collections) applies to: the others have no customerGets items.
_SCOPED = frozenset({RewardKind.FIXED_AMOUNT, RewardKind.PERCENTAGE})
_NUMERIC_ID = re.compile(r"^[1-9][0-9]{0,19}$")


def _decimal(value: str) -> Decimal | None:
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _is_money(number: Decimal | None) -> bool:
    return (
        number is not None
        and 0 < number <= MAX_AMOUNT
        and number == number.quantize(Decimal("0.01"))
    )


def shopify_gid(value: str, resource: str) -> str | None:
    """`value` as Shopify's GID of `resource` (from digits or the GID itself), else None."""
    value = value.strip()
    prefix = f"gid://shopify/{resource}/"
    number = value.removeprefix(prefix)
    return prefix + number if _NUMERIC_ID.match(number) else None


def _gids(v: Validator, field: str, values: Sequence[str], resource: str) -> tuple[str, ...]:
    found: list[str] = []
    v.check(len(values) <= MAX_SCOPE_IDS, field, f"at most {MAX_SCOPE_IDS} ids")
    for i, value in enumerate(values):
        gid = shopify_gid(value, resource)
        if v.check(
            gid is not None, f"{field}[{i}]", f"must be a Shopify {resource} id (digits or GID)"
        ):
            assert gid is not None
            v.check(gid not in found, f"{field}[{i}]", "is listed twice")
            found.append(gid)
    return tuple(found)


def _channel(v: Validator, value: int) -> Channel:
    """A request's channel: unspecified is the online store (the storefront widget and
    checkout, which predate channels), so only a POS caller needs to say where it is."""
    if value == core_pb2.SALES_CHANNEL_UNSPECIFIED:
        return Channel.ONLINE
    channel = CHANNELS_BY_PROTO.get(value)
    v.check(channel is not None, "channel", "must be SALES_CHANNEL_ONLINE or SALES_CHANNEL_POS")
    return channel or Channel.ONLINE


def _validate_reward(v: Validator, r: points_pb2.Reward, *, prefix: str) -> dict[str, object]:
    """Every field of `r` checked (BadRequest violations name `prefix` + the field); the
    Reward's values as stored (kind, GIDs, limit) for what passes."""
    v.text(f"{prefix}name", r.name, required=True)
    kind = REWARD_KINDS_BY_PROTO.get(r.kind)
    v.check(kind is not None, f"{prefix}kind", "must be a REWARD_KIND other than UNSPECIFIED")
    _validate_amount(v, r.points_cost, allow_negative=False, field=f"{prefix}points_cost")
    value = r.value.strip()
    number = _decimal(value)
    match kind:
        case RewardKind.FIXED_AMOUNT | RewardKind.GIFT_CARD:
            v.check(
                _is_money(number),
                f"{prefix}value",
                f'must be an amount above 0 and at most {MAX_AMOUNT}, e.g. "5.00"',
            )
        case RewardKind.PERCENTAGE:
            v.check(
                number is not None and 0 < number <= 100,
                f"{prefix}value",
                'must be a percentage above 0 and at most 100, e.g. "10"',
            )
        case RewardKind.FREE_SHIPPING | RewardKind.FREE_PRODUCT:
            v.check(not value, f"{prefix}value", f"must be empty for {kind.value}")
    min_subtotal = r.min_subtotal.strip()
    if min_subtotal:
        v.check(
            _is_money(_decimal(min_subtotal)),
            f"{prefix}min_subtotal",
            f'must be an amount above 0 and at most {MAX_AMOUNT}, e.g. "50.00"',
        )
        v.check(
            kind is not RewardKind.GIFT_CARD,
            f"{prefix}min_subtotal",
            "a gift card has no minimum subtotal",
        )
    products = _gids(v, f"{prefix}product_ids", r.product_ids, "Product")
    collections = _gids(v, f"{prefix}collection_ids", r.collection_ids, "Collection")
    if products or collections:
        field = f"{prefix}{'product_ids' if products else 'collection_ids'}"
        v.check(
            kind in _SCOPED,
            field,
            "only FIXED_AMOUNT and PERCENTAGE rewards apply to products or collections",
        )
        v.check(
            not (products and collections),
            f"{prefix}collection_ids",
            "products or collections, not both (Shopify applies a code to one of them)",
        )
    v.check(
        0 <= r.code_expiry_days <= MAX_CODE_EXPIRY_DAYS,
        f"{prefix}code_expiry_days",
        f"must be 0 (never) to {MAX_CODE_EXPIRY_DAYS} days",
    )
    limit = r.customer_limit
    period = LIMIT_PERIODS_BY_PROTO.get(limit.period, LimitPeriod.EVER)
    if limit.max_redemptions:
        v.check(
            0 < limit.max_redemptions <= MAX_REDEMPTIONS_PER_CUSTOMER,
            f"{prefix}customer_limit.max_redemptions",
            f"must be 1 to {MAX_REDEMPTIONS_PER_CUSTOMER} (0: no limit)",
        )
        v.check(
            limit.period in LIMIT_PERIODS_BY_PROTO,
            f"{prefix}customer_limit.period",
            "must be LIMIT_PERIOD_EVER, _DAY, _MONTH or _YEAR",
        )
    tiers = tuple(t.strip() for t in r.tier_ids)
    v.check(len(tiers) <= MAX_TIER_IDS, f"{prefix}tier_ids", f"at most {MAX_TIER_IDS} tiers")
    for i, tier_id in enumerate(tiers):
        if v.identifier(f"{prefix}tier_ids[{i}]", tier_id):
            v.check(tier_id not in tiers[:i], f"{prefix}tier_ids[{i}]", "is listed twice")
    channels: list[Channel] = []
    for i, wanted in enumerate(r.channels):
        channel = CHANNELS_BY_PROTO.get(wanted)
        at = f"{prefix}channels[{i}]"
        if v.check(channel is not None, at, "must be SALES_CHANNEL_ONLINE or SALES_CHANNEL_POS"):
            assert channel is not None
            v.check(channel not in channels, at, "is listed twice")
            channels.append(channel)
    segments: list[Segment] = []
    for i, wanted_segment in enumerate(r.eligible_segments):
        segment = SEGMENTS_BY_PROTO.get(wanted_segment)
        at = f"{prefix}eligible_segments[{i}]"
        if v.check(
            segment is not None,
            at,
            "must be RFM_SEGMENT_HIGH_VALUE, RFM_SEGMENT_AT_RISK or RFM_SEGMENT_NEW",
        ):
            assert segment is not None
            v.check(segment not in segments, at, "is listed twice")
            segments.append(segment)
    variant = ""
    if kind is RewardKind.FREE_PRODUCT:
        variant = shopify_gid(r.variant_id, "ProductVariant") or ""
        v.check(
            bool(variant),
            f"{prefix}variant_id",
            "a free product needs its Shopify product variant id (digits or GID)",
        )
    else:
        v.check(not r.variant_id, f"{prefix}variant_id", "only FREE_PRODUCT rewards have one")
    return {
        "name": r.name.strip(),
        "kind": kind,
        "value": value,
        "points_cost": r.points_cost,
        "min_subtotal": min_subtotal,
        "product_ids": products,
        "collection_ids": collections,
        "code_expiry_days": r.code_expiry_days,
        "limit_max": max(limit.max_redemptions, 0),
        "limit_period": period,
        "tier_ids": tiers,
        "variant_id": variant,
        "channels": tuple(channels),
        "eligible_segments": tuple(segments),
    }

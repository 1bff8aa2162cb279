"""gRPC surface of the Gamification service.

Handlers only: validation, the merchant from the token, the store's calls, proto mapping.
"""

from __future__ import annotations

from datetime import UTC, datetime

from loyalnest.gen.gamification.v1 import gamification_pb2 as pb
from loyalnest.gen.gamification.v1 import gamification_pb2_grpc
from loyalnest.platform import pagination, tenancy
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.validation import Validator
from loyalnest.services.gamification.domain import rule_problems
from loyalnest.services.gamification.leaderboards import Leaderboards
from loyalnest.services.gamification.store.postgres import GamificationStore
from loyalnest.services.gamification.wire import (
    PERIODS,
    badge_proto,
    board_proto,
    progress_proto,
    rule_kind,
    rule_proto,
)

# Deep pages of a million-customer board are no one's reading: offsets stay bounded.
MAX_LEADERBOARD_OFFSET = 10_000


class GamificationServicer(gamification_pb2_grpc.GamificationServiceServicer):
    def __init__(self, store: GamificationStore, leaderboards: Leaderboards) -> None:
        self._store = store
        self._leaderboards = leaderboards

    async def CreateBadgeRule(
        self, request: pb.CreateBadgeRuleRequest, context: Context
    ) -> pb.CreateBadgeRuleResponse:
        merchant_id = tenancy.merchant_id()
        rule = request.rule
        kind = rule_kind(rule.kind)
        with Validator() as v:
            if v.check(request.HasField("rule"), "rule", "is required"):
                for field, problem in rule_problems(rule.name, kind, rule.threshold, rule.segment):
                    v.check(False, field, problem)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        assert kind is not None  # the validator refused an unknown kind
        created = await self._store.create_rule(
            merchant_id,
            name=rule.name,
            kind=kind,
            threshold=rule.threshold,
            segment=rule.segment,
            key=IdempotencyKey.of("CreateBadgeRule", request),
        )
        return pb.CreateBadgeRuleResponse(rule=rule_proto(created))

    async def ListBadgeRules(
        self, request: pb.ListBadgeRulesRequest, context: Context
    ) -> pb.ListBadgeRulesResponse:
        rules = await self._store.list_rules(tenancy.merchant_id())
        return pb.ListBadgeRulesResponse(rules=[rule_proto(rule) for rule in rules])

    async def AwardBadge(
        self, request: pb.AwardBadgeRequest, context: Context
    ) -> pb.AwardBadgeResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.identifier("customer_id", request.customer_id)
            v.uuid("rule_id", request.rule_id)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        badge = await self._store.award_manually(
            merchant_id,
            request.customer_id,
            request.rule_id,
            IdempotencyKey.of("AwardBadge", request),
        )
        return pb.AwardBadgeResponse(badge=badge_proto(badge))

    async def GetCustomerBadges(
        self, request: pb.GetCustomerBadgesRequest, context: Context
    ) -> pb.GetCustomerBadgesResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.identifier("customer_id", request.customer_id)
        badges, progress = await self._store.customer_badges(merchant_id, request.customer_id)
        return pb.GetCustomerBadgesResponse(
            badges=[badge_proto(b) for b in badges],
            progress=[progress_proto(p) for p in progress],
        )

    async def GetLeaderboard(
        self, request: pb.GetLeaderboardRequest, context: Context
    ) -> pb.GetLeaderboardResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.check(request.period in PERIODS, "period", "is not a known period")
            if request.customer_id:
                v.identifier("customer_id", request.customer_id)
        period = PERIODS[request.period]
        now = datetime.now(UTC)
        size = pagination.page_size(request.page_size)
        # The scope binds a token to its merchant, board and period (a month's token is no
        # use next month) and page size.
        scope = f"leaderboard:{merchant_id}:{period.value}:{size}"
        offset = pagination.decode_page_token(request.page_token, scope) or 0
        if offset > MAX_LEADERBOARD_OFFSET:
            offset = MAX_LEADERBOARD_OFFSET
        page = await self._leaderboards.read(
            merchant_id, period, now, offset=offset, size=size, customer_id=request.customer_id
        )
        next_offset = offset + size
        token = (
            pagination.encode_page_token(scope, next_offset)
            if page.full and next_offset <= MAX_LEADERBOARD_OFFSET
            else ""
        )
        return board_proto(page, token)

    async def SetLeaderboardOptOut(
        self, request: pb.SetLeaderboardOptOutRequest, context: Context
    ) -> pb.SetLeaderboardOptOutResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.identifier("customer_id", request.customer_id)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        opted_out = await self._store.set_opt_out(
            merchant_id,
            request.customer_id,
            request.opted_out,
            IdempotencyKey.of("SetLeaderboardOptOut", request),
        )
        await self._leaderboards.publish_scores(merchant_id, request.customer_id)
        return pb.SetLeaderboardOptOutResponse(opted_out=opted_out)

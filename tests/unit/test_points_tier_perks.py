"""VIP tier perks, the grace rule and tier-only earning rules, without a database: the shared
check (platform/earning_rules.py), tiers.decide and the rules engine (services/points/rules.py).
Figures worked out in the comments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.earning_rules import (
    canonical_tier,
    check_earning_rules,
    check_grace_days,
    check_tier_perks,
    check_tier_references,
)
from loyalnest.platform.errors import InvalidArgument
from loyalnest.platform.program_settings import default_program
from loyalnest.services.core import domain as core_domain
from loyalnest.services.points.domain import TierState, Transaction, TransactionType
from loyalnest.services.points.orders import OrderEarning, OrderStatus
from loyalnest.services.points.rules import OrderFacts, RuleSet, awards_text
from loyalnest.services.points.simulation import SimulationReport, replay, validate
from loyalnest.services.points.tiers import TierPolicy, decide

NOW = datetime(2027, 3, 1, tzinfo=UTC)


def program(grace_days: int = 0, gold_multiplier: str = "1.5") -> core_pb2.ProgramSettings:
    settings = default_program()
    settings.version = 3
    settings.vip_term = core_pb2.VIP_TERM_CALENDAR_YEAR
    settings.vip_grace_days = grace_days
    settings.vip_tiers.add(tier_id="silver", name="Silver", threshold=100)
    settings.vip_tiers.add(
        tier_id="gold",
        name="Gold",
        threshold=300,
        earning_multiplier=gold_multiplier,
        entry_reward_points=50,
    )
    return settings


# ---- the shared check -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("multiplier", "reward", "fields"),
    [
        ("1.5", 50, []),
        ("", 0, []),
        ("1", 0, []),
        ("0.5", 0, ["settings.vip_tiers[0].earning_multiplier"]),
        ("11", 0, ["settings.vip_tiers[0].earning_multiplier"]),
        ("1.00001", 0, ["settings.vip_tiers[0].earning_multiplier"]),
        ("two", 0, ["settings.vip_tiers[0].earning_multiplier"]),
        ("2", -1, ["settings.vip_tiers[0].entry_reward_points"]),
        ("2", 1_000_001, ["settings.vip_tiers[0].entry_reward_points"]),
    ],
)
def test_tier_perks_are_checked(multiplier: str, reward: int, fields: list[str]) -> None:
    tier = core_pb2.VipTier(
        tier_id="t",
        name="T",
        threshold=1,
        earning_multiplier=multiplier,
        entry_reward_points=reward,
    )
    assert [v.field for v in check_tier_perks([tier])] == fields


def test_the_grace_is_0_to_365_days() -> None:
    assert check_grace_days(0) == check_grace_days(365) == []
    assert [v.field for v in check_grace_days(-1)] == ["settings.vip_grace_days"]
    assert [v.field for v in check_grace_days(366)] == ["settings.vip_grace_days"]


def test_a_multiplier_is_stored_in_one_spelling() -> None:
    tier = canonical_tier(core_pb2.VipTier(tier_id="t", earning_multiplier="1.50"))
    assert tier.earning_multiplier == "1.5"


def test_eligible_tiers_on_every_rule_type_and_must_exist() -> None:
    rules = [
        core_pb2.EarningRule(
            rule_id="gold-order",
            type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER,
            points=10,
            eligible_tiers=["gold"],
        ),
        core_pb2.EarningRule(
            rule_id="bday",
            type=core_pb2.EARNING_RULE_TYPE_BIRTHDAY,
            points=10,
            eligible_tiers=["gold"],
        ),
        core_pb2.EarningRule(
            rule_id="bad",
            type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER,
            points=10,
            eligible_tiers=["Not A Tier!", "platinum"],
        ),
    ]
    fields = [v.field for v in check_earning_rules(rules, tier_ids={"silver", "gold"})]
    # A birthday rule may be tier-only (the occasions job checks the tier when it awards).
    assert fields == [
        "settings.earning_rules[2].eligible_tiers[0]",
        "settings.earning_rules[2].eligible_tiers[1]",
    ]
    settings = program()
    settings.earning_rules.extend([rules[0], rules[2]])
    assert [v.field for v in check_tier_references(settings)] == [
        "settings.earning_rules[1].eligible_tiers[1]"  # "platinum"; the malformed one elsewhere
    ]


def test_core_refuses_a_rule_naming_a_tier_an_update_removed() -> None:
    current = program()
    current.earning_rules.add(
        rule_id="gold-order",
        type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER,
        points=10,
        eligible_tiers=["gold"],
    )
    update = core_pb2.ProgramSettings()
    update.vip_tiers.add(tier_id="silver", name="Silver", threshold=100)
    assert core_domain.validate_program_update(update, ["vip_tiers"]) == []
    with pytest.raises(InvalidArgument) as raised:
        core_domain.check_applied(core_domain.apply_update(current, update, ["vip_tiers"]))
    assert [v.field for v in raised.value.violations] == [
        "settings.earning_rules[0].eligible_tiers[0]"
    ]
    bad = core_pb2.ProgramSettings(vip_grace_days=400)
    assert [v.field for v in core_domain.validate_program_update(bad, ["vip_grace_days"])] == [
        "settings.vip_grace_days"
    ]


# ---- the grace rule -------------------------------------------------------------------------


def gold(term_end: datetime) -> TierState:
    return TierState("gold", 350, term_end, term_end - timedelta(days=100), version=2)


def test_a_downgrade_waits_for_the_grace_after_the_term() -> None:
    year_end = datetime(2027, 1, 1, tzinfo=UTC)
    policy = TierPolicy.of(program(grace_days=30))
    # 120 qualifying in the new year: Silver's, not Gold's.
    assert decide(policy, gold(year_end), 120, year_end) is None
    assert decide(policy, gold(year_end), 120, year_end + timedelta(days=29, hours=23)) is None
    after = decide(policy, gold(year_end), 120, year_end + timedelta(days=30))
    assert after is not None and after.tier_id == "silver"
    # Qualifying again within the grace: renewed for the term from then (to the next year end).
    renewed = decide(policy, gold(year_end), 300, year_end + timedelta(days=10))
    assert renewed is not None and renewed.tier_id == "gold"
    assert renewed.term_end == datetime(2028, 1, 1, tzinfo=UTC)
    # No grace: at the term's end, as before.
    down = decide(TierPolicy.of(program()), gold(year_end), 120, year_end)
    assert down is not None and down.tier_id == "silver"


def test_entry_rewards_do_not_count_towards_a_tier() -> None:
    policy = TierPolicy.of(program())

    def tx(points: int, reason: str) -> Transaction:
        return Transaction(
            transaction_id=reason,
            merchant_id="m",
            customer_id="c",
            type=TransactionType.EARN,
            points=points,
            reason=reason,
            balance_after=0,
            lifetime_earned_after=0,
            lifetime_redeemed_after=0,
            created_at=NOW,
            sequence=1,
        )

    assert policy.qualifying([tx(300, "order:1"), tx(50, "tier:gold")], NOW) == 300


# ---- the rules engine -----------------------------------------------------------------------


def facts(tier_id: str, amount: str = "100") -> OrderFacts:
    return OrderFacts(
        order_id="1001",
        customer_id="c",
        eligible=Decimal(amount),
        weighted=Decimal(amount),
        channel=core_pb2.SALES_CHANNEL_ONLINE,
        placed_at=NOW,
        base_points=int(Decimal(amount)),
        tier_id=tier_id,
    )


def test_the_tier_multiplier_is_an_award_of_its_own() -> None:
    rules = RuleSet.of(program())
    assert rules.tier_aware and not rules.base_only
    # 100.00 at 1 point per unit: 100; Gold x1.5: +50 as "vip:gold".
    gold_awards = rules.order_awards(facts("gold"), {}, NOW)
    assert awards_text(gold_awards) == "order:100,vip:gold:50"
    assert awards_text(rules.order_awards(facts("silver"), {}, NOW)) == "order:100"
    assert awards_text(rules.preview(facts("gold"))) == "order:100,vip:gold:50"
    # No multiplier above 1 and no tier-only rule: the plain path, no tier read.
    plain = RuleSet.of(program(gold_multiplier="1"))
    assert plain.base_only and not plain.tier_aware


def test_tier_only_rules_apply_to_their_tiers() -> None:
    settings = program(gold_multiplier="")
    settings.earning_rules.add(
        rule_id="base", type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER, points_per_currency_unit="1"
    )
    settings.earning_rules.add(
        rule_id="vip-bonus",
        type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER,
        enabled=True,
        points=25,
        eligible_tiers=["silver", "gold"],
    )
    settings.earning_rules.add(
        rule_id="gold-double",
        type=core_pb2.EARNING_RULE_TYPE_ORDER_MULTIPLIER,
        enabled=True,
        multiplier="2",
        eligible_tiers=["gold"],
    )
    settings.earning_rules.add(
        rule_id="review",
        type=core_pb2.EARNING_RULE_TYPE_CUSTOM_ACTIVITY,
        enabled=True,
        points=5,
        activity="review",
        eligible_tiers=["gold"],
    )
    settings.earning_rules[0].enabled = True
    rules = RuleSet.of(settings)
    assert awards_text(rules.order_awards(facts(""), {}, NOW)) == "base:100"
    assert awards_text(rules.order_awards(facts("silver"), {}, NOW)) == "base:100,vip-bonus:25"
    # Gold: the doubling applies to both PLACE_ORDER rules.
    assert awards_text(rules.preview(facts("gold"))) == "base:200,vip-bonus:50"
    assert [r.rule_id for r in rules.activity_rules("review", NOW, "gold")] == ["review"]
    assert rules.activity_rules("review", NOW, "silver") == []
    assert rules.activity_tier_aware("review")


def test_a_simulation_replays_orders_with_the_customers_tiers() -> None:
    settings = program()  # Gold x1.5, base rate 1 point per unit
    orders = [
        OrderEarning(
            merchant_id="m",
            order_id=order_id,
            customer_id=customer,
            points=100,
            eligible_amount=Decimal(100),
            currency="EUR",
            status=OrderStatus.APPROVED,
            approve_at=NOW,
            created_at=NOW,
            settings_version=1,
            awards="order:100",
            weighted_amount=Decimal(100),
        )
        for order_id, customer in (("1", "gold-customer"), ("2", "nobody"))
    ]
    report = SimulationReport(since=NOW - timedelta(days=30))
    replay(RuleSet.of(settings), orders, report, {"gold-customer": "gold"})
    assert (report.rules["order"].simulated, report.rules["vip:gold"].simulated) == (200, 50)
    with pytest.raises(InvalidArgument):
        validate(
            30,
            [
                core_pb2.EarningRule(
                    rule_id="r",
                    type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER,
                    points=5,
                    eligible_tiers=["platinum"],
                )
            ],
            {"silver", "gold"},
        )

"""The CPU an order's earning-rule evaluation costs in Points, before and after the rules
engine, measured in one process on the orders bench_orders.py sends (issue 21: at most 10 % of
Points' CPU per order).

    before   what Points computed per order before rules: `order_totals` (line amounts,
             collection multipliers, the program's rate and rounding);
    after    `order_totals` + `order_facts` + `RuleSet.order_awards`, under
             - base: the bench's programs (no rule: the implicit "order" rule), and
             - rules: five rules (rate with a minimum, a date-window multiplier, a POS-only
               bonus, a punch card and a goal, with empty histories: their store read is I/O,
               which bench_orders.py's end-to-end figures include), and
             - tiers: the five rules plus VIP tiers (Gold's earning multiplier 1.5, a
               Gold-only bonus rule, the weekend multiplier for Silver and Gold), every order's
               customer in Gold (the tier's store read is I/O, as the histories').

Rounds alternate before/after so that a neighbour's load hits both alike; each figure is the
fastest round's CPU time (process_time) per order, in microseconds.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ingress import DeliveryFactory

from loyalnest.gen.events.v1 import core_pb2, gateway_pb2
from loyalnest.platform import shopify_payloads
from loyalnest.platform.program_settings import default_program
from loyalnest.services.points.orders import order_facts, order_totals
from loyalnest.services.points.rules import RuleSet

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)


def _orders(count: int, seed: int) -> list[gateway_pb2.ShopifyOrder]:
    """The bench's orders as Points receives them (webhook.received content)."""
    factory = DeliveryFactory("rule-cost", 0, 1, seed)
    return [shopify_payloads.read_order(json.loads(factory.next()[0])) for _ in range(count)]


def bonus_rules() -> list[core_pb2.EarningRule]:
    """A POS-only bonus (never applies: the bench's orders are online), a punch card (every
    5th order) and a goal (500 within 30 days): the rules both this and bench_orders' tiered
    program evaluate on every order."""
    rule = core_pb2.EarningRule
    return [
        rule(
            rule_id="pos",
            enabled=True,
            type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER,
            points=15,
            channels=[core_pb2.SALES_CHANNEL_POS],
        ),
        rule(
            rule_id="punch",
            enabled=True,
            type=core_pb2.EARNING_RULE_TYPE_PUNCH_CARD,
            points=50,
            punch_count=5,
        ),
        rule(
            rule_id="goal",
            enabled=True,
            type=core_pb2.EARNING_RULE_TYPE_GOAL_SPEND,
            points=25,
            min_spend="500",
            goal_period={"seconds": 30 * 86400},
        ),
    ]


def _rich(program: core_pb2.ProgramSettings) -> core_pb2.ProgramSettings:
    rich = core_pb2.ProgramSettings()
    rich.CopyFrom(program)
    rich.version = 2
    rule = core_pb2.EarningRule
    start, end = NOW - timedelta(days=1), NOW + timedelta(days=1)
    rich.earning_rules.extend(
        [
            rule(
                rule_id="spend",
                enabled=True,
                type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER,
                points_per_currency_unit="1",
                min_spend="20",
            ),
            rule(
                rule_id="weekend",
                enabled=True,
                type=core_pb2.EARNING_RULE_TYPE_ORDER_MULTIPLIER,
                multiplier="2",
                start_time=start,
                end_time=end,
            ),
            *bonus_rules(),
        ]
    )
    return rich


def _tiered(rich: core_pb2.ProgramSettings) -> core_pb2.ProgramSettings:
    tiered = core_pb2.ProgramSettings()
    tiered.CopyFrom(rich)
    tiered.version = 3
    tiered.vip_tiers.add(tier_id="silver", name="Silver", threshold=100)
    tiered.vip_tiers.add(tier_id="gold", name="Gold", threshold=300, earning_multiplier="1.5")
    tiered.earning_rules[1].eligible_tiers.extend(["silver", "gold"])
    tiered.earning_rules.add(
        rule_id="gold-bonus",
        enabled=True,
        type=core_pb2.EARNING_RULE_TYPE_PLACE_ORDER,
        points=10,
        eligible_tiers=["gold"],
    )
    return tiered


def measure(seed: int | None = None, count: int = 2000, rounds: int = 15) -> dict[str, Any]:
    orders = _orders(count, random.randrange(1 << 30) if seed is None else seed)
    base = default_program()
    base.version = 1
    rich = _rich(base)
    tiered = _tiered(rich)
    rule_sets = {"base": RuleSet.of(base), "rules": RuleSet.of(rich), "tiers": RuleSet.of(tiered)}
    programs = {"base": base, "rules": rich, "tiers": tiered}

    def before() -> None:
        for order in orders:
            order_totals(order, base)

    def after(name: str) -> Callable[[], None]:
        program, rules = programs[name], rule_sets[name]
        tier_id = "gold" if name == "tiers" else ""

        def run() -> None:
            # As OrderEarnings._awards evaluates (the store read aside).
            for order in orders:
                totals = order_totals(order, program)
                if rules.base_only:
                    rules.base_awards(totals.points)
                    continue
                facts = order_facts(order, totals, NOW, placed_time=rules.windowed, tier_id=tier_id)
                rules.order_awards(facts, {}, NOW)

        return run

    runs = {
        "before": before,
        "after_base": after("base"),
        "after_rules": after("rules"),
        "after_tiers": after("tiers"),
    }
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - started)
    per_order = {name: seconds / count * 1e6 for name, seconds in best.items()}
    return {
        "orders": count,
        "rounds": rounds,
        "us_per_order": {k: round(v, 1) for k, v in per_order.items()},
        "ratio_base": round(per_order["after_base"] / per_order["before"], 2),
        "ratio_rules": round(per_order["after_rules"] / per_order["before"], 2),
        "ratio_tiers": round(per_order["after_tiers"] / per_order["before"], 2),
        "added_us_base": round(per_order["after_base"] - per_order["before"], 1),
        "added_us_rules": round(per_order["after_rules"] - per_order["before"], 1),
        "added_us_tiers": round(per_order["after_tiers"] - per_order["before"], 1),
    }


def render(cost: dict[str, Any], points_us_per_order: float | None = None) -> list[str]:
    us = cost["us_per_order"]
    lines = [
        f"rule evaluation CPU per order ({cost['orders']} bench orders, best of "
        f"{cost['rounds']} rounds): before {us['before']:.1f} us; after, no rules "
        f"{us['after_base']:.1f} us ({cost['ratio_base']:.2f}x), five rules "
        f"{us['after_rules']:.1f} us ({cost['ratio_rules']:.2f}x), with tiers "
        f"{us['after_tiers']:.1f} us ({cost['ratio_tiers']:.2f}x)",
    ]
    if points_us_per_order:
        lines.append(
            f"  added vs Points' CPU per order ({points_us_per_order:.0f} us end to end): "
            f"no rules {100 * cost['added_us_base'] / points_us_per_order:+.1f} %, "
            f"five rules {100 * cost['added_us_rules'] / points_us_per_order:+.1f} %, "
            f"with tiers {100 * cost['added_us_tiers'] / points_us_per_order:+.1f} %"
        )
    return lines


if __name__ == "__main__":
    print("\n".join(render(measure())))

"""Which rewards price a point in the liability (points/liability.py: point_value)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

from loyalnest.services.points.domain import Reward, RewardKind
from loyalnest.services.points.liability import point_value

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def reward(reward_id: str, kind: RewardKind, value: str, cost: int, **fields: object) -> Reward:
    base = Reward("m", reward_id, reward_id, kind, value, cost, True, NOW, NOW)
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def test_gift_cards_price_points_like_amounts_off() -> None:
    rewards = [
        reward("five", RewardKind.FIXED_AMOUNT, "5.00", 500),  # 0.01
        reward("card", RewardKind.GIFT_CARD, "10.00", 800),  # 0.0125
        reward("pct", RewardKind.PERCENTAGE, "50", 1),
        reward("mug", RewardKind.FREE_PRODUCT, "", 1, variant_id="gid://shopify/ProductVariant/1"),
    ]
    value = point_value(rewards)
    assert (value.per_point, value.reward_id) == (Decimal("0.0125"), "card")


def test_rewards_not_open_to_every_point_price_nothing() -> None:
    rewards = [
        reward("five", RewardKind.FIXED_AMOUNT, "5.00", 500),
        reward("gold", RewardKind.FIXED_AMOUNT, "50.00", 500, tier_ids=("gold",)),
        reward("once", RewardKind.GIFT_CARD, "50.00", 500, limit_max=1),
        reward("off", RewardKind.GIFT_CARD, "50.00", 500, active=False),
        # Conditions on the purchase still leave money off it.
        reward(
            "min",
            RewardKind.FIXED_AMOUNT,
            "8.00",
            500,
            min_subtotal="40.00",
            product_ids=("gid://shopify/Product/1",),
            code_expiry_days=30,
        ),
    ]
    value = point_value(rewards)
    assert (value.per_point, value.reward_id) == (Decimal("0.016"), "min")

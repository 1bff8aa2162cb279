"""Core's domain rules: program validation and updates, limit thresholds, order reasons."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from google.protobuf import duration_pb2

from loyalnest.gen.events.v1 import core_pb2 as core_events
from loyalnest.platform.program_settings import default_program
from loyalnest.services.core import domain
from loyalnest.services.core.service import CoreSettings, PlanDefinition

FREE = core_events.PlanLimits(plan="free", customers_limit=100, orders_per_month_limit=500)


def _fields(settings: core_events.ProgramSettings, *paths: str) -> set[str]:
    return {v.field for v in domain.validate_program_update(settings, paths)}


@pytest.mark.parametrize(
    ("settings", "paths", "fields"),
    [
        (
            core_events.ProgramSettings(points_per_currency_unit="-1"),
            ["points_per_currency_unit"],
            {"settings.points_per_currency_unit"},
        ),
        (
            core_events.ProgramSettings(points_per_currency_unit="abc"),
            ["points_per_currency_unit"],
            {"settings.points_per_currency_unit"},
        ),
        (
            core_events.ProgramSettings(points_per_currency_unit="NaN"),
            ["points_per_currency_unit"],
            {"settings.points_per_currency_unit"},
        ),
        (
            core_events.ProgramSettings(points_per_currency_unit="1.00001"),
            ["points_per_currency_unit"],
            {"settings.points_per_currency_unit"},
        ),
        (
            core_events.ProgramSettings(rounding=core_events.POINTS_ROUNDING_UNSPECIFIED),
            ["rounding"],
            {"settings.rounding"},
        ),
        (core_events.ProgramSettings(rounding=42), ["rounding"], {"settings.rounding"}),  # type: ignore[arg-type]
        (
            core_events.ProgramSettings(signup_bonus_points=-5),
            ["signup_bonus_points"],
            {"settings.signup_bonus_points"},
        ),
        (
            core_events.ProgramSettings(points_expiry_days=-1),
            ["points_expiry_days"],
            {"settings.points_expiry_days"},
        ),
        (
            core_events.ProgramSettings(pending_period=duration_pb2.Duration(seconds=-1)),
            ["pending_period"],
            {"settings.pending_period"},
        ),
        (core_events.ProgramSettings(version=3), ["version", "plan"], {"update_mask"}),
        (
            core_events.ProgramSettings(timezone="Mars/Olympus_Mons"),
            ["timezone"],
            {"settings.timezone"},
        ),
        (core_events.ProgramSettings(), [], {"update_mask"}),
        (
            core_events.ProgramSettings(
                multipliers=[
                    core_events.EarningMultiplier(
                        collection_id="c1", product_ids=["p1"], multiplier="0"
                    ),
                    core_events.EarningMultiplier(
                        collection_id="c1", product_ids=[], multiplier="-2"
                    ),
                    core_events.EarningMultiplier(
                        collection_id="bad id", product_ids=["p 2"], multiplier="2"
                    ),
                ]
            ),
            ["multipliers"],
            {
                "settings.multipliers[0].multiplier",
                "settings.multipliers[1].collection_id",
                "settings.multipliers[1].product_ids",
                "settings.multipliers[1].multiplier",
                "settings.multipliers[2].collection_id",
                "settings.multipliers[2].product_ids",
            },
        ),
    ],
)
def test_invalid_program_updates_name_every_bad_field(settings, paths, fields):
    assert _fields(settings, *paths) == fields


def test_only_named_fields_are_checked_and_taken():
    current = default_program(FREE)
    update = core_events.ProgramSettings(
        points_per_currency_unit="2.50",
        signup_bonus_points=-1,  # not in the mask: neither checked nor taken
        multipliers=[
            core_events.EarningMultiplier(
                collection_id="gid://shopify/Collection/1",
                product_ids=["1", "1", "2"],
                multiplier="2.0",
            )
        ],
    )
    paths = ["points_per_currency_unit", "multipliers"]
    assert domain.validate_program_update(update, paths) == []
    after = domain.apply_update(current, update, paths)
    assert after.points_per_currency_unit == "2.5"
    assert after.signup_bonus_points == 0
    assert [(m.collection_id, list(m.product_ids), m.multiplier) for m in after.multipliers] == [
        ("gid://shopify/Collection/1", ["1", "2"], "2")
    ]
    assert after.plan == FREE and after.version == current.version


def test_a_change_is_a_difference_or_the_first_save():
    never_saved = default_program(FREE)
    assert domain.is_change(never_saved, never_saved)
    saved = core_events.ProgramSettings()
    saved.CopyFrom(never_saved)
    saved.version = 4
    same = core_events.ProgramSettings()
    same.CopyFrom(saved)
    same.version = 5
    assert not domain.is_change(saved, same)
    assert domain.is_change(saved, domain.with_plan(saved, core_events.PlanLimits(plan="plus")))


@pytest.mark.parametrize(
    ("used", "limit", "reached"),
    [
        (3, 5, []),
        (4, 5, [80]),
        (5, 5, [80, 100]),
        (6, 5, [80, 100]),
        (399, 500, []),
        (400, 500, [80]),
        (10**6, 0, []),
    ],
)
def test_warning_thresholds(used, limit, reached):
    assert domain.thresholds_reached(used, limit) == reached


@pytest.mark.parametrize(
    ("reason", "order_id"),
    [
        ("order:1001", "1001"),
        ("order: 77 ", "77"),
        ("order:", None),
        ("referral:9", None),
        ("", None),
        ("Order:1", None),
    ],
)
def test_orders_are_recognised_by_their_reason_prefix(reason, order_id):
    assert domain.order_id_from_reason(reason) == order_id


def test_periods_are_utc_months_and_customers_count_all_time():
    late_evening = datetime(2026, 11, 30, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert domain.period_of(domain.ORDERS_PER_MONTH, late_evening) == "2026-12"
    assert domain.period_of(domain.CUSTOMERS, datetime.now(UTC)) == domain.ALL_TIME


def test_plans_come_from_configuration():
    settings = CoreSettings(
        core_plans={"free": PlanDefinition(customers_limit=5), "gold": PlanDefinition()},
        core_default_plan="gold",
    )
    catalogue = settings.plan_catalogue()
    assert catalogue.default_plan() == core_events.PlanLimits(plan="gold", gift_card_rewards=False)
    assert catalogue.names() == ["free", "gold"]
    assert catalogue.get("nope") is None
    with pytest.raises(ValueError, match="LOYALNEST_CORE_DEFAULT_PLAN"):
        CoreSettings(core_default_plan="platinum")


# ---- Shopify Billing (issue 14) -----------------------------------------------------------


def _update_body(status: str, updated_at: str = "2026-11-02T10:00:00-05:00") -> bytes:
    return json.dumps(
        {
            "app_subscription": {
                "admin_graphql_api_id": "gid://shopify/AppSubscription/7",
                "name": "LoyalNest plus",
                "status": status,
                "created_at": "2026-11-01T10:00:00-05:00",
                "updated_at": updated_at,
            }
        }
    ).encode()


def test_a_subscription_update_is_read_from_shopifys_body() -> None:
    update = domain.parse_subscription_update(_update_body("active"))
    assert update == domain.SubscriptionUpdate(
        "gid://shopify/AppSubscription/7",
        "LoyalNest plus",
        "ACTIVE",
        datetime(2026, 11, 2, 15, 0, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"app_subscription": {}}',
        _update_body("PAID"),
        _update_body("ACTIVE", updated_at="2026-11-02T10:00:00"),  # no offset
        json.dumps(
            {
                "app_subscription": {
                    "admin_graphql_api_id": "gid://shopify/Order/1",
                    "status": "ACTIVE",
                    "updated_at": "2026-11-02T10:00:00Z",
                }
            }
        ).encode(),
    ],
)
def test_anything_else_is_no_subscription_update(body: bytes) -> None:
    assert domain.parse_subscription_update(body) is None


def test_final_statuses_are_never_left_and_older_reports_lose() -> None:
    now = datetime(2026, 11, 2, tzinfo=UTC)

    def update(status: str, at: datetime) -> domain.SubscriptionUpdate:
        return domain.SubscriptionUpdate("gid://shopify/AppSubscription/7", "", status, at)

    later = now + timedelta(minutes=1)
    assert domain.status_change_applies("PENDING", None, update("ACTIVE", now))
    assert domain.status_change_applies("ACTIVE", now, update("FROZEN", later))
    assert domain.status_change_applies("FROZEN", now, update("ACTIVE", later))
    assert not domain.status_change_applies("ACTIVE", now, update("ACTIVE", later))  # repeated
    assert not domain.status_change_applies("ACTIVE", later, update("CANCELLED", now))  # older
    for final in ("CANCELLED", "DECLINED", "EXPIRED"):
        assert not domain.status_change_applies(final, now, update("ACTIVE", later))


def test_the_default_plan_must_be_free() -> None:
    with pytest.raises(ValueError, match="must be free"):
        CoreSettings(
            core_plans={"free": PlanDefinition(price=Decimal("5"))}, core_default_plan="free"
        )
    catalogue = CoreSettings().plan_catalogue()
    assert catalogue.price("free") is None
    assert catalogue.price("plus") == domain.PlanPrice(Decimal("29.00"), "USD", "EVERY_30_DAYS")

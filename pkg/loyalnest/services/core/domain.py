"""Core: the loyalty program, plans and their usage, customers; no gRPC, no PostgreSQL.

The program is held as `loyalnest.events.v1.ProgramSettings`, the message that
program_settings.updated carries and the API returns, so no mapping can drift between what a
merchant saves, what Core stores and what Points copies.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from loyalnest.gen.events.v1 import core_pb2 as core_events
from loyalnest.gen.events.v1 import rfm_pb2
from loyalnest.platform.earning_rules import (
    MAX_MULTIPLIER,
    MAX_POINTS_PER_CURRENCY_UNIT,
    RULE_ID_RE,
    RULE_ID_RULE,
    canonical_decimal,
    canonical_rule,
    canonical_tier,
    check_decimal,
    check_earning_rules,
    check_grace_days,
    check_tier_perks,
    check_tier_references,
    decimal_text,
    is_timezone,
)
from loyalnest.platform.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
)

ProgramSettings = core_events.ProgramSettings
PlanLimits = core_events.PlanLimits

# points.earned whose reason starts with this credited an order; the rest is the order id
# ("order:1001"). Points writes it so; Core counts the distinct orders per month from it.
ORDER_REASON_PREFIX = "order:"

CUSTOMERS = "customers"
ORDERS_PER_MONTH = "orders_per_month"
# Customers are counted since the start, not per month.
ALL_TIME = "all"
# A plan_limit_warning when usage reaches these percentages of a limit.
WARNING_THRESHOLDS = (80, 100)

# The fields UpdateProgramSettings may change (version and plan may not).
UPDATABLE_FIELDS = frozenset(
    {
        "program_enabled",
        "points_per_currency_unit",
        "rounding",
        "signup_bonus_points",
        "multipliers",
        "points_expiry_days",
        "pending_period",
        "points_expiry_mode",
        "points_expiry_notice_days",
        "earning_rules",
        "referral",
        "vip_tiers",
        "vip_metric",
        "vip_term",
        "timezone",
        "vip_grace_days",
    }
)
EXPIRY_MODES = frozenset(
    {
        core_events.POINTS_EXPIRY_MODE_AFTER_EARNED,
        core_events.POINTS_EXPIRY_MODE_AFTER_INACTIVITY,
    }
)
ROUNDINGS = frozenset(
    {
        core_events.POINTS_ROUNDING_DOWN,
        core_events.POINTS_ROUNDING_NEAREST,
        core_events.POINTS_ROUNDING_UP,
    }
)
MAX_SIGNUP_BONUS = 1_000_000
MAX_EXPIRY_DAYS = 3650
MAX_PENDING_PERIOD = timedelta(days=365)
MAX_MULTIPLIERS = 100
MAX_PRODUCTS_PER_COLLECTION = 1000
# Shopify ids, numeric ("123") or global ("gid://shopify/Collection/123").
SHOPIFY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,254}$")
SHOPIFY_ID_RULE = "must be 1-255 characters of letters, digits and _ . : / @ -"
# Customers' and tiers' names (an earning rule's: platform/earning_rules.py).
MAX_NAME_LENGTH = 100
# The referral program (ProgramSettings.referral, kept by Referrals).
MAX_REFERRAL_POINTS = 1_000_000
MAX_REFERRAL_PERCENTAGE = Decimal(100)
MAX_REFERRAL_AMOUNT = Decimal(100_000)
MAX_MILESTONES = 20
MAX_MILESTONE_REFERRALS = 10_000
MAX_DAILY_INVITES = 100_000


# --- plans -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanPrice:
    """What a paid plan costs, charged through Shopify Billing (a recurring subscription)."""

    amount: Decimal
    currency_code: str
    # Shopify's AppPricingInterval: EVERY_30_DAYS or ANNUAL.
    interval: str


class PlanCatalogue:
    """The plans merchants may be on, from configuration (LOYALNEST_CORE_PLANS)."""

    def __init__(
        self,
        plans: Mapping[str, PlanLimits],
        default: str,
        prices: Mapping[str, PlanPrice] | None = None,
    ) -> None:
        if default not in plans:
            raise ValueError(f"the default plan {default!r} is not among {sorted(plans)}")
        self._plans = dict(plans)
        self.default = default
        self._prices = {name: price for name, price in (prices or {}).items() if price.amount}
        if default in self._prices:
            # Every merchant starts on it without approving any charge.
            raise ValueError(f"the default plan {default!r} must be free")

    def price(self, name: str) -> PlanPrice | None:
        """The plan's price; None for a free plan (it applies without Shopify Billing)."""
        return self._prices.get(name)

    def get(self, name: str) -> PlanLimits | None:
        plan = self._plans.get(name)
        if plan is None:
            return None
        copy = PlanLimits()
        copy.CopyFrom(plan)
        copy.plan = name
        return copy

    def names(self) -> list[str]:
        return sorted(self._plans)

    def all(self) -> list[PlanLimits]:
        return [plan for name in self.names() if (plan := self.get(name)) is not None]

    def default_plan(self) -> PlanLimits:
        plan = self.get(self.default)
        assert plan is not None  # checked in __init__
        return plan


@dataclass(frozen=True)
class MetricUsage:
    """How much of a plan's limit a merchant used in a period."""

    metric: str
    period: str
    used: int
    limit: int


def limit_of(plan: PlanLimits, metric: str) -> int:
    """The plan's limit of a metric; zero is unlimited."""
    return plan.customers_limit if metric == CUSTOMERS else plan.orders_per_month_limit


def month_period(moment: datetime) -> str:
    """The calendar month (UTC) a moment counts in, e.g. "2026-11"."""
    return moment.astimezone(UTC).strftime("%Y-%m")


def period_of(metric: str, moment: datetime) -> str:
    return ALL_TIME if metric == CUSTOMERS else month_period(moment)


def thresholds_reached(used: int, limit: int) -> list[int]:
    """The warning thresholds (percent) that `used` has reached; none when unlimited."""
    if limit <= 0:
        return []
    # Integer arithmetic: 80 % of 5 is reached at 4, not at 4.000000001.
    return [t for t in WARNING_THRESHOLDS if used * 100 >= t * limit]


def order_id_from_reason(reason: str) -> str | None:
    """The order a points.earned credited, or None when it was no order (a referral...)."""
    if not reason.startswith(ORDER_REASON_PREFIX):
        return None
    order_id = reason[len(ORDER_REASON_PREFIX) :].strip()
    return order_id or None


class CustomersLimitReached(QuotaExceeded):
    def __init__(self, merchant_id: str, plan: PlanLimits) -> None:
        super().__init__(
            f"the {plan.plan!r} plan allows {plan.customers_limit} customers and all are used;"
            " change the plan (POST /v1/api/core/plan) to register more",
            subject=f"merchant:{merchant_id}/{CUSTOMERS}",
        )


# --- Shopify Billing (paid plans) ---------------------------------------------------------

# AppSubscriptionStatus. PENDING: created, waiting for the merchant's approval; ACTIVE: approved
# (and charged); FROZEN: the shop's own Shopify bill is unpaid; the others are final.
SUBSCRIPTION_PENDING = "PENDING"
SUBSCRIPTION_ACTIVE = "ACTIVE"
SUBSCRIPTION_FROZEN = "FROZEN"
# The statuses a subscription never leaves (FROZEN does: it thaws to ACTIVE once paid).
SUBSCRIPTION_FINAL = frozenset({"CANCELLED", "DECLINED", "EXPIRED"})
# An active subscription in one of these no longer pays for its plan.
SUBSCRIPTION_ENDED = frozenset({"CANCELLED", "EXPIRED", "FROZEN"})
SUBSCRIPTION_STATUSES = frozenset(
    {
        SUBSCRIPTION_PENDING,
        SUBSCRIPTION_ACTIVE,
        "ACCEPTED",
        *SUBSCRIPTION_FINAL,
        SUBSCRIPTION_FROZEN,
    }
)
SUBSCRIPTION_NAME_PREFIX = "LoyalNest "


def subscription_name(plan: str) -> str:
    """The subscription's name at Shopify, shown to the merchant on the approval page."""
    return SUBSCRIPTION_NAME_PREFIX + plan


class PlanChangeStatus(enum.Enum):
    APPLIED = "applied"
    PENDING_APPROVAL = "pending_approval"


@dataclass(frozen=True)
class PlanChange:
    """What a ChangePlan did: the program now, and for a paid plan where to approve it."""

    settings: ProgramSettings
    status: PlanChangeStatus
    subscription_id: str = ""
    confirmation_url: str = ""


@dataclass(frozen=True)
class NewSubscription:
    """Shopify's answer to appSubscriptionCreate."""

    subscription_id: str
    confirmation_url: str
    status: str
    test: bool


@dataclass(frozen=True)
class SubscriptionUpdate:
    """An app_subscriptions/update webhook: a subscription's status at a moment."""

    subscription_id: str
    name: str
    status: str
    updated_at: datetime


def parse_subscription_update(body: bytes) -> SubscriptionUpdate | None:
    """The update an app_subscriptions/update body reports; None when it is not one (the
    signature proves who sent it, not that it is well formed)."""
    try:
        data = json.loads(body)
        sub = data["app_subscription"]
        subscription_id = sub["admin_graphql_api_id"]
        status = str(sub["status"]).upper()
        updated_at = datetime.fromisoformat(sub.get("updated_at") or sub["created_at"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if (
        not isinstance(subscription_id, str)
        or not subscription_id.startswith("gid://shopify/AppSubscription/")
        or status not in SUBSCRIPTION_STATUSES
        or updated_at.tzinfo is None
    ):
        return None
    name = sub.get("name")
    return SubscriptionUpdate(
        subscription_id, name if isinstance(name, str) else "", status, updated_at
    )


def status_change_applies(
    current_status: str, current_updated_at: datetime | None, update: SubscriptionUpdate
) -> bool:
    """Whether `update` is news for a subscription now in `current_status`: a final status
    is never left, and an update older than the last one applied (Shopify does not promise
    order, and redelivers) changes nothing."""
    if current_status in SUBSCRIPTION_FINAL:
        return False
    if current_updated_at is not None and update.updated_at < current_updated_at:
        return False
    return update.status != current_status or current_updated_at is None


class SubscriptionRefused(FailedPrecondition):
    """Shopify refused the subscription (userErrors): the request cannot succeed as it is."""

    def __init__(self, merchant_id: str, errors: str) -> None:
        super().__init__(
            f"Shopify refused the plan's subscription: {errors}",
            violation_type="BILLING_REFUSED",
            subject=f"merchant/{merchant_id}",
        )


# --- the program -------------------------------------------------------------------------
# Earning rules and the program's decimals are checked by loyalnest.platform.earning_rules
# (shared with Points' simulation); the rest of the program here.


MAX_VIP_TIERS = 10
MAX_TAG_LENGTH = 40


def _check_tiers(violations: list[FieldViolation], tiers: Sequence[core_events.VipTier]) -> None:
    field = "settings.vip_tiers"
    if len(tiers) > MAX_VIP_TIERS:
        violations.append(FieldViolation(field, f"at most {MAX_VIP_TIERS} tiers"))
    seen: set[str] = set()
    previous = 0
    for index, tier in enumerate(tiers):
        at = f"{field}[{index}]"
        if not RULE_ID_RE.match(tier.tier_id):
            violations.append(FieldViolation(f"{at}.tier_id", RULE_ID_RULE))
        elif tier.tier_id in seen:
            violations.append(FieldViolation(f"{at}.tier_id", "names a tier already listed"))
        seen.add(tier.tier_id)
        if not tier.name.strip() or len(tier.name) > MAX_NAME_LENGTH:
            violations.append(FieldViolation(f"{at}.name", f"1 to {MAX_NAME_LENGTH} characters"))
        if not previous < tier.threshold <= 10**12:
            violations.append(
                FieldViolation(f"{at}.threshold", "must be positive and above the previous tier's")
            )
        previous = max(previous, tier.threshold)
        tag = tier.shopify_tag
        if len(tag) > MAX_TAG_LENGTH or "," in tag or (tag and not tag.strip()):
            violations.append(
                FieldViolation(
                    f"{at}.shopify_tag", f"at most {MAX_TAG_LENGTH} characters, no comma"
                )
            )


def _check_multipliers(
    violations: list[FieldViolation], multipliers: Sequence[core_events.EarningMultiplier]
) -> None:
    field = "settings.multipliers"
    if len(multipliers) > MAX_MULTIPLIERS:
        violations.append(FieldViolation(field, f"at most {MAX_MULTIPLIERS} multipliers"))
    seen: set[str] = set()
    for index, rule in enumerate(multipliers):
        at = f"{field}[{index}]"
        if not SHOPIFY_ID_RE.match(rule.collection_id):
            violations.append(FieldViolation(f"{at}.collection_id", SHOPIFY_ID_RULE))
        elif rule.collection_id in seen:
            violations.append(
                FieldViolation(f"{at}.collection_id", "names a collection already listed")
            )
        seen.add(rule.collection_id)
        if not rule.product_ids:
            violations.append(
                FieldViolation(f"{at}.product_ids", "must name the collection's products")
            )
        elif len(rule.product_ids) > MAX_PRODUCTS_PER_COLLECTION:
            violations.append(
                FieldViolation(
                    f"{at}.product_ids", f"at most {MAX_PRODUCTS_PER_COLLECTION} products"
                )
            )
        elif not all(SHOPIFY_ID_RE.match(p) for p in rule.product_ids):
            violations.append(FieldViolation(f"{at}.product_ids", f"each {SHOPIFY_ID_RULE}"))
        check_decimal(
            violations, f"{at}.multiplier", rule.multiplier, positive=True, maximum=MAX_MULTIPLIER
        )


def _check_referral(violations: list[FieldViolation], program: core_events.ReferralProgram) -> None:
    at = "settings.referral"
    if not 0 <= program.referrer_reward_points <= MAX_REFERRAL_POINTS:
        violations.append(
            FieldViolation(f"{at}.referrer_reward_points", f"must be 0 to {MAX_REFERRAL_POINTS}")
        )
    value = program.friend_discount_value
    match program.friend_discount_type:
        case core_events.REFERRAL_DISCOUNT_TYPE_PERCENTAGE:
            check_decimal(
                violations,
                f"{at}.friend_discount_value",
                value,
                positive=True,
                maximum=MAX_REFERRAL_PERCENTAGE,
            )
        case core_events.REFERRAL_DISCOUNT_TYPE_FIXED_AMOUNT:
            check_decimal(
                violations,
                f"{at}.friend_discount_value",
                value,
                positive=True,
                maximum=MAX_REFERRAL_AMOUNT,
            )
        case _:
            if value and canonical_decimal(value) != 0:
                violations.append(
                    FieldViolation(
                        f"{at}.friend_discount_type",
                        "must be REFERRAL_DISCOUNT_TYPE_PERCENTAGE or"
                        " REFERRAL_DISCOUNT_TYPE_FIXED_AMOUNT when friend_discount_value is set",
                    )
                )
    if len(program.milestones) > MAX_MILESTONES:
        violations.append(FieldViolation(f"{at}.milestones", f"at most {MAX_MILESTONES}"))
    seen: set[int] = set()
    for index, milestone in enumerate(program.milestones):
        where = f"{at}.milestones[{index}]"
        if not 0 < milestone.referrals <= MAX_MILESTONE_REFERRALS:
            violations.append(
                FieldViolation(f"{where}.referrals", f"must be 1 to {MAX_MILESTONE_REFERRALS}")
            )
        elif milestone.referrals in seen:
            violations.append(FieldViolation(f"{where}.referrals", "appears twice"))
        seen.add(milestone.referrals)
        if not 0 < milestone.bonus_points <= MAX_REFERRAL_POINTS:
            violations.append(
                FieldViolation(f"{where}.bonus_points", f"must be 1 to {MAX_REFERRAL_POINTS}")
            )
    if not 0 <= program.code_expiry_days <= MAX_EXPIRY_DAYS:
        violations.append(
            FieldViolation(f"{at}.code_expiry_days", f"must be 0 (never) to {MAX_EXPIRY_DAYS}")
        )
    for name in ("daily_invites_per_referrer", "daily_invites_per_merchant"):
        if not 0 <= getattr(program, name) <= MAX_DAILY_INVITES:
            violations.append(
                FieldViolation(f"{at}.{name}", f"must be 0 (unlimited) to {MAX_DAILY_INVITES}")
            )


def validate_program_update(
    settings: ProgramSettings, paths: Iterable[str]
) -> list[FieldViolation]:
    """Every violation of the fields an update names (only those are taken from `settings`)."""
    paths = set(paths)
    violations: list[FieldViolation] = []
    if not paths:
        return [FieldViolation("update_mask", "must name the fields to change")]
    unknown = sorted(paths - UPDATABLE_FIELDS)
    if unknown:
        violations.append(
            FieldViolation(
                "update_mask",
                f"cannot change {', '.join(unknown)}; changeable:"
                f" {', '.join(sorted(UPDATABLE_FIELDS))}"
                + (" (the plan changes through ChangePlan)" if "plan" in unknown else ""),
            )
        )
    if "points_per_currency_unit" in paths:
        check_decimal(
            violations,
            "settings.points_per_currency_unit",
            settings.points_per_currency_unit,
            positive=False,
            maximum=MAX_POINTS_PER_CURRENCY_UNIT,
        )
    if "rounding" in paths and settings.rounding not in ROUNDINGS:
        violations.append(
            FieldViolation(
                "settings.rounding",
                "must be POINTS_ROUNDING_DOWN, POINTS_ROUNDING_NEAREST or POINTS_ROUNDING_UP",
            )
        )
    if "signup_bonus_points" in paths and not 0 <= settings.signup_bonus_points <= MAX_SIGNUP_BONUS:
        violations.append(
            FieldViolation("settings.signup_bonus_points", f"must be 0 to {MAX_SIGNUP_BONUS}")
        )
    if "points_expiry_days" in paths and not 0 <= settings.points_expiry_days <= MAX_EXPIRY_DAYS:
        violations.append(
            FieldViolation(
                "settings.points_expiry_days", f"must be 0 (never) to {MAX_EXPIRY_DAYS} days"
            )
        )
    if "points_expiry_mode" in paths and settings.points_expiry_mode not in EXPIRY_MODES:
        violations.append(
            FieldViolation(
                "settings.points_expiry_mode",
                "must be POINTS_EXPIRY_MODE_AFTER_EARNED or POINTS_EXPIRY_MODE_AFTER_INACTIVITY",
            )
        )
    if "points_expiry_notice_days" in paths and not (
        0 <= settings.points_expiry_notice_days <= MAX_EXPIRY_DAYS
    ):
        violations.append(
            FieldViolation(
                "settings.points_expiry_notice_days", f"must be 0 (no notice) to {MAX_EXPIRY_DAYS}"
            )
        )
    if "pending_period" in paths:
        period = settings.pending_period
        if period.seconds < 0 or period.nanos != 0 or period.ToTimedelta() > MAX_PENDING_PERIOD:
            violations.append(
                FieldViolation(
                    "settings.pending_period",
                    f"must be whole seconds from 0 to {MAX_PENDING_PERIOD.days} days",
                )
            )
    if "multipliers" in paths:
        _check_multipliers(violations, settings.multipliers)
    if "earning_rules" in paths:
        violations.extend(check_earning_rules(settings.earning_rules))
    if "referral" in paths:
        _check_referral(violations, settings.referral)
    if "vip_tiers" in paths:
        _check_tiers(violations, settings.vip_tiers)
        violations.extend(check_tier_perks(settings.vip_tiers))
    if "vip_grace_days" in paths:
        violations.extend(check_grace_days(settings.vip_grace_days))
    if "vip_metric" in paths and settings.vip_metric not in (
        core_events.VIP_METRIC_POINTS_EARNED,
        core_events.VIP_METRIC_POINTS_REDEEMED,
    ):
        violations.append(
            FieldViolation("settings.vip_metric", "must be a VIP_METRIC_* other than UNSPECIFIED")
        )
    if "timezone" in paths and settings.timezone and not is_timezone(settings.timezone):
        violations.append(
            FieldViolation(
                "settings.timezone", "must be an IANA time zone (e.g. Europe/Paris), or empty: UTC"
            )
        )
    if "vip_term" in paths and settings.vip_term not in (
        core_events.VIP_TERM_LIFETIME,
        core_events.VIP_TERM_ROLLING_12_MONTHS,
        core_events.VIP_TERM_CALENDAR_YEAR,
    ):
        violations.append(
            FieldViolation("settings.vip_term", "must be a VIP_TERM_* other than UNSPECIFIED")
        )
    return violations


def apply_update(
    current: ProgramSettings, update: ProgramSettings, paths: Iterable[str]
) -> ProgramSettings:
    """`current` with the named (validated) fields taken from `update`; version unchanged."""
    result = ProgramSettings()
    result.CopyFrom(current)
    for path in paths:
        if path == "multipliers":
            del result.multipliers[:]
            for rule in update.multipliers:
                multiplier = canonical_decimal(rule.multiplier)
                assert multiplier is not None  # validated
                result.multipliers.add(
                    collection_id=rule.collection_id,
                    product_ids=list(dict.fromkeys(rule.product_ids)),
                    multiplier=decimal_text(multiplier),
                )
        elif path == "pending_period":
            result.pending_period.CopyFrom(update.pending_period)
        elif path == "vip_tiers":
            del result.vip_tiers[:]
            result.vip_tiers.extend(canonical_tier(t) for t in update.vip_tiers)
        elif path == "earning_rules":
            del result.earning_rules[:]
            result.earning_rules.extend(canonical_rule(r) for r in update.earning_rules)
        elif path == "referral":
            result.referral.CopyFrom(update.referral)
            if update.referral.friend_discount_value:
                value = canonical_decimal(update.referral.friend_discount_value)
                assert value is not None  # validated
                result.referral.friend_discount_value = decimal_text(value)
            result.referral.milestones.sort(key=lambda m: m.referrals)
        elif path == "points_per_currency_unit":
            rate = canonical_decimal(update.points_per_currency_unit)
            assert rate is not None  # validated
            result.points_per_currency_unit = decimal_text(rate)
        else:
            setattr(result, path, getattr(update, path))
    return result


def check_applied(result: ProgramSettings) -> ProgramSettings:
    """The program after an update, checked across fields the update may not all name (a rule
    naming a tier another update removed): INVALID_ARGUMENT, nothing stored, otherwise."""
    violations = check_tier_references(result)
    if violations:
        raise InvalidArgument("invalid settings: a rule names an unknown tier", violations)
    return result


def with_plan(current: ProgramSettings, plan: PlanLimits) -> ProgramSettings:
    result = ProgramSettings()
    result.CopyFrom(current)
    result.plan.CopyFrom(plan)
    return result


def is_change(before: ProgramSettings, after: ProgramSettings) -> bool:
    """True when `after` is to be saved as a new version: it differs from `before` (version
    aside), or `before` was never saved (the first save is announced even if it keeps the
    defaults, so that consumers get a copy)."""
    return before.version == 0 or _unversioned(before) != _unversioned(after)


def _unversioned(settings: ProgramSettings) -> ProgramSettings:
    copy = ProgramSettings()
    copy.CopyFrom(settings)
    copy.version = 0
    return copy


# --- customers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NewCustomer:
    """A customer to register, validated; the PII is plaintext only in memory."""

    shopify_customer_id: str
    user_id: str | None
    email: str | None
    first_name: str | None
    last_name: str | None


@dataclass(frozen=True)
class Customer:
    customer_id: str
    merchant_id: str
    shopify_customer_id: str
    user_id: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    account_linked: bool
    rfm_score: rfm_pb2.RfmScore | None
    rfm_segment: int
    redacted_at: datetime | None
    created_at: datetime


class ImportOutcome:
    CREATED = "created"
    ALREADY_EXISTS = "already_exists"
    INVALID = "invalid"
    LIMIT_REACHED = "limit_reached"


@dataclass(frozen=True)
class ImportItem:
    """One item of a batch: a valid customer, or why it is not one."""

    shopify_customer_id: str
    customer: NewCustomer | None
    error: str = ""


@dataclass(frozen=True)
class ImportResult:
    import_id: str
    status: str
    # Per item: index, shopify_customer_id, outcome, customer_id, error.
    items: list[dict[str, Any]]


class CustomerNotFound(NotFound):
    def __init__(self, customer_id: str) -> None:
        super().__init__("customer", customer_id)


class ShopifyCustomerTaken(AlreadyExists):
    def __init__(self, shopify_customer_id: str) -> None:
        super().__init__(
            f"the merchant already has a customer with shopify_customer_id {shopify_customer_id!r}"
        )

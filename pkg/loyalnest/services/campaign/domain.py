"""Rules of the Campaign service, without I/O: what a valid campaign is, its lifecycle, and
whether it applies to a customer's cart.

Discount rules and audiences are kept as their protobuf messages (the contract): they are
stored as protobuf JSON and sent to Shopify from there.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from loyalnest.gen.campaign.v1 import campaign_pb2 as pb
from loyalnest.gen.events.v1 import rfm_pb2
from loyalnest.platform.errors import FailedPrecondition, NotFound

MAX_NAME_LENGTH = 200
# Printable, no leading/trailing space: names are shown to customers as the discount title.
NAME_RE = re.compile(r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$")
CODE_RE = re.compile(r"[A-Z0-9_-]{4,32}")
SHOPIFY_ID_RE = re.compile(r"[0-9]{1,20}")
MAX_TARGETS = 100
# A Timestamp's valid range (0001-01-01 to 9999-12-31): beyond it no datetime holds it.
MIN_SECONDS, MAX_SECONDS = -62135596800, 253402300799
# Shopify: at most 25 automatic discounts active in a shop at any time.
MAX_ACTIVE_AUTOMATIC = 25

DRAFT = pb.CAMPAIGN_STATE_DRAFT
SCHEDULED = pb.CAMPAIGN_STATE_SCHEDULED
ACTIVE = pb.CAMPAIGN_STATE_ACTIVE
PAUSED = pb.CAMPAIGN_STATE_PAUSED
ENDED = pb.CAMPAIGN_STATE_ENDED
# The states whose discount exists at Shopify and may be used (now or later).
LIVE = frozenset({SCHEDULED, ACTIVE})
UPDATABLE_FIELDS = frozenset(
    {"name", "kind", "code", "rules", "audience", "start_time", "end_time"}
)


def state_name(state: int) -> str:
    return pb.CampaignState.Name(state).removeprefix("CAMPAIGN_STATE_").lower()


def segment_name(segment: int) -> str:
    return rfm_pb2.RfmSegment.Name(segment)


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    merchant_id: str
    name: str
    kind: int  # pb.CampaignKind
    code: str
    rules: pb.DiscountRules
    audience: pb.Audience
    start_at: datetime | None
    end_at: datetime | None
    state: int  # pb.CampaignState
    shopify_discount_id: str
    created_at: datetime
    updated_at: datetime

    @property
    def automatic(self) -> bool:
        return self.kind == pb.CAMPAIGN_KIND_AUTOMATIC

    @property
    def unique_codes(self) -> bool:
        return self.kind == pb.CAMPAIGN_KIND_UNIQUE_CODES

    def segments(self) -> list[str] | None:
        """The audience's RFM segment names; None for all customers."""
        if self.audience.all_customers:
            return None
        return sorted({segment_name(s) for s in self.audience.rfm_segments})

    def targets(self) -> tuple[list[str], list[str]]:
        return list(self.rules.product_ids), list(self.rules.collection_ids)


class CampaignNotFound(NotFound):
    def __init__(self, campaign_id: str) -> None:
        super().__init__("campaign", campaign_id)


class WrongState(FailedPrecondition):
    def __init__(self, campaign: Campaign, action: str, violation_type: str) -> None:
        super().__init__(
            f"campaign {campaign.campaign_id} is {state_name(campaign.state)}: cannot {action}",
            violation_type=violation_type,
            subject=f"campaign/{campaign.campaign_id}",
        )


class AutomaticDiscountLimit(FailedPrecondition):
    def __init__(self, active: int) -> None:
        super().__init__(
            f"the shop has {active} active automatic discounts, Shopify's limit is"
            f" {MAX_ACTIVE_AUTOMATIC}: pause or end one first",
            violation_type="AUTOMATIC_DISCOUNT_LIMIT",
            subject="shopify/automatic-discounts",
        )


class AudienceEmpty(FailedPrecondition):
    def __init__(self, segments: list[str]) -> None:
        super().__init__(
            f"no customer is in {', '.join(segments)} yet (RFM has scored none there):"
            " a code limited to that audience would be usable by nobody",
            violation_type="AUDIENCE_EMPTY",
            subject="audience/" + ",".join(segments),
        )


class CampaignOver(FailedPrecondition):
    def __init__(self, campaign_id: str) -> None:
        super().__init__(
            f"campaign {campaign_id} ended (its end_time has passed)",
            violation_type="CAMPAIGN_OVER",
            subject=f"campaign/{campaign_id}",
        )


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a campaign, or None when it can."""
    if not name.strip():
        return "is required"
    # fullmatch: `$` would let a trailing newline through.
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
        return (
            f"must be at most {MAX_NAME_LENGTH} printable characters,"
            " without leading or trailing spaces"
        )
    return None


def decimal_of(text: str) -> Decimal | None:
    """A finite non-negative decimal with at most 2 places, or None."""
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite() or value < 0 or value.as_tuple().exponent < -2:  # type: ignore[operator]
        return None
    return value


def campaign_problems(
    campaign: pb.Campaign, start: datetime | None, end: datetime | None
) -> list[tuple[str, str]]:
    """(field, description) of everything wrong with a campaign as given."""
    problems: list[tuple[str, str]] = []
    name = name_problem(campaign.name)
    if name:
        problems.append(("campaign.name", name))
    if campaign.kind == pb.CAMPAIGN_KIND_UNSPECIFIED:
        problems.append(("campaign.kind", "is required (SHARED_CODE, UNIQUE_CODES or AUTOMATIC)"))
    if campaign.code and (
        campaign.kind != pb.CAMPAIGN_KIND_SHARED_CODE or not CODE_RE.fullmatch(campaign.code)
    ):
        problems.append(
            ("campaign.code", "only for SHARED_CODE: 4-32 of A-Z, 0-9, - and _ (or empty)")
        )
    rules = campaign.rules
    match rules.type:
        case pb.DISCOUNT_TYPE_PERCENTAGE:
            value = decimal_of(rules.value)
            if value is None or not 0 < value <= 100:
                problems.append(
                    ("campaign.rules.value", "must be a percentage above 0, at most 100")
                )
        case pb.DISCOUNT_TYPE_FIXED_AMOUNT:
            value = decimal_of(rules.value)
            if value is None or value <= 0:
                problems.append(
                    ("campaign.rules.value", "must be a positive amount with at most 2 decimals")
                )
        case pb.DISCOUNT_TYPE_FREE_SHIPPING:
            if rules.value:
                problems.append(("campaign.rules.value", "must be empty for free shipping"))
            if rules.product_ids or rules.collection_ids:
                problems.append(
                    ("campaign.rules.product_ids", "free shipping applies to the whole order")
                )
        case _:
            problems.append(
                ("campaign.rules.type", "is required (PERCENTAGE, FIXED_AMOUNT or FREE_SHIPPING)")
            )
    if rules.minimum_subtotal and decimal_of(rules.minimum_subtotal) is None:
        problems.append(
            ("campaign.rules.minimum_subtotal", "must be an amount with at most 2 decimals")
        )
    if rules.usage_limit < 0:
        problems.append(("campaign.rules.usage_limit", "must not be negative"))
    if campaign.kind == pb.CAMPAIGN_KIND_AUTOMATIC and (
        rules.usage_limit or rules.once_per_customer
    ):
        problems.append(
            ("campaign.rules.usage_limit", "usage limits apply to codes, not automatic discounts")
        )
    if rules.product_ids and rules.collection_ids:
        problems.append(("campaign.rules.collection_ids", "name products or collections, not both"))
    for field, ids in (
        ("product_ids", rules.product_ids),
        ("collection_ids", rules.collection_ids),
    ):
        if len(ids) > MAX_TARGETS or not all(SHOPIFY_ID_RE.fullmatch(i) for i in ids):
            problems.append(
                (f"campaign.rules.{field}", f"at most {MAX_TARGETS} Shopify ids (digits)")
            )
    audience = campaign.audience
    if audience.all_customers == bool(audience.rfm_segments):
        problems.append(
            ("campaign.audience", "is all_customers or a list of rfm_segments (one of the two)")
        )
    if any(s == rfm_pb2.RFM_SEGMENT_UNSPECIFIED for s in audience.rfm_segments):
        problems.append(("campaign.audience.rfm_segments", "must name segments"))
    if campaign.kind == pb.CAMPAIGN_KIND_UNIQUE_CODES and not audience.rfm_segments:
        problems.append(
            (
                "campaign.audience",
                "unique codes go to the customers of RFM segments: name rfm_segments",
            )
        )
    if campaign.kind == pb.CAMPAIGN_KIND_AUTOMATIC and audience.rfm_segments:
        problems.append(
            (
                "campaign.audience",
                "an automatic discount applies to every customer at Shopify: use SHARED_CODE"
                " for an RFM audience",
            )
        )
    for field in ("start_time", "end_time"):
        stamp = getattr(campaign, field)
        if campaign.HasField(field) and not (
            MIN_SECONDS <= stamp.seconds <= MAX_SECONDS and 0 <= stamp.nanos < 10**9
        ):
            problems.append((f"campaign.{field}", "must be between years 1 and 9999"))
    if start and end and end <= start:
        problems.append(("campaign.end_time", "must be after start_time"))
    return problems


def derived_code(merchant_id: str, campaign_id: str) -> str:
    """The code of a SHARED_CODE campaign that named none: the same for every attempt of one
    campaign, so a retry after a lost answer meets its own code (TAKEN) instead of making a
    second discount."""
    digest = hashlib.sha256(f"{merchant_id}\0{campaign_id}".encode()).hexdigest()
    return "LN-" + digest[:10].upper()


def customer_code(merchant_id: str, campaign_id: str, customer_id: str) -> str:
    """A customer's own code of a UNIQUE_CODES campaign: the same for every attempt, so a
    retried creation meets its own code, and ApplyCampaign can answer it without a lookup.
    Knowing another customer's code buys nothing: the discount is limited to its customers."""
    digest = hashlib.sha256(f"{merchant_id}\0{campaign_id}\0{customer_id}".encode()).hexdigest()
    return "LN-" + digest[:12].upper()


def discount_title(campaign: Campaign) -> str:
    """The Shopify discount's title: the campaign's name and a reference that finds it again
    (an automatic discount has no code to look it up by)."""
    return f"{campaign.name} (LoyalNest {campaign.campaign_id[:8]})"


def published_state(campaign: Campaign, now: datetime) -> int:
    return SCHEDULED if campaign.start_at is not None and campaign.start_at > now else ACTIVE


def time_state(campaign: Campaign, now: datetime) -> int:
    """What a live campaign's state is by the clock: its start reached, its end passed."""
    if campaign.end_at is not None and campaign.end_at <= now:
        return ENDED
    if campaign.state == SCHEDULED and (campaign.start_at is None or campaign.start_at <= now):
        return ACTIVE
    return campaign.state


# ---- eligibility (ApplyCampaign) -----------------------------------------------------------


def eligibility_entry(campaign: Campaign) -> dict[str, Any]:
    """What ApplyCampaign needs of a live campaign, as cached in Redis."""
    products, collections = campaign.targets()
    return {
        "merchant_id": campaign.merchant_id,
        "campaign_id": campaign.campaign_id,
        "state": state_name(campaign.state),
        "start": campaign.start_at.timestamp() if campaign.start_at else None,
        "end": campaign.end_at.timestamp() if campaign.end_at else None,
        "segments": campaign.segments(),
        "minimum": campaign.rules.minimum_subtotal,
        "unique_codes": campaign.unique_codes,
        "product_ids": products,
        "collection_ids": collections,
    }


@dataclass(frozen=True)
class CartView:
    subtotal: Decimal
    product_ids: frozenset[str]
    collection_ids: frozenset[str]


def applies(entry: dict[str, Any], segment: str | None, cart: CartView, now: float) -> bool:
    """Whether a cached live campaign applies to a customer (in `segment`, or None) and cart."""
    if entry["state"] != "active":
        return False
    if entry["start"] is not None and entry["start"] > now:
        return False
    if entry["end"] is not None and entry["end"] <= now:
        return False
    segments = entry["segments"]
    if segments is not None and segment not in segments:
        return False
    if entry["minimum"] and cart.subtotal < Decimal(entry["minimum"]):
        return False
    products, collections = entry["product_ids"], entry["collection_ids"]
    if products or collections:
        return bool(cart.product_ids.intersection(products)) or bool(
            cart.collection_ids.intersection(collections)
        )
    return True

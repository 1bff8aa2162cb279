"""Rules of the Referrals service, without I/O.

A referrer (a Shopify customer) has one active referral: an unguessable code, which is also
the friend's discount code at Shopify, and the link `https://{shop}/?ref={code}`. A friend's
order carrying the code becomes a *conversion*: refused at once for fraud or abuse (the reason
is kept), else pending until Points approves the friend's order (its pending period passed
without cancellation), then completed, and the referrer's reward is due. Milestone bonuses are
due once each, when the referrer's completed conversions reach them.
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.errors import FailedPrecondition, NotFound

# Referrals' program until the merchant saves one in Core (ProgramSettings.referral unset).
DEFAULT_PROGRAM = core_pb2.ReferralProgram(
    referrer_reward_points=100,
    friend_discount_type=core_pb2.REFERRAL_DISCOUNT_TYPE_PERCENTAGE,
    friend_discount_value="10",
)

# Codes: 12 characters of Crockford's base32 (no I, L, O, U: read aloud and typed by hand),
# 60 random bits from the OS's CSPRNG, so a code cannot be guessed from another one.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 12
CODE_PREFIX = "REF"
CODE_RE = re.compile(rf"^{CODE_PREFIX}-[{CODE_ALPHABET}]{{{CODE_LENGTH}}}$")
# Shopify customer ids: digits (numeric REST ids).
CUSTOMER_ID_RE = re.compile(r"^[0-9]{1,20}$")


class ReferralStatus(enum.Enum):
    ACTIVE = "active"
    EXPIRED = "expired"


class DiscountStatus(enum.Enum):
    """The friend's discount code at Shopify."""

    NONE = "none"  # the program gives the friend no discount
    PENDING = "pending"  # to be created (retried until Shopify takes it)
    CREATED = "created"


class ConversionStatus(enum.Enum):
    PENDING = "pending"
    COMPLETED = "completed"
    REFUSED = "refused"
    CANCELLED = "cancelled"


class Refusal(enum.Enum):
    """Why a conversion earns nothing (kept with it and shown in GetReferralStatus)."""

    SELF_REFERRAL = "self_referral"  # the friend is the referrer
    NOT_FIRST_ORDER = "not_first_order"  # the friend had ordered before
    ALREADY_REFERRED = "already_referred"  # the friend completed another referral already
    EXPIRED = "expired"  # the code had expired when the friend used it


@dataclass(frozen=True)
class Referral:
    merchant_id: str
    referral_id: str
    referrer_id: str
    code: str
    shop: str
    status: ReferralStatus
    created_at: datetime
    expires_at: datetime | None
    discount_status: DiscountStatus

    @property
    def link(self) -> str:
        return referral_link(self.shop, self.code)

    def expired_at(self, moment: datetime) -> bool:
        return self.status is ReferralStatus.EXPIRED or (
            self.expires_at is not None and self.expires_at <= moment
        )


@dataclass(frozen=True)
class Conversion:
    merchant_id: str
    conversion_id: str
    referral_id: str
    referrer_id: str
    referee_id: str
    order_id: str
    status: ConversionStatus
    refusal_reason: str
    reward_points: int
    rewarded: bool
    created_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class Progress:
    referrer_id: str
    completed: int
    pending: int
    points_earned: int
    next_milestone: int
    next_milestone_bonus_points: int


@dataclass(frozen=True)
class Stats:
    referrals_created: int
    clicks: int
    conversions: int
    refused: int

    @property
    def conversion_rate(self) -> float:
        return self.conversions / self.clicks if self.clicks else 0.0


@dataclass(frozen=True)
class Reward:
    """Points due to a referrer: `key` is Points' idempotency key, so it is credited once."""

    merchant_id: str
    key: str
    referrer_id: str
    points: int
    reason: str


class ReferralNotFound(NotFound):
    def __init__(self, what: str) -> None:
        super().__init__("referral", what)


class LiveStatusOff(FailedPrecondition):
    def __init__(self) -> None:
        super().__init__(
            "live referral status needs Redis (LOYALNEST_REDIS_URL), which is not configured",
            violation_type="LIVE_STATUS_OFF",
            subject="referrals/stream",
        )


class ShopUnknown(FailedPrecondition):
    def __init__(self, merchant_id: str) -> None:
        super().__init__(
            "the merchant's shop is not known (the app is not installed): no referral link",
            violation_type="SHOP_NOT_CONNECTED",
            subject=f"merchant/{merchant_id}",
        )


SHOP_DOMAIN_RE = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com", re.IGNORECASE)


def is_shop_domain(shop: str) -> bool:
    return bool(SHOP_DOMAIN_RE.fullmatch(shop))


def new_code() -> str:
    return f"{CODE_PREFIX}-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(code: str) -> str:
    """Shopify's discount codes are case-insensitive; ours are stored upper case."""
    return code.strip().upper()


def referral_link(shop: str, code: str) -> str:
    return f"https://{shop}/?ref={code}"


def expiry(program: core_pb2.ReferralProgram, created_at: datetime) -> datetime | None:
    if program.code_expiry_days <= 0:
        return None
    return created_at + timedelta(days=program.code_expiry_days)


def gives_discount(program: core_pb2.ReferralProgram) -> bool:
    try:
        value = Decimal(program.friend_discount_value or "0")
    except ArithmeticError:
        return False
    return value > 0 and program.friend_discount_type in (
        core_pb2.REFERRAL_DISCOUNT_TYPE_PERCENTAGE,
        core_pb2.REFERRAL_DISCOUNT_TYPE_FIXED_AMOUNT,
    )


def program_of(settings: core_pb2.ProgramSettings | None) -> core_pb2.ReferralProgram:
    if settings is None or not settings.HasField("referral"):
        return DEFAULT_PROGRAM
    return settings.referral


def candidate_codes(discount_codes: Iterable[str], landing_site_ref: str = "") -> list[str]:
    """The order's codes that may be referral codes: discount codes first (the friend typed
    or carried it to checkout), then the `ref` of the page the visit landed on."""
    found = [normalize_code(c) for c in [*discount_codes, landing_site_ref]]
    return list(dict.fromkeys(c for c in found if CODE_RE.match(c)))


def refusal(
    referral: Referral,
    referee_id: str,
    *,
    at: datetime,
    first_order: bool,
    already_referred: bool,
) -> Refusal | None:
    """Why the referee's conversion must earn nothing, or None: checked in this order."""
    if referee_id == referral.referrer_id:
        return Refusal.SELF_REFERRAL
    if referral.expired_at(at):
        return Refusal.EXPIRED
    if not first_order:
        return Refusal.NOT_FIRST_ORDER
    if already_referred:
        return Refusal.ALREADY_REFERRED
    return None


def milestones_reached(
    program: core_pb2.ReferralProgram, completed: int
) -> list[core_pb2.ReferralMilestone]:
    """Every milestone at or below `completed` (each is due once: its key is unique)."""
    return [m for m in program.milestones if 0 < m.referrals <= completed and m.bonus_points > 0]


def next_milestone(
    program: core_pb2.ReferralProgram, completed: int
) -> core_pb2.ReferralMilestone | None:
    ahead = sorted(
        (m for m in program.milestones if m.referrals > completed), key=lambda m: m.referrals
    )
    return ahead[0] if ahead else None


def conversion_reward_key(conversion_id: str) -> str:
    return f"referral:{conversion_id}"


def milestone_reward_key(referrer_id: str, referrals: int) -> str:
    return f"referral-milestone:{referrer_id}:{referrals}"

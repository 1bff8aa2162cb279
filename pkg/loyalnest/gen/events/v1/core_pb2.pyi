import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loyalnest.gen.events.v1 import rfm_pb2 as _rfm_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VipMetric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIP_METRIC_UNSPECIFIED: _ClassVar[VipMetric]
    VIP_METRIC_POINTS_EARNED: _ClassVar[VipMetric]
    VIP_METRIC_POINTS_REDEEMED: _ClassVar[VipMetric]

class VipTerm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIP_TERM_UNSPECIFIED: _ClassVar[VipTerm]
    VIP_TERM_LIFETIME: _ClassVar[VipTerm]
    VIP_TERM_ROLLING_12_MONTHS: _ClassVar[VipTerm]
    VIP_TERM_CALENDAR_YEAR: _ClassVar[VipTerm]

class EarningRuleType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EARNING_RULE_TYPE_UNSPECIFIED: _ClassVar[EarningRuleType]
    EARNING_RULE_TYPE_PLACE_ORDER: _ClassVar[EarningRuleType]
    EARNING_RULE_TYPE_ORDER_MULTIPLIER: _ClassVar[EarningRuleType]
    EARNING_RULE_TYPE_PUNCH_CARD: _ClassVar[EarningRuleType]
    EARNING_RULE_TYPE_GOAL_SPEND: _ClassVar[EarningRuleType]
    EARNING_RULE_TYPE_CUSTOM_ACTIVITY: _ClassVar[EarningRuleType]
    EARNING_RULE_TYPE_BIRTHDAY: _ClassVar[EarningRuleType]
    EARNING_RULE_TYPE_ANNIVERSARY: _ClassVar[EarningRuleType]
    EARNING_RULE_TYPE_NEWSLETTER_SIGNUP: _ClassVar[EarningRuleType]

class SalesChannel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SALES_CHANNEL_UNSPECIFIED: _ClassVar[SalesChannel]
    SALES_CHANNEL_ONLINE: _ClassVar[SalesChannel]
    SALES_CHANNEL_POS: _ClassVar[SalesChannel]

class LimitPeriod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIMIT_PERIOD_UNSPECIFIED: _ClassVar[LimitPeriod]
    LIMIT_PERIOD_EVER: _ClassVar[LimitPeriod]
    LIMIT_PERIOD_DAY: _ClassVar[LimitPeriod]
    LIMIT_PERIOD_MONTH: _ClassVar[LimitPeriod]
    LIMIT_PERIOD_YEAR: _ClassVar[LimitPeriod]

class PointsExpiryMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POINTS_EXPIRY_MODE_UNSPECIFIED: _ClassVar[PointsExpiryMode]
    POINTS_EXPIRY_MODE_AFTER_EARNED: _ClassVar[PointsExpiryMode]
    POINTS_EXPIRY_MODE_AFTER_INACTIVITY: _ClassVar[PointsExpiryMode]

class ReferralDiscountType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFERRAL_DISCOUNT_TYPE_UNSPECIFIED: _ClassVar[ReferralDiscountType]
    REFERRAL_DISCOUNT_TYPE_PERCENTAGE: _ClassVar[ReferralDiscountType]
    REFERRAL_DISCOUNT_TYPE_FIXED_AMOUNT: _ClassVar[ReferralDiscountType]

class PointsRounding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POINTS_ROUNDING_UNSPECIFIED: _ClassVar[PointsRounding]
    POINTS_ROUNDING_DOWN: _ClassVar[PointsRounding]
    POINTS_ROUNDING_NEAREST: _ClassVar[PointsRounding]
    POINTS_ROUNDING_UP: _ClassVar[PointsRounding]
VIP_METRIC_UNSPECIFIED: VipMetric
VIP_METRIC_POINTS_EARNED: VipMetric
VIP_METRIC_POINTS_REDEEMED: VipMetric
VIP_TERM_UNSPECIFIED: VipTerm
VIP_TERM_LIFETIME: VipTerm
VIP_TERM_ROLLING_12_MONTHS: VipTerm
VIP_TERM_CALENDAR_YEAR: VipTerm
EARNING_RULE_TYPE_UNSPECIFIED: EarningRuleType
EARNING_RULE_TYPE_PLACE_ORDER: EarningRuleType
EARNING_RULE_TYPE_ORDER_MULTIPLIER: EarningRuleType
EARNING_RULE_TYPE_PUNCH_CARD: EarningRuleType
EARNING_RULE_TYPE_GOAL_SPEND: EarningRuleType
EARNING_RULE_TYPE_CUSTOM_ACTIVITY: EarningRuleType
EARNING_RULE_TYPE_BIRTHDAY: EarningRuleType
EARNING_RULE_TYPE_ANNIVERSARY: EarningRuleType
EARNING_RULE_TYPE_NEWSLETTER_SIGNUP: EarningRuleType
SALES_CHANNEL_UNSPECIFIED: SalesChannel
SALES_CHANNEL_ONLINE: SalesChannel
SALES_CHANNEL_POS: SalesChannel
LIMIT_PERIOD_UNSPECIFIED: LimitPeriod
LIMIT_PERIOD_EVER: LimitPeriod
LIMIT_PERIOD_DAY: LimitPeriod
LIMIT_PERIOD_MONTH: LimitPeriod
LIMIT_PERIOD_YEAR: LimitPeriod
POINTS_EXPIRY_MODE_UNSPECIFIED: PointsExpiryMode
POINTS_EXPIRY_MODE_AFTER_EARNED: PointsExpiryMode
POINTS_EXPIRY_MODE_AFTER_INACTIVITY: PointsExpiryMode
REFERRAL_DISCOUNT_TYPE_UNSPECIFIED: ReferralDiscountType
REFERRAL_DISCOUNT_TYPE_PERCENTAGE: ReferralDiscountType
REFERRAL_DISCOUNT_TYPE_FIXED_AMOUNT: ReferralDiscountType
POINTS_ROUNDING_UNSPECIFIED: PointsRounding
POINTS_ROUNDING_DOWN: PointsRounding
POINTS_ROUNDING_NEAREST: PointsRounding
POINTS_ROUNDING_UP: PointsRounding

class CustomerCreated(_message.Message):
    __slots__ = ("customer_id", "shopify_customer_id", "user_id")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SHOPIFY_CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    shopify_customer_id: str
    user_id: str
    def __init__(self, customer_id: _Optional[str] = ..., shopify_customer_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class CustomerUpdated(_message.Message):
    __slots__ = ("customer_id", "update_mask")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, customer_id: _Optional[str] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class PlanLimitWarning(_message.Message):
    __slots__ = ("plan", "metric", "used", "limit")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    plan: str
    metric: str
    used: int
    limit: int
    def __init__(self, plan: _Optional[str] = ..., metric: _Optional[str] = ..., used: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ProgramSettingsUpdated(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: ProgramSettings
    def __init__(self, settings: _Optional[_Union[ProgramSettings, _Mapping]] = ...) -> None: ...

class ProgramSettings(_message.Message):
    __slots__ = ("version", "program_enabled", "points_per_currency_unit", "rounding", "signup_bonus_points", "multipliers", "points_expiry_days", "pending_period", "plan", "referral", "points_expiry_mode", "points_expiry_notice_days", "earning_rules", "vip_tiers", "vip_metric", "vip_term", "timezone", "vip_grace_days")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ENABLED_FIELD_NUMBER: _ClassVar[int]
    POINTS_PER_CURRENCY_UNIT_FIELD_NUMBER: _ClassVar[int]
    ROUNDING_FIELD_NUMBER: _ClassVar[int]
    SIGNUP_BONUS_POINTS_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIERS_FIELD_NUMBER: _ClassVar[int]
    POINTS_EXPIRY_DAYS_FIELD_NUMBER: _ClassVar[int]
    PENDING_PERIOD_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    REFERRAL_FIELD_NUMBER: _ClassVar[int]
    POINTS_EXPIRY_MODE_FIELD_NUMBER: _ClassVar[int]
    POINTS_EXPIRY_NOTICE_DAYS_FIELD_NUMBER: _ClassVar[int]
    EARNING_RULES_FIELD_NUMBER: _ClassVar[int]
    VIP_TIERS_FIELD_NUMBER: _ClassVar[int]
    VIP_METRIC_FIELD_NUMBER: _ClassVar[int]
    VIP_TERM_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    VIP_GRACE_DAYS_FIELD_NUMBER: _ClassVar[int]
    version: int
    program_enabled: bool
    points_per_currency_unit: str
    rounding: PointsRounding
    signup_bonus_points: int
    multipliers: _containers.RepeatedCompositeFieldContainer[EarningMultiplier]
    points_expiry_days: int
    pending_period: _duration_pb2.Duration
    plan: PlanLimits
    referral: ReferralProgram
    points_expiry_mode: PointsExpiryMode
    points_expiry_notice_days: int
    earning_rules: _containers.RepeatedCompositeFieldContainer[EarningRule]
    vip_tiers: _containers.RepeatedCompositeFieldContainer[VipTier]
    vip_metric: VipMetric
    vip_term: VipTerm
    timezone: str
    vip_grace_days: int
    def __init__(self, version: _Optional[int] = ..., program_enabled: _Optional[bool] = ..., points_per_currency_unit: _Optional[str] = ..., rounding: _Optional[_Union[PointsRounding, str]] = ..., signup_bonus_points: _Optional[int] = ..., multipliers: _Optional[_Iterable[_Union[EarningMultiplier, _Mapping]]] = ..., points_expiry_days: _Optional[int] = ..., pending_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., plan: _Optional[_Union[PlanLimits, _Mapping]] = ..., referral: _Optional[_Union[ReferralProgram, _Mapping]] = ..., points_expiry_mode: _Optional[_Union[PointsExpiryMode, str]] = ..., points_expiry_notice_days: _Optional[int] = ..., earning_rules: _Optional[_Iterable[_Union[EarningRule, _Mapping]]] = ..., vip_tiers: _Optional[_Iterable[_Union[VipTier, _Mapping]]] = ..., vip_metric: _Optional[_Union[VipMetric, str]] = ..., vip_term: _Optional[_Union[VipTerm, str]] = ..., timezone: _Optional[str] = ..., vip_grace_days: _Optional[int] = ...) -> None: ...

class VipTier(_message.Message):
    __slots__ = ("tier_id", "name", "threshold", "shopify_tag", "earning_multiplier", "entry_reward_points")
    TIER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SHOPIFY_TAG_FIELD_NUMBER: _ClassVar[int]
    EARNING_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    ENTRY_REWARD_POINTS_FIELD_NUMBER: _ClassVar[int]
    tier_id: str
    name: str
    threshold: int
    shopify_tag: str
    earning_multiplier: str
    entry_reward_points: int
    def __init__(self, tier_id: _Optional[str] = ..., name: _Optional[str] = ..., threshold: _Optional[int] = ..., shopify_tag: _Optional[str] = ..., earning_multiplier: _Optional[str] = ..., entry_reward_points: _Optional[int] = ...) -> None: ...

class EarningLimit(_message.Message):
    __slots__ = ("max_awards", "period")
    MAX_AWARDS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    max_awards: int
    period: LimitPeriod
    def __init__(self, max_awards: _Optional[int] = ..., period: _Optional[_Union[LimitPeriod, str]] = ...) -> None: ...

class EarningRule(_message.Message):
    __slots__ = ("rule_id", "name", "enabled", "type", "points_per_currency_unit", "points", "min_spend", "channels", "start_time", "end_time", "multiplier", "limit", "punch_count", "goal_period", "activity", "eligible_tiers", "eligible_segments")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    POINTS_PER_CURRENCY_UNIT_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    MIN_SPEND_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PUNCH_COUNT_FIELD_NUMBER: _ClassVar[int]
    GOAL_PERIOD_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_TIERS_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    name: str
    enabled: bool
    type: EarningRuleType
    points_per_currency_unit: str
    points: int
    min_spend: str
    channels: _containers.RepeatedScalarFieldContainer[SalesChannel]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    multiplier: str
    limit: EarningLimit
    punch_count: int
    goal_period: _duration_pb2.Duration
    activity: str
    eligible_tiers: _containers.RepeatedScalarFieldContainer[str]
    eligible_segments: _containers.RepeatedScalarFieldContainer[_rfm_pb2.RfmSegment]
    def __init__(self, rule_id: _Optional[str] = ..., name: _Optional[str] = ..., enabled: _Optional[bool] = ..., type: _Optional[_Union[EarningRuleType, str]] = ..., points_per_currency_unit: _Optional[str] = ..., points: _Optional[int] = ..., min_spend: _Optional[str] = ..., channels: _Optional[_Iterable[_Union[SalesChannel, str]]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., multiplier: _Optional[str] = ..., limit: _Optional[_Union[EarningLimit, _Mapping]] = ..., punch_count: _Optional[int] = ..., goal_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., activity: _Optional[str] = ..., eligible_tiers: _Optional[_Iterable[str]] = ..., eligible_segments: _Optional[_Iterable[_Union[_rfm_pb2.RfmSegment, str]]] = ...) -> None: ...

class ReferralProgram(_message.Message):
    __slots__ = ("referrer_reward_points", "friend_discount_type", "friend_discount_value", "milestones", "code_expiry_days", "daily_invites_per_referrer", "daily_invites_per_merchant")
    REFERRER_REWARD_POINTS_FIELD_NUMBER: _ClassVar[int]
    FRIEND_DISCOUNT_TYPE_FIELD_NUMBER: _ClassVar[int]
    FRIEND_DISCOUNT_VALUE_FIELD_NUMBER: _ClassVar[int]
    MILESTONES_FIELD_NUMBER: _ClassVar[int]
    CODE_EXPIRY_DAYS_FIELD_NUMBER: _ClassVar[int]
    DAILY_INVITES_PER_REFERRER_FIELD_NUMBER: _ClassVar[int]
    DAILY_INVITES_PER_MERCHANT_FIELD_NUMBER: _ClassVar[int]
    referrer_reward_points: int
    friend_discount_type: ReferralDiscountType
    friend_discount_value: str
    milestones: _containers.RepeatedCompositeFieldContainer[ReferralMilestone]
    code_expiry_days: int
    daily_invites_per_referrer: int
    daily_invites_per_merchant: int
    def __init__(self, referrer_reward_points: _Optional[int] = ..., friend_discount_type: _Optional[_Union[ReferralDiscountType, str]] = ..., friend_discount_value: _Optional[str] = ..., milestones: _Optional[_Iterable[_Union[ReferralMilestone, _Mapping]]] = ..., code_expiry_days: _Optional[int] = ..., daily_invites_per_referrer: _Optional[int] = ..., daily_invites_per_merchant: _Optional[int] = ...) -> None: ...

class ReferralMilestone(_message.Message):
    __slots__ = ("referrals", "bonus_points")
    REFERRALS_FIELD_NUMBER: _ClassVar[int]
    BONUS_POINTS_FIELD_NUMBER: _ClassVar[int]
    referrals: int
    bonus_points: int
    def __init__(self, referrals: _Optional[int] = ..., bonus_points: _Optional[int] = ...) -> None: ...

class EarningMultiplier(_message.Message):
    __slots__ = ("collection_id", "product_ids", "multiplier")
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    collection_id: str
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    multiplier: str
    def __init__(self, collection_id: _Optional[str] = ..., product_ids: _Optional[_Iterable[str]] = ..., multiplier: _Optional[str] = ...) -> None: ...

class PlanLimits(_message.Message):
    __slots__ = ("plan", "customers_limit", "orders_per_month_limit", "gift_card_rewards")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ORDERS_PER_MONTH_LIMIT_FIELD_NUMBER: _ClassVar[int]
    GIFT_CARD_REWARDS_FIELD_NUMBER: _ClassVar[int]
    plan: str
    customers_limit: int
    orders_per_month_limit: int
    gift_card_rewards: bool
    def __init__(self, plan: _Optional[str] = ..., customers_limit: _Optional[int] = ..., orders_per_month_limit: _Optional[int] = ..., gift_card_rewards: _Optional[bool] = ...) -> None: ...

import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loyalnest.gen.events.v1 import core_pb2 as _core_pb2
from loyalnest.gen.events.v1 import rfm_pb2 as _rfm_pb2
from loyalnest.gen.options.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TransactionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSACTION_TYPE_UNSPECIFIED: _ClassVar[TransactionType]
    TRANSACTION_TYPE_EARN: _ClassVar[TransactionType]
    TRANSACTION_TYPE_REDEEM: _ClassVar[TransactionType]
    TRANSACTION_TYPE_ADJUST: _ClassVar[TransactionType]
    TRANSACTION_TYPE_REVERSAL: _ClassVar[TransactionType]
    TRANSACTION_TYPE_EXPIRE: _ClassVar[TransactionType]

class RewardKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_KIND_UNSPECIFIED: _ClassVar[RewardKind]
    REWARD_KIND_FIXED_AMOUNT: _ClassVar[RewardKind]
    REWARD_KIND_PERCENTAGE: _ClassVar[RewardKind]
    REWARD_KIND_FREE_SHIPPING: _ClassVar[RewardKind]
    REWARD_KIND_FREE_PRODUCT: _ClassVar[RewardKind]
    REWARD_KIND_GIFT_CARD: _ClassVar[RewardKind]

class RewardIneligibility(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_INELIGIBILITY_UNSPECIFIED: _ClassVar[RewardIneligibility]
    REWARD_INELIGIBILITY_INACTIVE: _ClassVar[RewardIneligibility]
    REWARD_INELIGIBILITY_TIER_REQUIRED: _ClassVar[RewardIneligibility]
    REWARD_INELIGIBILITY_LIMIT_REACHED: _ClassVar[RewardIneligibility]
    REWARD_INELIGIBILITY_INSUFFICIENT_POINTS: _ClassVar[RewardIneligibility]
    REWARD_INELIGIBILITY_CHANNEL_UNAVAILABLE: _ClassVar[RewardIneligibility]
    REWARD_INELIGIBILITY_PLAN_FEATURE_REQUIRED: _ClassVar[RewardIneligibility]
    REWARD_INELIGIBILITY_SEGMENT_REQUIRED: _ClassVar[RewardIneligibility]

class OfflineTransactionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OFFLINE_TRANSACTION_KIND_UNSPECIFIED: _ClassVar[OfflineTransactionKind]
    OFFLINE_TRANSACTION_KIND_EARN: _ClassVar[OfflineTransactionKind]
    OFFLINE_TRANSACTION_KIND_REDEEM: _ClassVar[OfflineTransactionKind]

class OfflineSyncStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OFFLINE_SYNC_STATUS_UNSPECIFIED: _ClassVar[OfflineSyncStatus]
    OFFLINE_SYNC_STATUS_APPLIED: _ClassVar[OfflineSyncStatus]
    OFFLINE_SYNC_STATUS_DUPLICATE: _ClassVar[OfflineSyncStatus]
    OFFLINE_SYNC_STATUS_REJECTED: _ClassVar[OfflineSyncStatus]

class ActivityAwardStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVITY_AWARD_STATUS_UNSPECIFIED: _ClassVar[ActivityAwardStatus]
    ACTIVITY_AWARD_STATUS_AWARDED: _ClassVar[ActivityAwardStatus]
    ACTIVITY_AWARD_STATUS_DUPLICATE: _ClassVar[ActivityAwardStatus]
    ACTIVITY_AWARD_STATUS_LIMIT_REACHED: _ClassVar[ActivityAwardStatus]

class OrderEarningStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_EARNING_STATUS_UNSPECIFIED: _ClassVar[OrderEarningStatus]
    ORDER_EARNING_STATUS_PENDING: _ClassVar[OrderEarningStatus]
    ORDER_EARNING_STATUS_APPROVING: _ClassVar[OrderEarningStatus]
    ORDER_EARNING_STATUS_APPROVED: _ClassVar[OrderEarningStatus]
    ORDER_EARNING_STATUS_NOT_EARNING: _ClassVar[OrderEarningStatus]
TRANSACTION_TYPE_UNSPECIFIED: TransactionType
TRANSACTION_TYPE_EARN: TransactionType
TRANSACTION_TYPE_REDEEM: TransactionType
TRANSACTION_TYPE_ADJUST: TransactionType
TRANSACTION_TYPE_REVERSAL: TransactionType
TRANSACTION_TYPE_EXPIRE: TransactionType
REWARD_KIND_UNSPECIFIED: RewardKind
REWARD_KIND_FIXED_AMOUNT: RewardKind
REWARD_KIND_PERCENTAGE: RewardKind
REWARD_KIND_FREE_SHIPPING: RewardKind
REWARD_KIND_FREE_PRODUCT: RewardKind
REWARD_KIND_GIFT_CARD: RewardKind
REWARD_INELIGIBILITY_UNSPECIFIED: RewardIneligibility
REWARD_INELIGIBILITY_INACTIVE: RewardIneligibility
REWARD_INELIGIBILITY_TIER_REQUIRED: RewardIneligibility
REWARD_INELIGIBILITY_LIMIT_REACHED: RewardIneligibility
REWARD_INELIGIBILITY_INSUFFICIENT_POINTS: RewardIneligibility
REWARD_INELIGIBILITY_CHANNEL_UNAVAILABLE: RewardIneligibility
REWARD_INELIGIBILITY_PLAN_FEATURE_REQUIRED: RewardIneligibility
REWARD_INELIGIBILITY_SEGMENT_REQUIRED: RewardIneligibility
OFFLINE_TRANSACTION_KIND_UNSPECIFIED: OfflineTransactionKind
OFFLINE_TRANSACTION_KIND_EARN: OfflineTransactionKind
OFFLINE_TRANSACTION_KIND_REDEEM: OfflineTransactionKind
OFFLINE_SYNC_STATUS_UNSPECIFIED: OfflineSyncStatus
OFFLINE_SYNC_STATUS_APPLIED: OfflineSyncStatus
OFFLINE_SYNC_STATUS_DUPLICATE: OfflineSyncStatus
OFFLINE_SYNC_STATUS_REJECTED: OfflineSyncStatus
ACTIVITY_AWARD_STATUS_UNSPECIFIED: ActivityAwardStatus
ACTIVITY_AWARD_STATUS_AWARDED: ActivityAwardStatus
ACTIVITY_AWARD_STATUS_DUPLICATE: ActivityAwardStatus
ACTIVITY_AWARD_STATUS_LIMIT_REACHED: ActivityAwardStatus
ORDER_EARNING_STATUS_UNSPECIFIED: OrderEarningStatus
ORDER_EARNING_STATUS_PENDING: OrderEarningStatus
ORDER_EARNING_STATUS_APPROVING: OrderEarningStatus
ORDER_EARNING_STATUS_APPROVED: OrderEarningStatus
ORDER_EARNING_STATUS_NOT_EARNING: OrderEarningStatus

class PointsTransaction(_message.Message):
    __slots__ = ("transaction_id", "customer_id", "type", "points", "balance_after", "reason", "create_time", "sequence", "rule_id")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    customer_id: str
    type: TransactionType
    points: int
    balance_after: int
    reason: str
    create_time: _timestamp_pb2.Timestamp
    sequence: int
    rule_id: str
    def __init__(self, transaction_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., type: _Optional[_Union[TransactionType, str]] = ..., points: _Optional[int] = ..., balance_after: _Optional[int] = ..., reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sequence: _Optional[int] = ..., rule_id: _Optional[str] = ...) -> None: ...

class PointsBalance(_message.Message):
    __slots__ = ("customer_id", "balance", "lifetime_earned", "lifetime_redeemed", "update_time", "sequence")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_EARNED_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_REDEEMED_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    balance: int
    lifetime_earned: int
    lifetime_redeemed: int
    update_time: _timestamp_pb2.Timestamp
    sequence: int
    def __init__(self, customer_id: _Optional[str] = ..., balance: _Optional[int] = ..., lifetime_earned: _Optional[int] = ..., lifetime_redeemed: _Optional[int] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class GetPointsBalanceRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class GetPointsBalanceResponse(_message.Message):
    __slots__ = ("balance", "expiring", "vip")
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRING_FIELD_NUMBER: _ClassVar[int]
    VIP_FIELD_NUMBER: _ClassVar[int]
    balance: PointsBalance
    expiring: ExpiringPoints
    vip: VipStatus
    def __init__(self, balance: _Optional[_Union[PointsBalance, _Mapping]] = ..., expiring: _Optional[_Union[ExpiringPoints, _Mapping]] = ..., vip: _Optional[_Union[VipStatus, _Mapping]] = ...) -> None: ...

class VipStatus(_message.Message):
    __slots__ = ("tier_id", "tier_name", "qualifying_points", "next_tier_id", "points_to_next_tier", "term_end_time")
    TIER_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_NAME_FIELD_NUMBER: _ClassVar[int]
    QUALIFYING_POINTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_TIER_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_TO_NEXT_TIER_FIELD_NUMBER: _ClassVar[int]
    TERM_END_TIME_FIELD_NUMBER: _ClassVar[int]
    tier_id: str
    tier_name: str
    qualifying_points: int
    next_tier_id: str
    points_to_next_tier: int
    term_end_time: _timestamp_pb2.Timestamp
    def __init__(self, tier_id: _Optional[str] = ..., tier_name: _Optional[str] = ..., qualifying_points: _Optional[int] = ..., next_tier_id: _Optional[str] = ..., points_to_next_tier: _Optional[int] = ..., term_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExpiringPoints(_message.Message):
    __slots__ = ("points", "expire_time")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    points: int
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, points: _Optional[int] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EarnPointsRequest(_message.Message):
    __slots__ = ("customer_id", "points", "reason", "idempotency_key")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    points: int
    reason: str
    idempotency_key: str
    def __init__(self, customer_id: _Optional[str] = ..., points: _Optional[int] = ..., reason: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class EarnPointsResponse(_message.Message):
    __slots__ = ("transaction", "balance")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    transaction: PointsTransaction
    balance: PointsBalance
    def __init__(self, transaction: _Optional[_Union[PointsTransaction, _Mapping]] = ..., balance: _Optional[_Union[PointsBalance, _Mapping]] = ...) -> None: ...

class RedeemPointsRequest(_message.Message):
    __slots__ = ("customer_id", "points", "reason", "idempotency_key")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    points: int
    reason: str
    idempotency_key: str
    def __init__(self, customer_id: _Optional[str] = ..., points: _Optional[int] = ..., reason: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RedeemPointsResponse(_message.Message):
    __slots__ = ("transaction", "balance")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    transaction: PointsTransaction
    balance: PointsBalance
    def __init__(self, transaction: _Optional[_Union[PointsTransaction, _Mapping]] = ..., balance: _Optional[_Union[PointsBalance, _Mapping]] = ...) -> None: ...

class AdjustPointsRequest(_message.Message):
    __slots__ = ("customer_id", "points", "reason", "idempotency_key")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    points: int
    reason: str
    idempotency_key: str
    def __init__(self, customer_id: _Optional[str] = ..., points: _Optional[int] = ..., reason: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class AdjustPointsResponse(_message.Message):
    __slots__ = ("transaction", "balance")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    transaction: PointsTransaction
    balance: PointsBalance
    def __init__(self, transaction: _Optional[_Union[PointsTransaction, _Mapping]] = ..., balance: _Optional[_Union[PointsBalance, _Mapping]] = ...) -> None: ...

class ListTransactionsRequest(_message.Message):
    __slots__ = ("customer_id", "page_size", "page_token")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    page_size: int
    page_token: str
    def __init__(self, customer_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTransactionsResponse(_message.Message):
    __slots__ = ("transactions", "next_page_token")
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    transactions: _containers.RepeatedCompositeFieldContainer[PointsTransaction]
    next_page_token: str
    def __init__(self, transactions: _Optional[_Iterable[_Union[PointsTransaction, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RedemptionLimit(_message.Message):
    __slots__ = ("max_redemptions", "period")
    MAX_REDEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    max_redemptions: int
    period: _core_pb2.LimitPeriod
    def __init__(self, max_redemptions: _Optional[int] = ..., period: _Optional[_Union[_core_pb2.LimitPeriod, str]] = ...) -> None: ...

class Reward(_message.Message):
    __slots__ = ("reward_id", "name", "kind", "value", "points_cost", "active", "create_time", "update_time", "min_subtotal", "product_ids", "collection_ids", "code_expiry_days", "customer_limit", "tier_ids", "variant_id", "channels", "eligible_segments")
    REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    POINTS_COST_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    MIN_SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_IDS_FIELD_NUMBER: _ClassVar[int]
    CODE_EXPIRY_DAYS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TIER_IDS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    reward_id: str
    name: str
    kind: RewardKind
    value: str
    points_cost: int
    active: bool
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    min_subtotal: str
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    collection_ids: _containers.RepeatedScalarFieldContainer[str]
    code_expiry_days: int
    customer_limit: RedemptionLimit
    tier_ids: _containers.RepeatedScalarFieldContainer[str]
    variant_id: str
    channels: _containers.RepeatedScalarFieldContainer[_core_pb2.SalesChannel]
    eligible_segments: _containers.RepeatedScalarFieldContainer[_rfm_pb2.RfmSegment]
    def __init__(self, reward_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[RewardKind, str]] = ..., value: _Optional[str] = ..., points_cost: _Optional[int] = ..., active: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., min_subtotal: _Optional[str] = ..., product_ids: _Optional[_Iterable[str]] = ..., collection_ids: _Optional[_Iterable[str]] = ..., code_expiry_days: _Optional[int] = ..., customer_limit: _Optional[_Union[RedemptionLimit, _Mapping]] = ..., tier_ids: _Optional[_Iterable[str]] = ..., variant_id: _Optional[str] = ..., channels: _Optional[_Iterable[_Union[_core_pb2.SalesChannel, str]]] = ..., eligible_segments: _Optional[_Iterable[_Union[_rfm_pb2.RfmSegment, str]]] = ...) -> None: ...

class CreateRewardRequest(_message.Message):
    __slots__ = ("reward", "idempotency_key")
    REWARD_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    reward: Reward
    idempotency_key: str
    def __init__(self, reward: _Optional[_Union[Reward, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class CreateRewardResponse(_message.Message):
    __slots__ = ("reward",)
    REWARD_FIELD_NUMBER: _ClassVar[int]
    reward: Reward
    def __init__(self, reward: _Optional[_Union[Reward, _Mapping]] = ...) -> None: ...

class ListRewardsRequest(_message.Message):
    __slots__ = ("active_only", "page_size", "page_token", "customer_id", "channel")
    ACTIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    active_only: bool
    page_size: int
    page_token: str
    customer_id: str
    channel: _core_pb2.SalesChannel
    def __init__(self, active_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., customer_id: _Optional[str] = ..., channel: _Optional[_Union[_core_pb2.SalesChannel, str]] = ...) -> None: ...

class ListRewardsResponse(_message.Message):
    __slots__ = ("rewards", "next_page_token", "eligibility")
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ELIGIBILITY_FIELD_NUMBER: _ClassVar[int]
    rewards: _containers.RepeatedCompositeFieldContainer[Reward]
    next_page_token: str
    eligibility: _containers.RepeatedCompositeFieldContainer[RewardEligibility]
    def __init__(self, rewards: _Optional[_Iterable[_Union[Reward, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., eligibility: _Optional[_Iterable[_Union[RewardEligibility, _Mapping]]] = ...) -> None: ...

class RewardEligibility(_message.Message):
    __slots__ = ("reward_id", "redeemable", "reasons", "redemptions_left", "points_needed")
    REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    REDEEMABLE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    REDEMPTIONS_LEFT_FIELD_NUMBER: _ClassVar[int]
    POINTS_NEEDED_FIELD_NUMBER: _ClassVar[int]
    reward_id: str
    redeemable: bool
    reasons: _containers.RepeatedScalarFieldContainer[RewardIneligibility]
    redemptions_left: int
    points_needed: int
    def __init__(self, reward_id: _Optional[str] = ..., redeemable: _Optional[bool] = ..., reasons: _Optional[_Iterable[_Union[RewardIneligibility, str]]] = ..., redemptions_left: _Optional[int] = ..., points_needed: _Optional[int] = ...) -> None: ...

class UpdateRewardRequest(_message.Message):
    __slots__ = ("reward", "update_mask")
    REWARD_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    reward: Reward
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, reward: _Optional[_Union[Reward, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateRewardResponse(_message.Message):
    __slots__ = ("reward",)
    REWARD_FIELD_NUMBER: _ClassVar[int]
    reward: Reward
    def __init__(self, reward: _Optional[_Union[Reward, _Mapping]] = ...) -> None: ...

class RedeemRewardRequest(_message.Message):
    __slots__ = ("reward_id", "customer_id", "idempotency_key", "channel")
    REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    reward_id: str
    customer_id: str
    idempotency_key: str
    channel: _core_pb2.SalesChannel
    def __init__(self, reward_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., channel: _Optional[_Union[_core_pb2.SalesChannel, str]] = ...) -> None: ...

class RedeemRewardResponse(_message.Message):
    __slots__ = ("discount_code", "redemption_id", "transaction", "balance", "reward", "expire_time", "gift_card")
    DISCOUNT_CODE_FIELD_NUMBER: _ClassVar[int]
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    GIFT_CARD_FIELD_NUMBER: _ClassVar[int]
    discount_code: str
    redemption_id: str
    transaction: PointsTransaction
    balance: PointsBalance
    reward: Reward
    expire_time: _timestamp_pb2.Timestamp
    gift_card: GiftCardIssued
    def __init__(self, discount_code: _Optional[str] = ..., redemption_id: _Optional[str] = ..., transaction: _Optional[_Union[PointsTransaction, _Mapping]] = ..., balance: _Optional[_Union[PointsBalance, _Mapping]] = ..., reward: _Optional[_Union[Reward, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gift_card: _Optional[_Union[GiftCardIssued, _Mapping]] = ...) -> None: ...

class GiftCardIssued(_message.Message):
    __slots__ = ("code", "last_characters", "gift_card_id")
    CODE_FIELD_NUMBER: _ClassVar[int]
    LAST_CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    GIFT_CARD_ID_FIELD_NUMBER: _ClassVar[int]
    code: str
    last_characters: str
    gift_card_id: str
    def __init__(self, code: _Optional[str] = ..., last_characters: _Optional[str] = ..., gift_card_id: _Optional[str] = ...) -> None: ...

class OfflineTransaction(_message.Message):
    __slots__ = ("client_transaction_id", "customer_id", "kind", "points", "device_time", "reason")
    CLIENT_TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    client_transaction_id: str
    customer_id: str
    kind: OfflineTransactionKind
    points: int
    device_time: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, client_transaction_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., kind: _Optional[_Union[OfflineTransactionKind, str]] = ..., points: _Optional[int] = ..., device_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class SyncOfflineTransactionsRequest(_message.Message):
    __slots__ = ("device_id", "transactions")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    transactions: _containers.RepeatedCompositeFieldContainer[OfflineTransaction]
    def __init__(self, device_id: _Optional[str] = ..., transactions: _Optional[_Iterable[_Union[OfflineTransaction, _Mapping]]] = ...) -> None: ...

class OfflineTransactionResult(_message.Message):
    __slots__ = ("client_transaction_id", "status", "reason", "transaction", "balance")
    CLIENT_TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    client_transaction_id: str
    status: OfflineSyncStatus
    reason: str
    transaction: PointsTransaction
    balance: PointsBalance
    def __init__(self, client_transaction_id: _Optional[str] = ..., status: _Optional[_Union[OfflineSyncStatus, str]] = ..., reason: _Optional[str] = ..., transaction: _Optional[_Union[PointsTransaction, _Mapping]] = ..., balance: _Optional[_Union[PointsBalance, _Mapping]] = ...) -> None: ...

class SyncOfflineTransactionsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[OfflineTransactionResult]
    def __init__(self, results: _Optional[_Iterable[_Union[OfflineTransactionResult, _Mapping]]] = ...) -> None: ...

class StreamPointsRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class StreamPointsResponse(_message.Message):
    __slots__ = ("balance",)
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    balance: PointsBalance
    def __init__(self, balance: _Optional[_Union[PointsBalance, _Mapping]] = ...) -> None: ...

class GetOrderEarningRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class GetOrderEarningResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: OrderEarning
    def __init__(self, order: _Optional[_Union[OrderEarning, _Mapping]] = ...) -> None: ...

class OrderEarning(_message.Message):
    __slots__ = ("order_id", "customer_id", "status", "points", "approved_points", "taken_back_points", "approve_time", "create_time", "note", "settings_version", "awards")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    APPROVED_POINTS_FIELD_NUMBER: _ClassVar[int]
    TAKEN_BACK_POINTS_FIELD_NUMBER: _ClassVar[int]
    APPROVE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_VERSION_FIELD_NUMBER: _ClassVar[int]
    AWARDS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    customer_id: str
    status: OrderEarningStatus
    points: int
    approved_points: int
    taken_back_points: int
    approve_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    note: str
    settings_version: int
    awards: _containers.RepeatedCompositeFieldContainer[RuleAward]
    def __init__(self, order_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., status: _Optional[_Union[OrderEarningStatus, str]] = ..., points: _Optional[int] = ..., approved_points: _Optional[int] = ..., taken_back_points: _Optional[int] = ..., approve_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., note: _Optional[str] = ..., settings_version: _Optional[int] = ..., awards: _Optional[_Iterable[_Union[RuleAward, _Mapping]]] = ...) -> None: ...

class CancelRedemptionRequest(_message.Message):
    __slots__ = ("redemption_id",)
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    redemption_id: str
    def __init__(self, redemption_id: _Optional[str] = ...) -> None: ...

class CancelRedemptionResponse(_message.Message):
    __slots__ = ("redemption_id", "refund", "balance")
    REDEMPTION_ID_FIELD_NUMBER: _ClassVar[int]
    REFUND_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    redemption_id: str
    refund: PointsTransaction
    balance: PointsBalance
    def __init__(self, redemption_id: _Optional[str] = ..., refund: _Optional[_Union[PointsTransaction, _Mapping]] = ..., balance: _Optional[_Union[PointsBalance, _Mapping]] = ...) -> None: ...

class RuleAward(_message.Message):
    __slots__ = ("rule_id", "points")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    points: int
    def __init__(self, rule_id: _Optional[str] = ..., points: _Optional[int] = ...) -> None: ...

class RecordActivityRequest(_message.Message):
    __slots__ = ("customer_id", "activity", "idempotency_key")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    activity: str
    idempotency_key: str
    def __init__(self, customer_id: _Optional[str] = ..., activity: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ActivityAward(_message.Message):
    __slots__ = ("rule_id", "status", "points", "transaction")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    status: ActivityAwardStatus
    points: int
    transaction: PointsTransaction
    def __init__(self, rule_id: _Optional[str] = ..., status: _Optional[_Union[ActivityAwardStatus, str]] = ..., points: _Optional[int] = ..., transaction: _Optional[_Union[PointsTransaction, _Mapping]] = ...) -> None: ...

class RecordActivityResponse(_message.Message):
    __slots__ = ("awards",)
    AWARDS_FIELD_NUMBER: _ClassVar[int]
    awards: _containers.RepeatedCompositeFieldContainer[ActivityAward]
    def __init__(self, awards: _Optional[_Iterable[_Union[ActivityAward, _Mapping]]] = ...) -> None: ...

class PreviewLine(_message.Message):
    __slots__ = ("product_id", "quantity", "price", "discount")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    quantity: int
    price: str
    discount: str
    def __init__(self, product_id: _Optional[str] = ..., quantity: _Optional[int] = ..., price: _Optional[str] = ..., discount: _Optional[str] = ...) -> None: ...

class PreviewEarningRequest(_message.Message):
    __slots__ = ("lines", "pos", "customer_id")
    LINES_FIELD_NUMBER: _ClassVar[int]
    POS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[PreviewLine]
    pos: bool
    customer_id: str
    def __init__(self, lines: _Optional[_Iterable[_Union[PreviewLine, _Mapping]]] = ..., pos: _Optional[bool] = ..., customer_id: _Optional[str] = ...) -> None: ...

class PreviewEarningResponse(_message.Message):
    __slots__ = ("points", "awards", "eligible_amount", "tier_id")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    AWARDS_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    TIER_ID_FIELD_NUMBER: _ClassVar[int]
    points: int
    awards: _containers.RepeatedCompositeFieldContainer[RuleAward]
    eligible_amount: str
    tier_id: str
    def __init__(self, points: _Optional[int] = ..., awards: _Optional[_Iterable[_Union[RuleAward, _Mapping]]] = ..., eligible_amount: _Optional[str] = ..., tier_id: _Optional[str] = ...) -> None: ...

class GetPointsLiabilityRequest(_message.Message):
    __slots__ = ("breakage_horizon_days",)
    BREAKAGE_HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    breakage_horizon_days: int
    def __init__(self, breakage_horizon_days: _Optional[int] = ...) -> None: ...

class LiabilityBucket(_message.Message):
    __slots__ = ("key", "name", "points", "value", "customers")
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    key: str
    name: str
    points: int
    value: str
    customers: int
    def __init__(self, key: _Optional[str] = ..., name: _Optional[str] = ..., points: _Optional[int] = ..., value: _Optional[str] = ..., customers: _Optional[int] = ...) -> None: ...

class Breakage(_message.Message):
    __slots__ = ("horizon_days", "earned_points", "redeemed_points", "expired_points", "outstanding_points", "taken_back_points", "rate")
    HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    EARNED_POINTS_FIELD_NUMBER: _ClassVar[int]
    REDEEMED_POINTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_POINTS_FIELD_NUMBER: _ClassVar[int]
    OUTSTANDING_POINTS_FIELD_NUMBER: _ClassVar[int]
    TAKEN_BACK_POINTS_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    horizon_days: int
    earned_points: int
    redeemed_points: int
    expired_points: int
    outstanding_points: int
    taken_back_points: int
    rate: str
    def __init__(self, horizon_days: _Optional[int] = ..., earned_points: _Optional[int] = ..., redeemed_points: _Optional[int] = ..., expired_points: _Optional[int] = ..., outstanding_points: _Optional[int] = ..., taken_back_points: _Optional[int] = ..., rate: _Optional[str] = ...) -> None: ...

class GetPointsLiabilityResponse(_message.Message):
    __slots__ = ("outstanding_points", "point_value", "rate_reward_id", "outstanding_value", "by_age", "by_tier", "breakage", "expected_value", "as_of")
    OUTSTANDING_POINTS_FIELD_NUMBER: _ClassVar[int]
    POINT_VALUE_FIELD_NUMBER: _ClassVar[int]
    RATE_REWARD_ID_FIELD_NUMBER: _ClassVar[int]
    OUTSTANDING_VALUE_FIELD_NUMBER: _ClassVar[int]
    BY_AGE_FIELD_NUMBER: _ClassVar[int]
    BY_TIER_FIELD_NUMBER: _ClassVar[int]
    BREAKAGE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    outstanding_points: int
    point_value: str
    rate_reward_id: str
    outstanding_value: str
    by_age: _containers.RepeatedCompositeFieldContainer[LiabilityBucket]
    by_tier: _containers.RepeatedCompositeFieldContainer[LiabilityBucket]
    breakage: Breakage
    expected_value: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, outstanding_points: _Optional[int] = ..., point_value: _Optional[str] = ..., rate_reward_id: _Optional[str] = ..., outstanding_value: _Optional[str] = ..., by_age: _Optional[_Iterable[_Union[LiabilityBucket, _Mapping]]] = ..., by_tier: _Optional[_Iterable[_Union[LiabilityBucket, _Mapping]]] = ..., breakage: _Optional[_Union[Breakage, _Mapping]] = ..., expected_value: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SimulateEarningRulesRequest(_message.Message):
    __slots__ = ("days", "rules")
    DAYS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    days: int
    rules: _containers.RepeatedCompositeFieldContainer[_core_pb2.EarningRule]
    def __init__(self, days: _Optional[int] = ..., rules: _Optional[_Iterable[_Union[_core_pb2.EarningRule, _Mapping]]] = ...) -> None: ...

class SimulatedRule(_message.Message):
    __slots__ = ("rule_id", "actual_points", "simulated_points", "simulated_orders")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_POINTS_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_POINTS_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_ORDERS_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    actual_points: int
    simulated_points: int
    simulated_orders: int
    def __init__(self, rule_id: _Optional[str] = ..., actual_points: _Optional[int] = ..., simulated_points: _Optional[int] = ..., simulated_orders: _Optional[int] = ...) -> None: ...

class SimulateEarningRulesResponse(_message.Message):
    __slots__ = ("orders", "rules", "actual_points", "simulated_points", "points_delta", "value_delta", "expected_value_delta", "point_value", "since")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_POINTS_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_POINTS_FIELD_NUMBER: _ClassVar[int]
    POINTS_DELTA_FIELD_NUMBER: _ClassVar[int]
    VALUE_DELTA_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_DELTA_FIELD_NUMBER: _ClassVar[int]
    POINT_VALUE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    orders: int
    rules: _containers.RepeatedCompositeFieldContainer[SimulatedRule]
    actual_points: int
    simulated_points: int
    points_delta: int
    value_delta: str
    expected_value_delta: str
    point_value: str
    since: _timestamp_pb2.Timestamp
    def __init__(self, orders: _Optional[int] = ..., rules: _Optional[_Iterable[_Union[SimulatedRule, _Mapping]]] = ..., actual_points: _Optional[int] = ..., simulated_points: _Optional[int] = ..., points_delta: _Optional[int] = ..., value_delta: _Optional[str] = ..., expected_value_delta: _Optional[str] = ..., point_value: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Integration(_message.Message):
    __slots__ = ("integration_id", "name", "secret_generation", "create_time", "rotate_time", "previous_valid_until")
    INTEGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECRET_GENERATION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ROTATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    integration_id: str
    name: str
    secret_generation: int
    create_time: _timestamp_pb2.Timestamp
    rotate_time: _timestamp_pb2.Timestamp
    previous_valid_until: _timestamp_pb2.Timestamp
    def __init__(self, integration_id: _Optional[str] = ..., name: _Optional[str] = ..., secret_generation: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rotate_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., previous_valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateIntegrationRequest(_message.Message):
    __slots__ = ("name", "idempotency_key")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    idempotency_key: str
    def __init__(self, name: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class CreateIntegrationResponse(_message.Message):
    __slots__ = ("integration", "secret")
    INTEGRATION_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    integration: Integration
    secret: str
    def __init__(self, integration: _Optional[_Union[Integration, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class RotateIntegrationSecretRequest(_message.Message):
    __slots__ = ("integration_id", "idempotency_key", "revoke_previous")
    INTEGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REVOKE_PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    integration_id: str
    idempotency_key: str
    revoke_previous: bool
    def __init__(self, integration_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., revoke_previous: _Optional[bool] = ...) -> None: ...

class RotateIntegrationSecretResponse(_message.Message):
    __slots__ = ("integration", "secret")
    INTEGRATION_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    integration: Integration
    secret: str
    def __init__(self, integration: _Optional[_Union[Integration, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListIntegrationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListIntegrationsResponse(_message.Message):
    __slots__ = ("integrations",)
    INTEGRATIONS_FIELD_NUMBER: _ClassVar[int]
    integrations: _containers.RepeatedCompositeFieldContainer[Integration]
    def __init__(self, integrations: _Optional[_Iterable[_Union[Integration, _Mapping]]] = ...) -> None: ...

class RecordSignedActivityRequest(_message.Message):
    __slots__ = ("body",)
    BODY_FIELD_NUMBER: _ClassVar[int]
    body: _httpbody_pb2.HttpBody
    def __init__(self, body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class RecordSignedActivityResponse(_message.Message):
    __slots__ = ("awards",)
    AWARDS_FIELD_NUMBER: _ClassVar[int]
    awards: _containers.RepeatedCompositeFieldContainer[ActivityAward]
    def __init__(self, awards: _Optional[_Iterable[_Union[ActivityAward, _Mapping]]] = ...) -> None: ...

class GetLiabilitySummaryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetLiabilitySummaryResponse(_message.Message):
    __slots__ = ("outstanding_points", "point_value", "outstanding_value", "earned_points", "redeemed_points", "expired_points", "adjusted_points", "reversed_points", "events", "update_time")
    OUTSTANDING_POINTS_FIELD_NUMBER: _ClassVar[int]
    POINT_VALUE_FIELD_NUMBER: _ClassVar[int]
    OUTSTANDING_VALUE_FIELD_NUMBER: _ClassVar[int]
    EARNED_POINTS_FIELD_NUMBER: _ClassVar[int]
    REDEEMED_POINTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_POINTS_FIELD_NUMBER: _ClassVar[int]
    ADJUSTED_POINTS_FIELD_NUMBER: _ClassVar[int]
    REVERSED_POINTS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    outstanding_points: int
    point_value: str
    outstanding_value: str
    earned_points: int
    redeemed_points: int
    expired_points: int
    adjusted_points: int
    reversed_points: int
    events: int
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, outstanding_points: _Optional[int] = ..., point_value: _Optional[str] = ..., outstanding_value: _Optional[str] = ..., earned_points: _Optional[int] = ..., redeemed_points: _Optional[int] = ..., expired_points: _Optional[int] = ..., adjusted_points: _Optional[int] = ..., reversed_points: _Optional[int] = ..., events: _Optional[int] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loyalnest.gen.options.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReferralStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFERRAL_STATUS_UNSPECIFIED: _ClassVar[ReferralStatus]
    REFERRAL_STATUS_ACTIVE: _ClassVar[ReferralStatus]
    REFERRAL_STATUS_EXPIRED: _ClassVar[ReferralStatus]

class FriendDiscountStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRIEND_DISCOUNT_STATUS_UNSPECIFIED: _ClassVar[FriendDiscountStatus]
    FRIEND_DISCOUNT_STATUS_NONE: _ClassVar[FriendDiscountStatus]
    FRIEND_DISCOUNT_STATUS_PENDING: _ClassVar[FriendDiscountStatus]
    FRIEND_DISCOUNT_STATUS_CREATED: _ClassVar[FriendDiscountStatus]

class ConversionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONVERSION_STATUS_UNSPECIFIED: _ClassVar[ConversionStatus]
    CONVERSION_STATUS_PENDING: _ClassVar[ConversionStatus]
    CONVERSION_STATUS_COMPLETED: _ClassVar[ConversionStatus]
    CONVERSION_STATUS_REFUSED: _ClassVar[ConversionStatus]
    CONVERSION_STATUS_CANCELLED: _ClassVar[ConversionStatus]

class InviteChannel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVITE_CHANNEL_UNSPECIFIED: _ClassVar[InviteChannel]
    INVITE_CHANNEL_EMAIL: _ClassVar[InviteChannel]
    INVITE_CHANNEL_SMS: _ClassVar[InviteChannel]

class InviteStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVITE_STATUS_UNSPECIFIED: _ClassVar[InviteStatus]
    INVITE_STATUS_QUEUED: _ClassVar[InviteStatus]
    INVITE_STATUS_SENT: _ClassVar[InviteStatus]
    INVITE_STATUS_FAILED: _ClassVar[InviteStatus]
REFERRAL_STATUS_UNSPECIFIED: ReferralStatus
REFERRAL_STATUS_ACTIVE: ReferralStatus
REFERRAL_STATUS_EXPIRED: ReferralStatus
FRIEND_DISCOUNT_STATUS_UNSPECIFIED: FriendDiscountStatus
FRIEND_DISCOUNT_STATUS_NONE: FriendDiscountStatus
FRIEND_DISCOUNT_STATUS_PENDING: FriendDiscountStatus
FRIEND_DISCOUNT_STATUS_CREATED: FriendDiscountStatus
CONVERSION_STATUS_UNSPECIFIED: ConversionStatus
CONVERSION_STATUS_PENDING: ConversionStatus
CONVERSION_STATUS_COMPLETED: ConversionStatus
CONVERSION_STATUS_REFUSED: ConversionStatus
CONVERSION_STATUS_CANCELLED: ConversionStatus
INVITE_CHANNEL_UNSPECIFIED: InviteChannel
INVITE_CHANNEL_EMAIL: InviteChannel
INVITE_CHANNEL_SMS: InviteChannel
INVITE_STATUS_UNSPECIFIED: InviteStatus
INVITE_STATUS_QUEUED: InviteStatus
INVITE_STATUS_SENT: InviteStatus
INVITE_STATUS_FAILED: InviteStatus

class Referral(_message.Message):
    __slots__ = ("referral_id", "referrer_id", "code", "link", "status", "create_time", "expire_time", "friend_discount")
    REFERRAL_ID_FIELD_NUMBER: _ClassVar[int]
    REFERRER_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    FRIEND_DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    referral_id: str
    referrer_id: str
    code: str
    link: str
    status: ReferralStatus
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    friend_discount: FriendDiscountStatus
    def __init__(self, referral_id: _Optional[str] = ..., referrer_id: _Optional[str] = ..., code: _Optional[str] = ..., link: _Optional[str] = ..., status: _Optional[_Union[ReferralStatus, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., friend_discount: _Optional[_Union[FriendDiscountStatus, str]] = ...) -> None: ...

class Conversion(_message.Message):
    __slots__ = ("conversion_id", "referee_id", "order_id", "status", "refusal_reason", "reward_points", "rewarded", "create_time", "complete_time")
    CONVERSION_ID_FIELD_NUMBER: _ClassVar[int]
    REFEREE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_REASON_FIELD_NUMBER: _ClassVar[int]
    REWARD_POINTS_FIELD_NUMBER: _ClassVar[int]
    REWARDED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_TIME_FIELD_NUMBER: _ClassVar[int]
    conversion_id: str
    referee_id: str
    order_id: str
    status: ConversionStatus
    refusal_reason: str
    reward_points: int
    rewarded: bool
    create_time: _timestamp_pb2.Timestamp
    complete_time: _timestamp_pb2.Timestamp
    def __init__(self, conversion_id: _Optional[str] = ..., referee_id: _Optional[str] = ..., order_id: _Optional[str] = ..., status: _Optional[_Union[ConversionStatus, str]] = ..., refusal_reason: _Optional[str] = ..., reward_points: _Optional[int] = ..., rewarded: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., complete_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateReferralRequest(_message.Message):
    __slots__ = ("referrer_id", "idempotency_key", "shop")
    REFERRER_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    SHOP_FIELD_NUMBER: _ClassVar[int]
    referrer_id: str
    idempotency_key: str
    shop: str
    def __init__(self, referrer_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., shop: _Optional[str] = ...) -> None: ...

class CreateReferralResponse(_message.Message):
    __slots__ = ("referral",)
    REFERRAL_FIELD_NUMBER: _ClassVar[int]
    referral: Referral
    def __init__(self, referral: _Optional[_Union[Referral, _Mapping]] = ...) -> None: ...

class GetReferralStatusRequest(_message.Message):
    __slots__ = ("referral_id", "code")
    REFERRAL_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    referral_id: str
    code: str
    def __init__(self, referral_id: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class GetReferralStatusResponse(_message.Message):
    __slots__ = ("referral", "conversions", "invites")
    REFERRAL_FIELD_NUMBER: _ClassVar[int]
    CONVERSIONS_FIELD_NUMBER: _ClassVar[int]
    INVITES_FIELD_NUMBER: _ClassVar[int]
    referral: Referral
    conversions: _containers.RepeatedCompositeFieldContainer[Conversion]
    invites: _containers.RepeatedCompositeFieldContainer[Invite]
    def __init__(self, referral: _Optional[_Union[Referral, _Mapping]] = ..., conversions: _Optional[_Iterable[_Union[Conversion, _Mapping]]] = ..., invites: _Optional[_Iterable[_Union[Invite, _Mapping]]] = ...) -> None: ...

class StreamReferralStatusResponse(_message.Message):
    __slots__ = ("referral", "conversions", "invites")
    REFERRAL_FIELD_NUMBER: _ClassVar[int]
    CONVERSIONS_FIELD_NUMBER: _ClassVar[int]
    INVITES_FIELD_NUMBER: _ClassVar[int]
    referral: Referral
    conversions: _containers.RepeatedCompositeFieldContainer[Conversion]
    invites: _containers.RepeatedCompositeFieldContainer[Invite]
    def __init__(self, referral: _Optional[_Union[Referral, _Mapping]] = ..., conversions: _Optional[_Iterable[_Union[Conversion, _Mapping]]] = ..., invites: _Optional[_Iterable[_Union[Invite, _Mapping]]] = ...) -> None: ...

class Invite(_message.Message):
    __slots__ = ("invite_id", "channel", "status", "provider", "fallback_used", "failure_reason", "create_time", "send_time")
    INVITE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_USED_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SEND_TIME_FIELD_NUMBER: _ClassVar[int]
    invite_id: str
    channel: InviteChannel
    status: InviteStatus
    provider: str
    fallback_used: bool
    failure_reason: str
    create_time: _timestamp_pb2.Timestamp
    send_time: _timestamp_pb2.Timestamp
    def __init__(self, invite_id: _Optional[str] = ..., channel: _Optional[_Union[InviteChannel, str]] = ..., status: _Optional[_Union[InviteStatus, str]] = ..., provider: _Optional[str] = ..., fallback_used: _Optional[bool] = ..., failure_reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., send_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SendInviteRequest(_message.Message):
    __slots__ = ("referrer_id", "channel", "friend_email", "friend_phone", "idempotency_key", "shop")
    REFERRER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    FRIEND_EMAIL_FIELD_NUMBER: _ClassVar[int]
    FRIEND_PHONE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    SHOP_FIELD_NUMBER: _ClassVar[int]
    referrer_id: str
    channel: InviteChannel
    friend_email: str
    friend_phone: str
    idempotency_key: str
    shop: str
    def __init__(self, referrer_id: _Optional[str] = ..., channel: _Optional[_Union[InviteChannel, str]] = ..., friend_email: _Optional[str] = ..., friend_phone: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., shop: _Optional[str] = ...) -> None: ...

class SendInviteResponse(_message.Message):
    __slots__ = ("referral", "invite")
    REFERRAL_FIELD_NUMBER: _ClassVar[int]
    INVITE_FIELD_NUMBER: _ClassVar[int]
    referral: Referral
    invite: Invite
    def __init__(self, referral: _Optional[_Union[Referral, _Mapping]] = ..., invite: _Optional[_Union[Invite, _Mapping]] = ...) -> None: ...

class GetReferralProgressRequest(_message.Message):
    __slots__ = ("referrer_id",)
    REFERRER_ID_FIELD_NUMBER: _ClassVar[int]
    referrer_id: str
    def __init__(self, referrer_id: _Optional[str] = ...) -> None: ...

class GetReferralProgressResponse(_message.Message):
    __slots__ = ("referrer_id", "completed", "pending", "points_earned", "next_milestone", "next_milestone_bonus_points")
    REFERRER_ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    POINTS_EARNED_FIELD_NUMBER: _ClassVar[int]
    NEXT_MILESTONE_FIELD_NUMBER: _ClassVar[int]
    NEXT_MILESTONE_BONUS_POINTS_FIELD_NUMBER: _ClassVar[int]
    referrer_id: str
    completed: int
    pending: int
    points_earned: int
    next_milestone: int
    next_milestone_bonus_points: int
    def __init__(self, referrer_id: _Optional[str] = ..., completed: _Optional[int] = ..., pending: _Optional[int] = ..., points_earned: _Optional[int] = ..., next_milestone: _Optional[int] = ..., next_milestone_bonus_points: _Optional[int] = ...) -> None: ...

class CompleteReferralRequest(_message.Message):
    __slots__ = ("referral_id", "code", "referee_id", "order_id", "idempotency_key")
    REFERRAL_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REFEREE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    referral_id: str
    code: str
    referee_id: str
    order_id: str
    idempotency_key: str
    def __init__(self, referral_id: _Optional[str] = ..., code: _Optional[str] = ..., referee_id: _Optional[str] = ..., order_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class CompleteReferralResponse(_message.Message):
    __slots__ = ("referral", "conversion")
    REFERRAL_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_FIELD_NUMBER: _ClassVar[int]
    referral: Referral
    conversion: Conversion
    def __init__(self, referral: _Optional[_Union[Referral, _Mapping]] = ..., conversion: _Optional[_Union[Conversion, _Mapping]] = ...) -> None: ...

class ClickReferralRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class ClickReferralResponse(_message.Message):
    __slots__ = ("location",)
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    location: str
    def __init__(self, location: _Optional[str] = ...) -> None: ...

class GetReferralStatsRequest(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetReferralStatsResponse(_message.Message):
    __slots__ = ("start_time", "end_time", "referrals_created", "clicks", "conversions", "refused", "conversion_rate", "invites_sent", "invites_failed")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    REFERRALS_CREATED_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    CONVERSIONS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    INVITES_SENT_FIELD_NUMBER: _ClassVar[int]
    INVITES_FAILED_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    referrals_created: int
    clicks: int
    conversions: int
    refused: int
    conversion_rate: float
    invites_sent: int
    invites_failed: int
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., referrals_created: _Optional[int] = ..., clicks: _Optional[int] = ..., conversions: _Optional[int] = ..., refused: _Optional[int] = ..., conversion_rate: _Optional[float] = ..., invites_sent: _Optional[int] = ..., invites_failed: _Optional[int] = ...) -> None: ...

class StreamReferralStatusRequest(_message.Message):
    __slots__ = ("referral_id",)
    REFERRAL_ID_FIELD_NUMBER: _ClassVar[int]
    referral_id: str
    def __init__(self, referral_id: _Optional[str] = ...) -> None: ...

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ReferralCreated(_message.Message):
    __slots__ = ("referral_id", "referrer_id", "referral_link_id", "channel")
    REFERRAL_ID_FIELD_NUMBER: _ClassVar[int]
    REFERRER_ID_FIELD_NUMBER: _ClassVar[int]
    REFERRAL_LINK_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    referral_id: str
    referrer_id: str
    referral_link_id: str
    channel: str
    def __init__(self, referral_id: _Optional[str] = ..., referrer_id: _Optional[str] = ..., referral_link_id: _Optional[str] = ..., channel: _Optional[str] = ...) -> None: ...

class ReferralCompleted(_message.Message):
    __slots__ = ("referral_id", "referrer_id", "referee_id", "order_id")
    REFERRAL_ID_FIELD_NUMBER: _ClassVar[int]
    REFERRER_ID_FIELD_NUMBER: _ClassVar[int]
    REFEREE_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    referral_id: str
    referrer_id: str
    referee_id: str
    order_id: str
    def __init__(self, referral_id: _Optional[str] = ..., referrer_id: _Optional[str] = ..., referee_id: _Optional[str] = ..., order_id: _Optional[str] = ...) -> None: ...

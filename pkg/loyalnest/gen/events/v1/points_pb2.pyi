import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PointsEarned(_message.Message):
    __slots__ = ("customer_id", "transaction_id", "sequence", "points", "balance_after", "lifetime_earned_after", "reason", "rule_id")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_EARNED_AFTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    transaction_id: str
    sequence: int
    points: int
    balance_after: int
    lifetime_earned_after: int
    reason: str
    rule_id: str
    def __init__(self, customer_id: _Optional[str] = ..., transaction_id: _Optional[str] = ..., sequence: _Optional[int] = ..., points: _Optional[int] = ..., balance_after: _Optional[int] = ..., lifetime_earned_after: _Optional[int] = ..., reason: _Optional[str] = ..., rule_id: _Optional[str] = ...) -> None: ...

class PointsRedeemed(_message.Message):
    __slots__ = ("customer_id", "transaction_id", "sequence", "points", "balance_after", "lifetime_redeemed_after", "reason")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_REDEEMED_AFTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    transaction_id: str
    sequence: int
    points: int
    balance_after: int
    lifetime_redeemed_after: int
    reason: str
    def __init__(self, customer_id: _Optional[str] = ..., transaction_id: _Optional[str] = ..., sequence: _Optional[int] = ..., points: _Optional[int] = ..., balance_after: _Optional[int] = ..., lifetime_redeemed_after: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class PointsAdjusted(_message.Message):
    __slots__ = ("customer_id", "transaction_id", "sequence", "points", "balance_after", "reason")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    transaction_id: str
    sequence: int
    points: int
    balance_after: int
    reason: str
    def __init__(self, customer_id: _Optional[str] = ..., transaction_id: _Optional[str] = ..., sequence: _Optional[int] = ..., points: _Optional[int] = ..., balance_after: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class PointsReversed(_message.Message):
    __slots__ = ("customer_id", "transaction_id", "sequence", "points", "balance_after", "lifetime_earned_after", "lifetime_redeemed_after", "reason")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_EARNED_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_REDEEMED_AFTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    transaction_id: str
    sequence: int
    points: int
    balance_after: int
    lifetime_earned_after: int
    lifetime_redeemed_after: int
    reason: str
    def __init__(self, customer_id: _Optional[str] = ..., transaction_id: _Optional[str] = ..., sequence: _Optional[int] = ..., points: _Optional[int] = ..., balance_after: _Optional[int] = ..., lifetime_earned_after: _Optional[int] = ..., lifetime_redeemed_after: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class PointsExpired(_message.Message):
    __slots__ = ("customer_id", "transaction_id", "sequence", "points", "balance_after", "reason")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    transaction_id: str
    sequence: int
    points: int
    balance_after: int
    reason: str
    def __init__(self, customer_id: _Optional[str] = ..., transaction_id: _Optional[str] = ..., sequence: _Optional[int] = ..., points: _Optional[int] = ..., balance_after: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class PointsExpiring(_message.Message):
    __slots__ = ("customer_id", "points", "expire_time", "balance")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    points: int
    expire_time: _timestamp_pb2.Timestamp
    balance: int
    def __init__(self, customer_id: _Optional[str] = ..., points: _Optional[int] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., balance: _Optional[int] = ...) -> None: ...

class TierChanged(_message.Message):
    __slots__ = ("customer_id", "previous_tier_id", "tier_id", "qualifying_points", "term_end_time", "tags_added", "tags_removed")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_TIER_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_ID_FIELD_NUMBER: _ClassVar[int]
    QUALIFYING_POINTS_FIELD_NUMBER: _ClassVar[int]
    TERM_END_TIME_FIELD_NUMBER: _ClassVar[int]
    TAGS_ADDED_FIELD_NUMBER: _ClassVar[int]
    TAGS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    previous_tier_id: str
    tier_id: str
    qualifying_points: int
    term_end_time: _timestamp_pb2.Timestamp
    tags_added: _containers.RepeatedScalarFieldContainer[str]
    tags_removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, customer_id: _Optional[str] = ..., previous_tier_id: _Optional[str] = ..., tier_id: _Optional[str] = ..., qualifying_points: _Optional[int] = ..., term_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tags_added: _Optional[_Iterable[str]] = ..., tags_removed: _Optional[_Iterable[str]] = ...) -> None: ...

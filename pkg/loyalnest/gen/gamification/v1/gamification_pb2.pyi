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

class RuleKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RULE_KIND_UNSPECIFIED: _ClassVar[RuleKind]
    RULE_KIND_POINTS: _ClassVar[RuleKind]
    RULE_KIND_ORDERS: _ClassVar[RuleKind]
    RULE_KIND_REFERRALS: _ClassVar[RuleKind]
    RULE_KIND_STREAK_MONTHS: _ClassVar[RuleKind]
    RULE_KIND_RFM_SEGMENT: _ClassVar[RuleKind]
    RULE_KIND_MANUAL: _ClassVar[RuleKind]

class Period(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PERIOD_UNSPECIFIED: _ClassVar[Period]
    PERIOD_ALL_TIME: _ClassVar[Period]
    PERIOD_MONTH: _ClassVar[Period]
    PERIOD_WEEK: _ClassVar[Period]
RULE_KIND_UNSPECIFIED: RuleKind
RULE_KIND_POINTS: RuleKind
RULE_KIND_ORDERS: RuleKind
RULE_KIND_REFERRALS: RuleKind
RULE_KIND_STREAK_MONTHS: RuleKind
RULE_KIND_RFM_SEGMENT: RuleKind
RULE_KIND_MANUAL: RuleKind
PERIOD_UNSPECIFIED: Period
PERIOD_ALL_TIME: Period
PERIOD_MONTH: Period
PERIOD_WEEK: Period

class BadgeRule(_message.Message):
    __slots__ = ("rule_id", "name", "kind", "threshold", "segment", "create_time")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    name: str
    kind: RuleKind
    threshold: int
    segment: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, rule_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[RuleKind, str]] = ..., threshold: _Optional[int] = ..., segment: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateBadgeRuleRequest(_message.Message):
    __slots__ = ("rule", "idempotency_key")
    RULE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    rule: BadgeRule
    idempotency_key: str
    def __init__(self, rule: _Optional[_Union[BadgeRule, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class CreateBadgeRuleResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: BadgeRule
    def __init__(self, rule: _Optional[_Union[BadgeRule, _Mapping]] = ...) -> None: ...

class ListBadgeRulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBadgeRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[BadgeRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[BadgeRule, _Mapping]]] = ...) -> None: ...

class Badge(_message.Message):
    __slots__ = ("badge_id", "rule_id", "name", "kind", "awarded_by", "award_time")
    BADGE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AWARDED_BY_FIELD_NUMBER: _ClassVar[int]
    AWARD_TIME_FIELD_NUMBER: _ClassVar[int]
    badge_id: str
    rule_id: str
    name: str
    kind: RuleKind
    awarded_by: str
    award_time: _timestamp_pb2.Timestamp
    def __init__(self, badge_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[RuleKind, str]] = ..., awarded_by: _Optional[str] = ..., award_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BadgeProgress(_message.Message):
    __slots__ = ("rule_id", "name", "kind", "current", "target")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    name: str
    kind: RuleKind
    current: int
    target: int
    def __init__(self, rule_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[RuleKind, str]] = ..., current: _Optional[int] = ..., target: _Optional[int] = ...) -> None: ...

class AwardBadgeRequest(_message.Message):
    __slots__ = ("customer_id", "rule_id", "idempotency_key")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    rule_id: str
    idempotency_key: str
    def __init__(self, customer_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class AwardBadgeResponse(_message.Message):
    __slots__ = ("badge",)
    BADGE_FIELD_NUMBER: _ClassVar[int]
    badge: Badge
    def __init__(self, badge: _Optional[_Union[Badge, _Mapping]] = ...) -> None: ...

class GetCustomerBadgesRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class GetCustomerBadgesResponse(_message.Message):
    __slots__ = ("badges", "progress")
    BADGES_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    badges: _containers.RepeatedCompositeFieldContainer[Badge]
    progress: _containers.RepeatedCompositeFieldContainer[BadgeProgress]
    def __init__(self, badges: _Optional[_Iterable[_Union[Badge, _Mapping]]] = ..., progress: _Optional[_Iterable[_Union[BadgeProgress, _Mapping]]] = ...) -> None: ...

class LeaderboardEntry(_message.Message):
    __slots__ = ("rank", "customer_id", "score")
    RANK_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    rank: int
    customer_id: str
    score: int
    def __init__(self, rank: _Optional[int] = ..., customer_id: _Optional[str] = ..., score: _Optional[int] = ...) -> None: ...

class GetLeaderboardRequest(_message.Message):
    __slots__ = ("period", "page_size", "page_token", "customer_id")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    period: Period
    page_size: int
    page_token: str
    customer_id: str
    def __init__(self, period: _Optional[_Union[Period, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., customer_id: _Optional[str] = ...) -> None: ...

class GetLeaderboardResponse(_message.Message):
    __slots__ = ("entries", "next_page_token", "own", "period_key")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OWN_FIELD_NUMBER: _ClassVar[int]
    PERIOD_KEY_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LeaderboardEntry]
    next_page_token: str
    own: LeaderboardEntry
    period_key: str
    def __init__(self, entries: _Optional[_Iterable[_Union[LeaderboardEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., own: _Optional[_Union[LeaderboardEntry, _Mapping]] = ..., period_key: _Optional[str] = ...) -> None: ...

class SetLeaderboardOptOutRequest(_message.Message):
    __slots__ = ("customer_id", "opted_out", "idempotency_key")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    OPTED_OUT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    opted_out: bool
    idempotency_key: str
    def __init__(self, customer_id: _Optional[str] = ..., opted_out: _Optional[bool] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SetLeaderboardOptOutResponse(_message.Message):
    __slots__ = ("opted_out",)
    OPTED_OUT_FIELD_NUMBER: _ClassVar[int]
    opted_out: bool
    def __init__(self, opted_out: _Optional[bool] = ...) -> None: ...

import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loyalnest.gen.events.v1 import rfm_pb2 as _rfm_pb2
from loyalnest.gen.options.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NudgeAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NUDGE_ACTION_UNSPECIFIED: _ClassVar[NudgeAction]
    NUDGE_ACTION_PERSONAL_OUTREACH: _ClassVar[NudgeAction]
    NUDGE_ACTION_WIN_BACK_OFFER: _ClassVar[NudgeAction]
    NUDGE_ACTION_REACTIVATION_REMINDER: _ClassVar[NudgeAction]
    NUDGE_ACTION_SECOND_PURCHASE_INCENTIVE: _ClassVar[NudgeAction]
    NUDGE_ACTION_LIMITED_TIME_OFFER: _ClassVar[NudgeAction]
    NUDGE_ACTION_LOYALTY_INVITE: _ClassVar[NudgeAction]
    NUDGE_ACTION_REFERRAL_ASK: _ClassVar[NudgeAction]
NUDGE_ACTION_UNSPECIFIED: NudgeAction
NUDGE_ACTION_PERSONAL_OUTREACH: NudgeAction
NUDGE_ACTION_WIN_BACK_OFFER: NudgeAction
NUDGE_ACTION_REACTIVATION_REMINDER: NudgeAction
NUDGE_ACTION_SECOND_PURCHASE_INCENTIVE: NudgeAction
NUDGE_ACTION_LIMITED_TIME_OFFER: NudgeAction
NUDGE_ACTION_LOYALTY_INVITE: NudgeAction
NUDGE_ACTION_REFERRAL_ASK: NudgeAction

class CustomerRfm(_message.Message):
    __slots__ = ("customer_id", "scores", "group", "segment", "stage", "orders", "monetary", "currency_code", "recency_activity", "first_order_time", "last_order_time", "score_time")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    RECENCY_ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    FIRST_ORDER_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ORDER_TIME_FIELD_NUMBER: _ClassVar[int]
    SCORE_TIME_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    scores: _rfm_pb2.RfmScores
    group: _rfm_pb2.RfmGroup
    segment: _rfm_pb2.RfmSegment
    stage: _rfm_pb2.LifecycleStage
    orders: int
    monetary: str
    currency_code: str
    recency_activity: float
    first_order_time: _timestamp_pb2.Timestamp
    last_order_time: _timestamp_pb2.Timestamp
    score_time: _timestamp_pb2.Timestamp
    def __init__(self, customer_id: _Optional[str] = ..., scores: _Optional[_Union[_rfm_pb2.RfmScores, _Mapping]] = ..., group: _Optional[_Union[_rfm_pb2.RfmGroup, str]] = ..., segment: _Optional[_Union[_rfm_pb2.RfmSegment, str]] = ..., stage: _Optional[_Union[_rfm_pb2.LifecycleStage, str]] = ..., orders: _Optional[int] = ..., monetary: _Optional[str] = ..., currency_code: _Optional[str] = ..., recency_activity: _Optional[float] = ..., first_order_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_order_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., score_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GroupCount(_message.Message):
    __slots__ = ("group", "customers")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    group: _rfm_pb2.RfmGroup
    customers: int
    def __init__(self, group: _Optional[_Union[_rfm_pb2.RfmGroup, str]] = ..., customers: _Optional[int] = ...) -> None: ...

class GroupCountsAt(_message.Message):
    __slots__ = ("time", "counts")
    TIME_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    counts: _containers.RepeatedCompositeFieldContainer[GroupCount]
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., counts: _Optional[_Iterable[_Union[GroupCount, _Mapping]]] = ...) -> None: ...

class Cutoffs(_message.Message):
    __slots__ = ("recency_key", "monetary", "customers", "compute_time", "half_life_days")
    RECENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_TIME_FIELD_NUMBER: _ClassVar[int]
    HALF_LIFE_DAYS_FIELD_NUMBER: _ClassVar[int]
    recency_key: _containers.RepeatedScalarFieldContainer[float]
    monetary: _containers.RepeatedScalarFieldContainer[float]
    customers: int
    compute_time: _timestamp_pb2.Timestamp
    half_life_days: float
    def __init__(self, recency_key: _Optional[_Iterable[float]] = ..., monetary: _Optional[_Iterable[float]] = ..., customers: _Optional[int] = ..., compute_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., half_life_days: _Optional[float] = ...) -> None: ...

class GetSegmentsRequest(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSegmentsResponse(_message.Message):
    __slots__ = ("counts", "customers", "history", "cutoffs")
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    CUTOFFS_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.RepeatedCompositeFieldContainer[GroupCount]
    customers: int
    history: _containers.RepeatedCompositeFieldContainer[GroupCountsAt]
    cutoffs: Cutoffs
    def __init__(self, counts: _Optional[_Iterable[_Union[GroupCount, _Mapping]]] = ..., customers: _Optional[int] = ..., history: _Optional[_Iterable[_Union[GroupCountsAt, _Mapping]]] = ..., cutoffs: _Optional[_Union[Cutoffs, _Mapping]] = ...) -> None: ...

class ScoreRange(_message.Message):
    __slots__ = ("min", "max")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    min: int
    max: int
    def __init__(self, min: _Optional[int] = ..., max: _Optional[int] = ...) -> None: ...

class SegmentDefinition(_message.Message):
    __slots__ = ("recency", "frequency", "monetary", "groups", "stages")
    RECENCY_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    recency: ScoreRange
    frequency: ScoreRange
    monetary: ScoreRange
    groups: _containers.RepeatedScalarFieldContainer[_rfm_pb2.RfmGroup]
    stages: _containers.RepeatedScalarFieldContainer[_rfm_pb2.LifecycleStage]
    def __init__(self, recency: _Optional[_Union[ScoreRange, _Mapping]] = ..., frequency: _Optional[_Union[ScoreRange, _Mapping]] = ..., monetary: _Optional[_Union[ScoreRange, _Mapping]] = ..., groups: _Optional[_Iterable[_Union[_rfm_pb2.RfmGroup, str]]] = ..., stages: _Optional[_Iterable[_Union[_rfm_pb2.LifecycleStage, str]]] = ...) -> None: ...

class PreviewSegmentRequest(_message.Message):
    __slots__ = ("definition", "sample_size")
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    definition: SegmentDefinition
    sample_size: int
    def __init__(self, definition: _Optional[_Union[SegmentDefinition, _Mapping]] = ..., sample_size: _Optional[int] = ...) -> None: ...

class PreviewSegmentResponse(_message.Message):
    __slots__ = ("customers", "sample", "cached")
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    customers: int
    sample: _containers.RepeatedCompositeFieldContainer[CustomerRfm]
    cached: bool
    def __init__(self, customers: _Optional[int] = ..., sample: _Optional[_Iterable[_Union[CustomerRfm, _Mapping]]] = ..., cached: _Optional[bool] = ...) -> None: ...

class Nudge(_message.Message):
    __slots__ = ("customer_id", "group", "action", "reason", "rfm")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RFM_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    group: _rfm_pb2.RfmGroup
    action: NudgeAction
    reason: str
    rfm: CustomerRfm
    def __init__(self, customer_id: _Optional[str] = ..., group: _Optional[_Union[_rfm_pb2.RfmGroup, str]] = ..., action: _Optional[_Union[NudgeAction, str]] = ..., reason: _Optional[str] = ..., rfm: _Optional[_Union[CustomerRfm, _Mapping]] = ...) -> None: ...

class ListNudgesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "groups")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    groups: _containers.RepeatedScalarFieldContainer[_rfm_pb2.RfmGroup]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., groups: _Optional[_Iterable[_Union[_rfm_pb2.RfmGroup, str]]] = ...) -> None: ...

class ListNudgesResponse(_message.Message):
    __slots__ = ("nudges", "next_page_token")
    NUDGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    nudges: _containers.RepeatedCompositeFieldContainer[Nudge]
    next_page_token: str
    def __init__(self, nudges: _Optional[_Iterable[_Union[Nudge, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetCustomerRFMRequest(_message.Message):
    __slots__ = ("customer_id", "history_size")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_SIZE_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    history_size: int
    def __init__(self, customer_id: _Optional[str] = ..., history_size: _Optional[int] = ...) -> None: ...

class RfmHistoryEntry(_message.Message):
    __slots__ = ("scores", "group", "stage", "orders", "monetary", "time")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    scores: _rfm_pb2.RfmScores
    group: _rfm_pb2.RfmGroup
    stage: _rfm_pb2.LifecycleStage
    orders: int
    monetary: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, scores: _Optional[_Union[_rfm_pb2.RfmScores, _Mapping]] = ..., group: _Optional[_Union[_rfm_pb2.RfmGroup, str]] = ..., stage: _Optional[_Union[_rfm_pb2.LifecycleStage, str]] = ..., orders: _Optional[int] = ..., monetary: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetCustomerRFMResponse(_message.Message):
    __slots__ = ("customer", "history")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    customer: CustomerRfm
    history: _containers.RepeatedCompositeFieldContainer[RfmHistoryEntry]
    def __init__(self, customer: _Optional[_Union[CustomerRfm, _Mapping]] = ..., history: _Optional[_Iterable[_Union[RfmHistoryEntry, _Mapping]]] = ...) -> None: ...

class StreamVisualizationsRequest(_message.Message):
    __slots__ = ("max_points",)
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    max_points: int
    def __init__(self, max_points: _Optional[int] = ...) -> None: ...

class ScatterPoint(_message.Message):
    __slots__ = ("customer_id", "days_since_last_order", "monetary", "scores", "group")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    DAYS_SINCE_LAST_ORDER_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    days_since_last_order: float
    monetary: str
    scores: _rfm_pb2.RfmScores
    group: _rfm_pb2.RfmGroup
    def __init__(self, customer_id: _Optional[str] = ..., days_since_last_order: _Optional[float] = ..., monetary: _Optional[str] = ..., scores: _Optional[_Union[_rfm_pb2.RfmScores, _Mapping]] = ..., group: _Optional[_Union[_rfm_pb2.RfmGroup, str]] = ...) -> None: ...

class Scatter(_message.Message):
    __slots__ = ("points", "customers", "sampled")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[ScatterPoint]
    customers: int
    sampled: bool
    def __init__(self, points: _Optional[_Iterable[_Union[ScatterPoint, _Mapping]]] = ..., customers: _Optional[int] = ..., sampled: _Optional[bool] = ...) -> None: ...

class StreamVisualizationsResponse(_message.Message):
    __slots__ = ("initial", "update")
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    initial: Scatter
    update: ScatterPoint
    def __init__(self, initial: _Optional[_Union[Scatter, _Mapping]] = ..., update: _Optional[_Union[ScatterPoint, _Mapping]] = ...) -> None: ...

from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RfmSegment(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RFM_SEGMENT_UNSPECIFIED: _ClassVar[RfmSegment]
    RFM_SEGMENT_HIGH_VALUE: _ClassVar[RfmSegment]
    RFM_SEGMENT_AT_RISK: _ClassVar[RfmSegment]
    RFM_SEGMENT_NEW: _ClassVar[RfmSegment]

class RfmGroup(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RFM_GROUP_UNSPECIFIED: _ClassVar[RfmGroup]
    RFM_GROUP_PROSPECT: _ClassVar[RfmGroup]
    RFM_GROUP_CHAMPIONS: _ClassVar[RfmGroup]
    RFM_GROUP_LOYAL: _ClassVar[RfmGroup]
    RFM_GROUP_POTENTIAL_LOYALIST: _ClassVar[RfmGroup]
    RFM_GROUP_NEW: _ClassVar[RfmGroup]
    RFM_GROUP_PROMISING: _ClassVar[RfmGroup]
    RFM_GROUP_NEEDS_ATTENTION: _ClassVar[RfmGroup]
    RFM_GROUP_ABOUT_TO_SLEEP: _ClassVar[RfmGroup]
    RFM_GROUP_AT_RISK: _ClassVar[RfmGroup]
    RFM_GROUP_CANT_LOSE: _ClassVar[RfmGroup]
    RFM_GROUP_HIBERNATING: _ClassVar[RfmGroup]
    RFM_GROUP_LOST: _ClassVar[RfmGroup]

class LifecycleStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIFECYCLE_STAGE_UNSPECIFIED: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_PROSPECT: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_NEW: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_ACTIVE: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_LAPSING: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_CHURNED: _ClassVar[LifecycleStage]
RFM_SEGMENT_UNSPECIFIED: RfmSegment
RFM_SEGMENT_HIGH_VALUE: RfmSegment
RFM_SEGMENT_AT_RISK: RfmSegment
RFM_SEGMENT_NEW: RfmSegment
RFM_GROUP_UNSPECIFIED: RfmGroup
RFM_GROUP_PROSPECT: RfmGroup
RFM_GROUP_CHAMPIONS: RfmGroup
RFM_GROUP_LOYAL: RfmGroup
RFM_GROUP_POTENTIAL_LOYALIST: RfmGroup
RFM_GROUP_NEW: RfmGroup
RFM_GROUP_PROMISING: RfmGroup
RFM_GROUP_NEEDS_ATTENTION: RfmGroup
RFM_GROUP_ABOUT_TO_SLEEP: RfmGroup
RFM_GROUP_AT_RISK: RfmGroup
RFM_GROUP_CANT_LOSE: RfmGroup
RFM_GROUP_HIBERNATING: RfmGroup
RFM_GROUP_LOST: RfmGroup
LIFECYCLE_STAGE_UNSPECIFIED: LifecycleStage
LIFECYCLE_STAGE_PROSPECT: LifecycleStage
LIFECYCLE_STAGE_NEW: LifecycleStage
LIFECYCLE_STAGE_ACTIVE: LifecycleStage
LIFECYCLE_STAGE_LAPSING: LifecycleStage
LIFECYCLE_STAGE_CHURNED: LifecycleStage

class RfmScore(_message.Message):
    __slots__ = ("recency", "frequency", "monetary_minor_units", "currency_code")
    RECENCY_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    MONETARY_MINOR_UNITS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    recency: float
    frequency: int
    monetary_minor_units: int
    currency_code: str
    def __init__(self, recency: _Optional[float] = ..., frequency: _Optional[int] = ..., monetary_minor_units: _Optional[int] = ..., currency_code: _Optional[str] = ...) -> None: ...

class RfmUpdated(_message.Message):
    __slots__ = ("customer_id", "score", "segment", "previous_segment", "scores", "group", "previous_group", "stage")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_GROUP_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    score: RfmScore
    segment: RfmSegment
    previous_segment: RfmSegment
    scores: RfmScores
    group: RfmGroup
    previous_group: RfmGroup
    stage: LifecycleStage
    def __init__(self, customer_id: _Optional[str] = ..., score: _Optional[_Union[RfmScore, _Mapping]] = ..., segment: _Optional[_Union[RfmSegment, str]] = ..., previous_segment: _Optional[_Union[RfmSegment, str]] = ..., scores: _Optional[_Union[RfmScores, _Mapping]] = ..., group: _Optional[_Union[RfmGroup, str]] = ..., previous_group: _Optional[_Union[RfmGroup, str]] = ..., stage: _Optional[_Union[LifecycleStage, str]] = ...) -> None: ...

class RfmScores(_message.Message):
    __slots__ = ("recency", "frequency", "monetary")
    RECENCY_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_NUMBER: _ClassVar[int]
    recency: int
    frequency: int
    monetary: int
    def __init__(self, recency: _Optional[int] = ..., frequency: _Optional[int] = ..., monetary: _Optional[int] = ...) -> None: ...

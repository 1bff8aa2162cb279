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
RFM_SEGMENT_UNSPECIFIED: RfmSegment
RFM_SEGMENT_HIGH_VALUE: RfmSegment
RFM_SEGMENT_AT_RISK: RfmSegment
RFM_SEGMENT_NEW: RfmSegment

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
    __slots__ = ("customer_id", "score", "segment", "previous_segment")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    score: RfmScore
    segment: RfmSegment
    previous_segment: RfmSegment
    def __init__(self, customer_id: _Optional[str] = ..., score: _Optional[_Union[RfmScore, _Mapping]] = ..., segment: _Optional[_Union[RfmSegment, str]] = ..., previous_segment: _Optional[_Union[RfmSegment, str]] = ...) -> None: ...

from loyalnest.gen.events.v1 import rfm_pb2 as _rfm_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProductRfmUpdated(_message.Message):
    __slots__ = ("product_id", "score")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    score: _rfm_pb2.RfmScore
    def __init__(self, product_id: _Optional[str] = ..., score: _Optional[_Union[_rfm_pb2.RfmScore, _Mapping]] = ...) -> None: ...

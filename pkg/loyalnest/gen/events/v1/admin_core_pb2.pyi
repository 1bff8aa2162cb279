from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GdprRequestType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GDPR_REQUEST_TYPE_UNSPECIFIED: _ClassVar[GdprRequestType]
    GDPR_REQUEST_TYPE_DATA_REQUEST: _ClassVar[GdprRequestType]
    GDPR_REQUEST_TYPE_REDACT: _ClassVar[GdprRequestType]
GDPR_REQUEST_TYPE_UNSPECIFIED: GdprRequestType
GDPR_REQUEST_TYPE_DATA_REQUEST: GdprRequestType
GDPR_REQUEST_TYPE_REDACT: GdprRequestType

class GdprRequestCreated(_message.Message):
    __slots__ = ("request_id", "customer_id", "type")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    customer_id: str
    type: GdprRequestType
    def __init__(self, request_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., type: _Optional[_Union[GdprRequestType, str]] = ...) -> None: ...

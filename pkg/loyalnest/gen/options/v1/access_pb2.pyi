from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor
ACCESS_FIELD_NUMBER: _ClassVar[int]
access: _descriptor.FieldDescriptor

class AccessPolicy(_message.Message):
    __slots__ = ("public", "permission", "internal", "authenticated")
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    AUTHENTICATED_FIELD_NUMBER: _ClassVar[int]
    public: bool
    permission: str
    internal: bool
    authenticated: bool
    def __init__(self, public: _Optional[bool] = ..., permission: _Optional[str] = ..., internal: _Optional[bool] = ..., authenticated: _Optional[bool] = ...) -> None: ...

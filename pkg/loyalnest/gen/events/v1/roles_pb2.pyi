from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RoleAssigned(_message.Message):
    __slots__ = ("role_id", "user_id")
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    role_id: str
    user_id: str
    def __init__(self, role_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class RoleUpdated(_message.Message):
    __slots__ = ("role_id", "permissions")
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    role_id: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, role_id: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ...) -> None: ...

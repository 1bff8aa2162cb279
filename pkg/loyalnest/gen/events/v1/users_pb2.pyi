from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UserKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USER_KIND_UNSPECIFIED: _ClassVar[UserKind]
    USER_KIND_CUSTOMER: _ClassVar[UserKind]
    USER_KIND_STAFF: _ClassVar[UserKind]
USER_KIND_UNSPECIFIED: UserKind
USER_KIND_CUSTOMER: UserKind
USER_KIND_STAFF: UserKind

class UserCreated(_message.Message):
    __slots__ = ("user_id", "kind", "role_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    kind: UserKind
    role_id: str
    def __init__(self, user_id: _Optional[str] = ..., kind: _Optional[_Union[UserKind, str]] = ..., role_id: _Optional[str] = ...) -> None: ...

class UserUpdated(_message.Message):
    __slots__ = ("user_id", "update_mask", "role_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    update_mask: _field_mask_pb2.FieldMask
    role_id: str
    def __init__(self, user_id: _Optional[str] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., role_id: _Optional[str] = ...) -> None: ...

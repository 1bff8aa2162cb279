from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class BadgeAwarded(_message.Message):
    __slots__ = ("badge_id", "customer_id", "badge_type")
    BADGE_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    BADGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    badge_id: str
    customer_id: str
    badge_type: str
    def __init__(self, badge_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., badge_type: _Optional[str] = ...) -> None: ...

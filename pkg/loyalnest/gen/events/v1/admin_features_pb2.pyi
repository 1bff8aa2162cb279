from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmailStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMAIL_STATUS_UNSPECIFIED: _ClassVar[EmailStatus]
    EMAIL_STATUS_QUEUED: _ClassVar[EmailStatus]
    EMAIL_STATUS_SENT: _ClassVar[EmailStatus]
    EMAIL_STATUS_FAILED: _ClassVar[EmailStatus]
EMAIL_STATUS_UNSPECIFIED: EmailStatus
EMAIL_STATUS_QUEUED: EmailStatus
EMAIL_STATUS_SENT: EmailStatus
EMAIL_STATUS_FAILED: EmailStatus

class EmailEventCreated(_message.Message):
    __slots__ = ("email_event_id", "customer_id", "template_id", "provider", "status")
    EMAIL_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    email_event_id: str
    customer_id: str
    template_id: str
    provider: str
    status: EmailStatus
    def __init__(self, email_event_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., template_id: _Optional[str] = ..., provider: _Optional[str] = ..., status: _Optional[_Union[EmailStatus, str]] = ...) -> None: ...

import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loyalnest.gen.options.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GDPRRequestType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GDPR_REQUEST_TYPE_UNSPECIFIED: _ClassVar[GDPRRequestType]
    GDPR_REQUEST_TYPE_DATA_REQUEST: _ClassVar[GDPRRequestType]
    GDPR_REQUEST_TYPE_CUSTOMER_REDACT: _ClassVar[GDPRRequestType]
    GDPR_REQUEST_TYPE_SHOP_REDACT: _ClassVar[GDPRRequestType]

class GDPRRequestStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GDPR_REQUEST_STATUS_UNSPECIFIED: _ClassVar[GDPRRequestStatus]
    GDPR_REQUEST_STATUS_PENDING: _ClassVar[GDPRRequestStatus]
    GDPR_REQUEST_STATUS_COMPLETED: _ClassVar[GDPRRequestStatus]
GDPR_REQUEST_TYPE_UNSPECIFIED: GDPRRequestType
GDPR_REQUEST_TYPE_DATA_REQUEST: GDPRRequestType
GDPR_REQUEST_TYPE_CUSTOMER_REDACT: GDPRRequestType
GDPR_REQUEST_TYPE_SHOP_REDACT: GDPRRequestType
GDPR_REQUEST_STATUS_UNSPECIFIED: GDPRRequestStatus
GDPR_REQUEST_STATUS_PENDING: GDPRRequestStatus
GDPR_REQUEST_STATUS_COMPLETED: GDPRRequestStatus

class GDPRStep(_message.Message):
    __slots__ = ("service", "status", "records", "attempts", "last_error", "complete_time")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_TIME_FIELD_NUMBER: _ClassVar[int]
    service: str
    status: GDPRRequestStatus
    records: int
    attempts: int
    last_error: str
    complete_time: _timestamp_pb2.Timestamp
    def __init__(self, service: _Optional[str] = ..., status: _Optional[_Union[GDPRRequestStatus, str]] = ..., records: _Optional[int] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., complete_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GDPRRequest(_message.Message):
    __slots__ = ("request_id", "type", "customer_id", "source", "status", "steps", "create_time", "due_time", "complete_time", "overdue")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DUE_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_TIME_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    type: GDPRRequestType
    customer_id: str
    source: str
    status: GDPRRequestStatus
    steps: _containers.RepeatedCompositeFieldContainer[GDPRStep]
    create_time: _timestamp_pb2.Timestamp
    due_time: _timestamp_pb2.Timestamp
    complete_time: _timestamp_pb2.Timestamp
    overdue: bool
    def __init__(self, request_id: _Optional[str] = ..., type: _Optional[_Union[GDPRRequestType, str]] = ..., customer_id: _Optional[str] = ..., source: _Optional[str] = ..., status: _Optional[_Union[GDPRRequestStatus, str]] = ..., steps: _Optional[_Iterable[_Union[GDPRStep, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., due_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., complete_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., overdue: _Optional[bool] = ...) -> None: ...

class HandleGDPRRequestRequest(_message.Message):
    __slots__ = ("type", "customer_id", "email", "idempotency_key")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    type: GDPRRequestType
    customer_id: str
    email: str
    idempotency_key: str
    def __init__(self, type: _Optional[_Union[GDPRRequestType, str]] = ..., customer_id: _Optional[str] = ..., email: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class HandleGDPRRequestResponse(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: GDPRRequest
    def __init__(self, request: _Optional[_Union[GDPRRequest, _Mapping]] = ...) -> None: ...

class GetGDPRRequestRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class GetGDPRRequestResponse(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: GDPRRequest
    def __init__(self, request: _Optional[_Union[GDPRRequest, _Mapping]] = ...) -> None: ...

class ListGDPRRequestsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "overdue_only")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_ONLY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    overdue_only: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., overdue_only: _Optional[bool] = ...) -> None: ...

class ListGDPRRequestsResponse(_message.Message):
    __slots__ = ("requests", "next_page_token")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[GDPRRequest]
    next_page_token: str
    def __init__(self, requests: _Optional[_Iterable[_Union[GDPRRequest, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetGDPRExportRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class GetGDPRExportResponse(_message.Message):
    __slots__ = ("request_id", "customer_id", "package", "create_time", "expire_time")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    customer_id: str
    package: _struct_pb2.Struct
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., package: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Merchant(_message.Message):
    __slots__ = ("merchant_id", "shop_domain", "plan", "status", "create_time", "uninstall_time", "update_time")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SHOP_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UNINSTALL_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    shop_domain: str
    plan: str
    status: str
    create_time: _timestamp_pb2.Timestamp
    uninstall_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, merchant_id: _Optional[str] = ..., shop_domain: _Optional[str] = ..., plan: _Optional[str] = ..., status: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uninstall_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetMerchantsRequest(_message.Message):
    __slots__ = ("query", "page_size", "page_token")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    query: str
    page_size: int
    page_token: str
    def __init__(self, query: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetMerchantsResponse(_message.Message):
    __slots__ = ("merchants", "next_page_token")
    MERCHANTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    merchants: _containers.RepeatedCompositeFieldContainer[Merchant]
    next_page_token: str
    def __init__(self, merchants: _Optional[_Iterable[_Union[Merchant, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AuditLog(_message.Message):
    __slots__ = ("log_id", "merchant_id", "service", "user_id", "resource", "action", "actor", "details", "create_time")
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    log_id: str
    merchant_id: str
    service: str
    user_id: str
    resource: str
    action: str
    actor: str
    details: _struct_pb2.Struct
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, log_id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., service: _Optional[str] = ..., user_id: _Optional[str] = ..., resource: _Optional[str] = ..., action: _Optional[str] = ..., actor: _Optional[str] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AuditLogFilter(_message.Message):
    __slots__ = ("merchant_id", "actor", "resource", "action", "service")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    actor: str
    resource: str
    action: str
    service: str
    def __init__(self, merchant_id: _Optional[str] = ..., actor: _Optional[str] = ..., resource: _Optional[str] = ..., action: _Optional[str] = ..., service: _Optional[str] = ...) -> None: ...

class GetAuditLogsRequest(_message.Message):
    __slots__ = ("filter", "start_time", "end_time", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: AuditLogFilter
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[AuditLogFilter, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetAuditLogsResponse(_message.Message):
    __slots__ = ("logs", "next_page_token")
    LOGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    logs: _containers.RepeatedCompositeFieldContainer[AuditLog]
    next_page_token: str
    def __init__(self, logs: _Optional[_Iterable[_Union[AuditLog, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TailAuditLogsRequest(_message.Message):
    __slots__ = ("filter", "after")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    filter: AuditLogFilter
    after: str
    def __init__(self, filter: _Optional[_Union[AuditLogFilter, _Mapping]] = ..., after: _Optional[str] = ...) -> None: ...

class TailAuditLogsResponse(_message.Message):
    __slots__ = ("log", "position")
    LOG_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    log: AuditLog
    position: str
    def __init__(self, log: _Optional[_Union[AuditLog, _Mapping]] = ..., position: _Optional[str] = ...) -> None: ...

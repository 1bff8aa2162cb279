from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CustomerCreated(_message.Message):
    __slots__ = ("customer_id", "shopify_customer_id", "user_id")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SHOPIFY_CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    shopify_customer_id: str
    user_id: str
    def __init__(self, customer_id: _Optional[str] = ..., shopify_customer_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class CustomerUpdated(_message.Message):
    __slots__ = ("customer_id", "update_mask")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, customer_id: _Optional[str] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class PlanLimitWarning(_message.Message):
    __slots__ = ("plan", "metric", "used", "limit")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    plan: str
    metric: str
    used: int
    limit: int
    def __init__(self, plan: _Optional[str] = ..., metric: _Optional[str] = ..., used: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

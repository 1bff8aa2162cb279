from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from loyalnest.gen.options.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CustomerRef(_message.Message):
    __slots__ = ("shopify_customer_id", "user_ids", "emails", "core_customer_ids")
    SHOPIFY_CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    EMAILS_FIELD_NUMBER: _ClassVar[int]
    CORE_CUSTOMER_IDS_FIELD_NUMBER: _ClassVar[int]
    shopify_customer_id: str
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    emails: _containers.RepeatedScalarFieldContainer[str]
    core_customer_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, shopify_customer_id: _Optional[str] = ..., user_ids: _Optional[_Iterable[str]] = ..., emails: _Optional[_Iterable[str]] = ..., core_customer_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportCustomerRequest(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: CustomerRef
    def __init__(self, customer: _Optional[_Union[CustomerRef, _Mapping]] = ...) -> None: ...

class ExportCustomerResponse(_message.Message):
    __slots__ = ("data", "found")
    DATA_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    data: _struct_pb2.Struct
    found: CustomerRef
    def __init__(self, data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., found: _Optional[_Union[CustomerRef, _Mapping]] = ...) -> None: ...

class EraseCustomerRequest(_message.Message):
    __slots__ = ("customer", "erasure_key")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    ERASURE_KEY_FIELD_NUMBER: _ClassVar[int]
    customer: CustomerRef
    erasure_key: bytes
    def __init__(self, customer: _Optional[_Union[CustomerRef, _Mapping]] = ..., erasure_key: _Optional[bytes] = ...) -> None: ...

class EraseCustomerResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: int
    def __init__(self, records: _Optional[int] = ...) -> None: ...

class EraseMerchantRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EraseMerchantResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: int
    def __init__(self, records: _Optional[int] = ...) -> None: ...

from google.api import field_behavior_pb2 as _field_behavior_pb2
from loyalnest.gen.options.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MerchantCustomer(_message.Message):
    __slots__ = ("merchant_id", "value")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    value: str
    def __init__(self, merchant_id: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class PseudonymizeRequest(_message.Message):
    __slots__ = ("customers",)
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    customers: _containers.RepeatedCompositeFieldContainer[MerchantCustomer]
    def __init__(self, customers: _Optional[_Iterable[_Union[MerchantCustomer, _Mapping]]] = ...) -> None: ...

class PseudonymizeResponse(_message.Message):
    __slots__ = ("pseudonyms",)
    PSEUDONYMS_FIELD_NUMBER: _ClassVar[int]
    pseudonyms: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, pseudonyms: _Optional[_Iterable[str]] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("pseudonyms",)
    PSEUDONYMS_FIELD_NUMBER: _ClassVar[int]
    pseudonyms: _containers.RepeatedCompositeFieldContainer[MerchantCustomer]
    def __init__(self, pseudonyms: _Optional[_Iterable[_Union[MerchantCustomer, _Mapping]]] = ...) -> None: ...

class Resolved(_message.Message):
    __slots__ = ("customer_id", "erased")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    ERASED_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    erased: bool
    def __init__(self, customer_id: _Optional[str] = ..., erased: _Optional[bool] = ...) -> None: ...

class ResolveResponse(_message.Message):
    __slots__ = ("customers",)
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    customers: _containers.RepeatedCompositeFieldContainer[Resolved]
    def __init__(self, customers: _Optional[_Iterable[_Union[Resolved, _Mapping]]] = ...) -> None: ...

class BeginErasureRequest(_message.Message):
    __slots__ = ("customer", "erasure_key")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    ERASURE_KEY_FIELD_NUMBER: _ClassVar[int]
    customer: MerchantCustomer
    erasure_key: bytes
    def __init__(self, customer: _Optional[_Union[MerchantCustomer, _Mapping]] = ..., erasure_key: _Optional[bytes] = ...) -> None: ...

class BeginErasureResponse(_message.Message):
    __slots__ = ("begun",)
    BEGUN_FIELD_NUMBER: _ClassVar[int]
    begun: bool
    def __init__(self, begun: _Optional[bool] = ...) -> None: ...

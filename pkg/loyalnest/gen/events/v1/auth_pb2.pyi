import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MerchantCreated(_message.Message):
    __slots__ = ("shop_domain", "plan")
    SHOP_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    shop_domain: str
    plan: str
    def __init__(self, shop_domain: _Optional[str] = ..., plan: _Optional[str] = ...) -> None: ...

class MerchantUninstalled(_message.Message):
    __slots__ = ("shop_domain", "uninstall_time")
    SHOP_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    UNINSTALL_TIME_FIELD_NUMBER: _ClassVar[int]
    shop_domain: str
    uninstall_time: _timestamp_pb2.Timestamp
    def __init__(self, shop_domain: _Optional[str] = ..., uninstall_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MerchantReinstalled(_message.Message):
    __slots__ = ("shop_domain",)
    SHOP_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    shop_domain: str
    def __init__(self, shop_domain: _Optional[str] = ...) -> None: ...

class AuthRevoked(_message.Message):
    __slots__ = ("token_id", "user_id", "expire_time", "reason")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    user_id: str
    expire_time: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, token_id: _Optional[str] = ..., user_id: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

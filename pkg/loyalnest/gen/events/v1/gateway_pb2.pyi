import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WebhookReceived(_message.Message):
    __slots__ = ("topic", "shopify_event_id", "webhook_id", "shop_domain", "triggered_time", "customer_id", "body")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    SHOPIFY_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_ID_FIELD_NUMBER: _ClassVar[int]
    SHOP_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_TIME_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    topic: str
    shopify_event_id: str
    webhook_id: str
    shop_domain: str
    triggered_time: _timestamp_pb2.Timestamp
    customer_id: str
    body: bytes
    def __init__(self, topic: _Optional[str] = ..., shopify_event_id: _Optional[str] = ..., webhook_id: _Optional[str] = ..., shop_domain: _Optional[str] = ..., triggered_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., customer_id: _Optional[str] = ..., body: _Optional[bytes] = ...) -> None: ...

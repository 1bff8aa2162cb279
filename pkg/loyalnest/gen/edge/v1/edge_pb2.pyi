from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from loyalnest.gen.options.v1 import access_pb2 as _access_pb2
from loyalnest.gen.options.v1 import route_pb2 as _route_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WebhookOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEBHOOK_OUTCOME_UNSPECIFIED: _ClassVar[WebhookOutcome]
    WEBHOOK_OUTCOME_ACCEPTED: _ClassVar[WebhookOutcome]
    WEBHOOK_OUTCOME_DUPLICATE: _ClassVar[WebhookOutcome]
    WEBHOOK_OUTCOME_DEAD_LETTERED: _ClassVar[WebhookOutcome]
    WEBHOOK_OUTCOME_SKIPPED: _ClassVar[WebhookOutcome]
WEBHOOK_OUTCOME_UNSPECIFIED: WebhookOutcome
WEBHOOK_OUTCOME_ACCEPTED: WebhookOutcome
WEBHOOK_OUTCOME_DUPLICATE: WebhookOutcome
WEBHOOK_OUTCOME_DEAD_LETTERED: WebhookOutcome
WEBHOOK_OUTCOME_SKIPPED: WebhookOutcome

class ReceiveWebhookRequest(_message.Message):
    __slots__ = ("resource", "action", "body")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    resource: str
    action: str
    body: _httpbody_pb2.HttpBody
    def __init__(self, resource: _Optional[str] = ..., action: _Optional[str] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class ReceiveWebhookResponse(_message.Message):
    __slots__ = ("outcome", "topic", "shopify_event_id")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    SHOPIFY_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    outcome: WebhookOutcome
    topic: str
    shopify_event_id: str
    def __init__(self, outcome: _Optional[_Union[WebhookOutcome, str]] = ..., topic: _Optional[str] = ..., shopify_event_id: _Optional[str] = ...) -> None: ...

class GetRateLimitsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RateLimitBucket(_message.Message):
    __slots__ = ("endpoint", "remaining")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    remaining: int
    def __init__(self, endpoint: _Optional[str] = ..., remaining: _Optional[int] = ...) -> None: ...

class GetRateLimitsResponse(_message.Message):
    __slots__ = ("plan", "burst", "requests_per_second", "buckets")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    plan: str
    burst: int
    requests_per_second: float
    buckets: _containers.RepeatedCompositeFieldContainer[RateLimitBucket]
    def __init__(self, plan: _Optional[str] = ..., burst: _Optional[int] = ..., requests_per_second: _Optional[float] = ..., buckets: _Optional[_Iterable[_Union[RateLimitBucket, _Mapping]]] = ...) -> None: ...

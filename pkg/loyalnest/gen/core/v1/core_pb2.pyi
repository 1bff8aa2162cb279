import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loyalnest.gen.events.v1 import core_pb2 as _core_pb2
from loyalnest.gen.events.v1 import rfm_pb2 as _rfm_pb2
from loyalnest.gen.options.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlanChangeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAN_CHANGE_STATUS_UNSPECIFIED: _ClassVar[PlanChangeStatus]
    PLAN_CHANGE_STATUS_APPLIED: _ClassVar[PlanChangeStatus]
    PLAN_CHANGE_STATUS_PENDING_APPROVAL: _ClassVar[PlanChangeStatus]

class ImportOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORT_OUTCOME_UNSPECIFIED: _ClassVar[ImportOutcome]
    IMPORT_OUTCOME_CREATED: _ClassVar[ImportOutcome]
    IMPORT_OUTCOME_ALREADY_EXISTS: _ClassVar[ImportOutcome]
    IMPORT_OUTCOME_INVALID: _ClassVar[ImportOutcome]
    IMPORT_OUTCOME_LIMIT_REACHED: _ClassVar[ImportOutcome]
PLAN_CHANGE_STATUS_UNSPECIFIED: PlanChangeStatus
PLAN_CHANGE_STATUS_APPLIED: PlanChangeStatus
PLAN_CHANGE_STATUS_PENDING_APPROVAL: PlanChangeStatus
IMPORT_OUTCOME_UNSPECIFIED: ImportOutcome
IMPORT_OUTCOME_CREATED: ImportOutcome
IMPORT_OUTCOME_ALREADY_EXISTS: ImportOutcome
IMPORT_OUTCOME_INVALID: ImportOutcome
IMPORT_OUTCOME_LIMIT_REACHED: ImportOutcome

class GetProgramSettingsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetProgramSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: _core_pb2.ProgramSettings
    def __init__(self, settings: _Optional[_Union[_core_pb2.ProgramSettings, _Mapping]] = ...) -> None: ...

class UpdateProgramSettingsRequest(_message.Message):
    __slots__ = ("settings", "update_mask", "idempotency_key", "expected_version")
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    settings: _core_pb2.ProgramSettings
    update_mask: _field_mask_pb2.FieldMask
    idempotency_key: str
    expected_version: int
    def __init__(self, settings: _Optional[_Union[_core_pb2.ProgramSettings, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class UpdateProgramSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: _core_pb2.ProgramSettings
    def __init__(self, settings: _Optional[_Union[_core_pb2.ProgramSettings, _Mapping]] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPlanResponse(_message.Message):
    __slots__ = ("plan", "available_plans")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_PLANS_FIELD_NUMBER: _ClassVar[int]
    plan: _core_pb2.PlanLimits
    available_plans: _containers.RepeatedCompositeFieldContainer[_core_pb2.PlanLimits]
    def __init__(self, plan: _Optional[_Union[_core_pb2.PlanLimits, _Mapping]] = ..., available_plans: _Optional[_Iterable[_Union[_core_pb2.PlanLimits, _Mapping]]] = ...) -> None: ...

class ChangePlanRequest(_message.Message):
    __slots__ = ("plan", "idempotency_key")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    plan: str
    idempotency_key: str
    def __init__(self, plan: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ChangePlanResponse(_message.Message):
    __slots__ = ("settings", "status", "confirmation_url", "subscription_id")
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_URL_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    settings: _core_pb2.ProgramSettings
    status: PlanChangeStatus
    confirmation_url: str
    subscription_id: str
    def __init__(self, settings: _Optional[_Union[_core_pb2.ProgramSettings, _Mapping]] = ..., status: _Optional[_Union[PlanChangeStatus, str]] = ..., confirmation_url: _Optional[str] = ..., subscription_id: _Optional[str] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UsageMetric(_message.Message):
    __slots__ = ("metric", "used", "limit", "period")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    metric: str
    used: int
    limit: int
    period: str
    def __init__(self, metric: _Optional[str] = ..., used: _Optional[int] = ..., limit: _Optional[int] = ..., period: _Optional[str] = ...) -> None: ...

class GetUsageResponse(_message.Message):
    __slots__ = ("plan", "metrics")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    plan: str
    metrics: _containers.RepeatedCompositeFieldContainer[UsageMetric]
    def __init__(self, plan: _Optional[str] = ..., metrics: _Optional[_Iterable[_Union[UsageMetric, _Mapping]]] = ...) -> None: ...

class Customer(_message.Message):
    __slots__ = ("customer_id", "shopify_customer_id", "user_id", "email", "first_name", "last_name", "account_linked", "rfm_score", "rfm_segment", "redact_time", "create_time")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SHOPIFY_CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    FIRST_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_NAME_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_LINKED_FIELD_NUMBER: _ClassVar[int]
    RFM_SCORE_FIELD_NUMBER: _ClassVar[int]
    RFM_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    REDACT_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    shopify_customer_id: str
    user_id: str
    email: str
    first_name: str
    last_name: str
    account_linked: bool
    rfm_score: _rfm_pb2.RfmScore
    rfm_segment: _rfm_pb2.RfmSegment
    redact_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, customer_id: _Optional[str] = ..., shopify_customer_id: _Optional[str] = ..., user_id: _Optional[str] = ..., email: _Optional[str] = ..., first_name: _Optional[str] = ..., last_name: _Optional[str] = ..., account_linked: _Optional[bool] = ..., rfm_score: _Optional[_Union[_rfm_pb2.RfmScore, _Mapping]] = ..., rfm_segment: _Optional[_Union[_rfm_pb2.RfmSegment, str]] = ..., redact_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCustomerRequest(_message.Message):
    __slots__ = ("customer", "idempotency_key")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    customer: Customer
    idempotency_key: str
    def __init__(self, customer: _Optional[_Union[Customer, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class CreateCustomerResponse(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: Customer
    def __init__(self, customer: _Optional[_Union[Customer, _Mapping]] = ...) -> None: ...

class GetCustomerRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class GetCustomerResponse(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: Customer
    def __init__(self, customer: _Optional[_Union[Customer, _Mapping]] = ...) -> None: ...

class ImportCustomersRequest(_message.Message):
    __slots__ = ("batch_id", "customers")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    customers: _containers.RepeatedCompositeFieldContainer[Customer]
    def __init__(self, batch_id: _Optional[str] = ..., customers: _Optional[_Iterable[_Union[Customer, _Mapping]]] = ...) -> None: ...

class ImportItemResult(_message.Message):
    __slots__ = ("index", "shopify_customer_id", "outcome", "customer_id", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SHOPIFY_CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    shopify_customer_id: str
    outcome: ImportOutcome
    customer_id: str
    error: str
    def __init__(self, index: _Optional[int] = ..., shopify_customer_id: _Optional[str] = ..., outcome: _Optional[_Union[ImportOutcome, str]] = ..., customer_id: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ImportCustomersResponse(_message.Message):
    __slots__ = ("import_id", "status", "results")
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    import_id: str
    status: str
    results: _containers.RepeatedCompositeFieldContainer[ImportItemResult]
    def __init__(self, import_id: _Optional[str] = ..., status: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ImportItemResult, _Mapping]]] = ...) -> None: ...

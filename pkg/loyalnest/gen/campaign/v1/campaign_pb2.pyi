import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loyalnest.gen.events.v1 import rfm_pb2 as _rfm_pb2
from loyalnest.gen.options.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CampaignKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_KIND_UNSPECIFIED: _ClassVar[CampaignKind]
    CAMPAIGN_KIND_SHARED_CODE: _ClassVar[CampaignKind]
    CAMPAIGN_KIND_AUTOMATIC: _ClassVar[CampaignKind]
    CAMPAIGN_KIND_UNIQUE_CODES: _ClassVar[CampaignKind]

class CampaignState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_STATE_UNSPECIFIED: _ClassVar[CampaignState]
    CAMPAIGN_STATE_DRAFT: _ClassVar[CampaignState]
    CAMPAIGN_STATE_SCHEDULED: _ClassVar[CampaignState]
    CAMPAIGN_STATE_ACTIVE: _ClassVar[CampaignState]
    CAMPAIGN_STATE_PAUSED: _ClassVar[CampaignState]
    CAMPAIGN_STATE_ENDED: _ClassVar[CampaignState]

class DiscountType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISCOUNT_TYPE_UNSPECIFIED: _ClassVar[DiscountType]
    DISCOUNT_TYPE_PERCENTAGE: _ClassVar[DiscountType]
    DISCOUNT_TYPE_FIXED_AMOUNT: _ClassVar[DiscountType]
    DISCOUNT_TYPE_FREE_SHIPPING: _ClassVar[DiscountType]
CAMPAIGN_KIND_UNSPECIFIED: CampaignKind
CAMPAIGN_KIND_SHARED_CODE: CampaignKind
CAMPAIGN_KIND_AUTOMATIC: CampaignKind
CAMPAIGN_KIND_UNIQUE_CODES: CampaignKind
CAMPAIGN_STATE_UNSPECIFIED: CampaignState
CAMPAIGN_STATE_DRAFT: CampaignState
CAMPAIGN_STATE_SCHEDULED: CampaignState
CAMPAIGN_STATE_ACTIVE: CampaignState
CAMPAIGN_STATE_PAUSED: CampaignState
CAMPAIGN_STATE_ENDED: CampaignState
DISCOUNT_TYPE_UNSPECIFIED: DiscountType
DISCOUNT_TYPE_PERCENTAGE: DiscountType
DISCOUNT_TYPE_FIXED_AMOUNT: DiscountType
DISCOUNT_TYPE_FREE_SHIPPING: DiscountType

class Combinability(_message.Message):
    __slots__ = ("order_discounts", "product_discounts", "shipping_discounts")
    ORDER_DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    order_discounts: bool
    product_discounts: bool
    shipping_discounts: bool
    def __init__(self, order_discounts: _Optional[bool] = ..., product_discounts: _Optional[bool] = ..., shipping_discounts: _Optional[bool] = ...) -> None: ...

class DiscountRules(_message.Message):
    __slots__ = ("type", "value", "minimum_subtotal", "usage_limit", "once_per_customer", "combines_with", "product_ids", "collection_ids")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    USAGE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    ONCE_PER_CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    COMBINES_WITH_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_IDS_FIELD_NUMBER: _ClassVar[int]
    type: DiscountType
    value: str
    minimum_subtotal: str
    usage_limit: int
    once_per_customer: bool
    combines_with: Combinability
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    collection_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, type: _Optional[_Union[DiscountType, str]] = ..., value: _Optional[str] = ..., minimum_subtotal: _Optional[str] = ..., usage_limit: _Optional[int] = ..., once_per_customer: _Optional[bool] = ..., combines_with: _Optional[_Union[Combinability, _Mapping]] = ..., product_ids: _Optional[_Iterable[str]] = ..., collection_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Audience(_message.Message):
    __slots__ = ("all_customers", "rfm_segments")
    ALL_CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    RFM_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    all_customers: bool
    rfm_segments: _containers.RepeatedScalarFieldContainer[_rfm_pb2.RfmSegment]
    def __init__(self, all_customers: _Optional[bool] = ..., rfm_segments: _Optional[_Iterable[_Union[_rfm_pb2.RfmSegment, str]]] = ...) -> None: ...

class Campaign(_message.Message):
    __slots__ = ("campaign_id", "name", "kind", "code", "rules", "audience", "start_time", "end_time", "state", "shopify_discount_id", "create_time", "update_time")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SHOPIFY_DISCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    name: str
    kind: CampaignKind
    code: str
    rules: DiscountRules
    audience: Audience
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    state: CampaignState
    shopify_discount_id: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, campaign_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[CampaignKind, str]] = ..., code: _Optional[str] = ..., rules: _Optional[_Union[DiscountRules, _Mapping]] = ..., audience: _Optional[_Union[Audience, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[CampaignState, str]] = ..., shopify_discount_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCampaignRequest(_message.Message):
    __slots__ = ("campaign", "draft", "idempotency_key")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    draft: bool
    idempotency_key: str
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ..., draft: _Optional[bool] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class CreateCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class GetCampaignRequest(_message.Message):
    __slots__ = ("campaign_id",)
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    def __init__(self, campaign_id: _Optional[str] = ...) -> None: ...

class GetCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class ListCampaignsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state", "product_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: CampaignState
    product_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[CampaignState, str]] = ..., product_id: _Optional[str] = ...) -> None: ...

class ListCampaignsResponse(_message.Message):
    __slots__ = ("campaigns", "next_page_token")
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[Campaign]
    next_page_token: str
    def __init__(self, campaigns: _Optional[_Iterable[_Union[Campaign, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateCampaignRequest(_message.Message):
    __slots__ = ("campaign", "update_mask", "idempotency_key")
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    update_mask: _field_mask_pb2.FieldMask
    idempotency_key: str
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class UpdateCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class PublishCampaignRequest(_message.Message):
    __slots__ = ("campaign_id", "idempotency_key")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    idempotency_key: str
    def __init__(self, campaign_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class PublishCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class PauseCampaignRequest(_message.Message):
    __slots__ = ("campaign_id", "idempotency_key")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    idempotency_key: str
    def __init__(self, campaign_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class PauseCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class ResumeCampaignRequest(_message.Message):
    __slots__ = ("campaign_id", "idempotency_key")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    idempotency_key: str
    def __init__(self, campaign_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ResumeCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class EndCampaignRequest(_message.Message):
    __slots__ = ("campaign_id", "idempotency_key")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    idempotency_key: str
    def __init__(self, campaign_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class EndCampaignResponse(_message.Message):
    __slots__ = ("campaign",)
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    campaign: Campaign
    def __init__(self, campaign: _Optional[_Union[Campaign, _Mapping]] = ...) -> None: ...

class Cart(_message.Message):
    __slots__ = ("subtotal", "product_ids", "collection_ids")
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_IDS_FIELD_NUMBER: _ClassVar[int]
    subtotal: str
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    collection_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, subtotal: _Optional[str] = ..., product_ids: _Optional[_Iterable[str]] = ..., collection_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ApplyCampaignRequest(_message.Message):
    __slots__ = ("customer_id", "cart")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CART_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    cart: Cart
    def __init__(self, customer_id: _Optional[str] = ..., cart: _Optional[_Union[Cart, _Mapping]] = ...) -> None: ...

class ApplicableCampaign(_message.Message):
    __slots__ = ("campaign_id", "name", "kind", "code", "rules", "end_time")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    name: str
    kind: CampaignKind
    code: str
    rules: DiscountRules
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, campaign_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[CampaignKind, str]] = ..., code: _Optional[str] = ..., rules: _Optional[_Union[DiscountRules, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ApplyCampaignResponse(_message.Message):
    __slots__ = ("campaigns",)
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[ApplicableCampaign]
    def __init__(self, campaigns: _Optional[_Iterable[_Union[ApplicableCampaign, _Mapping]]] = ...) -> None: ...

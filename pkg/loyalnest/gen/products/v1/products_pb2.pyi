import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from loyalnest.gen.options.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Variant(_message.Message):
    __slots__ = ("variant_id", "title", "sku", "price")
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    variant_id: str
    title: str
    sku: str
    price: str
    def __init__(self, variant_id: _Optional[str] = ..., title: _Optional[str] = ..., sku: _Optional[str] = ..., price: _Optional[str] = ...) -> None: ...

class Product(_message.Message):
    __slots__ = ("product_id", "title", "handle", "vendor", "product_type", "status", "tags", "variants", "collection_ids", "update_time")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_IDS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    title: str
    handle: str
    vendor: str
    product_type: str
    status: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    variants: _containers.RepeatedCompositeFieldContainer[Variant]
    collection_ids: _containers.RepeatedScalarFieldContainer[str]
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, product_id: _Optional[str] = ..., title: _Optional[str] = ..., handle: _Optional[str] = ..., vendor: _Optional[str] = ..., product_type: _Optional[str] = ..., status: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., variants: _Optional[_Iterable[_Union[Variant, _Mapping]]] = ..., collection_ids: _Optional[_Iterable[str]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListProductsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "query")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    query: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., query: _Optional[str] = ...) -> None: ...

class ListProductsResponse(_message.Message):
    __slots__ = ("products", "next_page_token")
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[Product]
    next_page_token: str
    def __init__(self, products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetProductRequest(_message.Message):
    __slots__ = ("product_id",)
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    def __init__(self, product_id: _Optional[str] = ...) -> None: ...

class GetProductResponse(_message.Message):
    __slots__ = ("product",)
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    product: Product
    def __init__(self, product: _Optional[_Union[Product, _Mapping]] = ...) -> None: ...

class SyncProductsRequest(_message.Message):
    __slots__ = ("full",)
    FULL_FIELD_NUMBER: _ClassVar[int]
    full: bool
    def __init__(self, full: _Optional[bool] = ...) -> None: ...

class SyncProductsResponse(_message.Message):
    __slots__ = ("products_synced", "pages", "synced_through")
    PRODUCTS_SYNCED_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    SYNCED_THROUGH_FIELD_NUMBER: _ClassVar[int]
    products_synced: int
    pages: int
    synced_through: _timestamp_pb2.Timestamp
    def __init__(self, products_synced: _Optional[int] = ..., pages: _Optional[int] = ..., synced_through: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ProductRfm(_message.Message):
    __slots__ = ("product_id", "last_order_time", "recency_days", "frequency", "buyers", "monetary_minor_units", "currency_code", "buyer_segments")
    class BuyerSegmentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_ORDER_TIME_FIELD_NUMBER: _ClassVar[int]
    RECENCY_DAYS_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    BUYERS_FIELD_NUMBER: _ClassVar[int]
    MONETARY_MINOR_UNITS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_CODE_FIELD_NUMBER: _ClassVar[int]
    BUYER_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    last_order_time: _timestamp_pb2.Timestamp
    recency_days: float
    frequency: int
    buyers: int
    monetary_minor_units: int
    currency_code: str
    buyer_segments: _containers.ScalarMap[str, int]
    def __init__(self, product_id: _Optional[str] = ..., last_order_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recency_days: _Optional[float] = ..., frequency: _Optional[int] = ..., buyers: _Optional[int] = ..., monetary_minor_units: _Optional[int] = ..., currency_code: _Optional[str] = ..., buyer_segments: _Optional[_Mapping[str, int]] = ...) -> None: ...

class GetProductRFMRequest(_message.Message):
    __slots__ = ("product_id",)
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    def __init__(self, product_id: _Optional[str] = ...) -> None: ...

class GetProductRFMResponse(_message.Message):
    __slots__ = ("rfm",)
    RFM_FIELD_NUMBER: _ClassVar[int]
    rfm: ProductRfm
    def __init__(self, rfm: _Optional[_Union[ProductRfm, _Mapping]] = ...) -> None: ...

class ProductCampaign(_message.Message):
    __slots__ = ("campaign_id", "name", "state", "all_products")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ALL_PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    name: str
    state: str
    all_products: bool
    def __init__(self, campaign_id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[str] = ..., all_products: _Optional[bool] = ...) -> None: ...

class ListProductCampaignsRequest(_message.Message):
    __slots__ = ("product_id", "include_ended")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ENDED_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    include_ended: bool
    def __init__(self, product_id: _Optional[str] = ..., include_ended: _Optional[bool] = ...) -> None: ...

class ListProductCampaignsResponse(_message.Message):
    __slots__ = ("campaigns",)
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[ProductCampaign]
    def __init__(self, campaigns: _Optional[_Iterable[_Union[ProductCampaign, _Mapping]]] = ...) -> None: ...

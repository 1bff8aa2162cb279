import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WebhookReceived(_message.Message):
    __slots__ = ("topic", "shopify_event_id", "webhook_id", "shop_domain", "triggered_time", "customer_id", "body", "payload_version", "order", "refund", "customer", "privacy_request", "shop", "customer_data")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    SHOPIFY_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_ID_FIELD_NUMBER: _ClassVar[int]
    SHOP_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    TRIGGERED_TIME_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_VERSION_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    REFUND_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_REQUEST_FIELD_NUMBER: _ClassVar[int]
    SHOP_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_DATA_FIELD_NUMBER: _ClassVar[int]
    topic: str
    shopify_event_id: str
    webhook_id: str
    shop_domain: str
    triggered_time: _timestamp_pb2.Timestamp
    customer_id: str
    body: bytes
    payload_version: int
    order: ShopifyOrder
    refund: ShopifyRefund
    customer: ShopifyCustomer
    privacy_request: ShopifyPrivacyRequest
    shop: ShopifyShop
    customer_data: SealedCustomerData
    def __init__(self, topic: _Optional[str] = ..., shopify_event_id: _Optional[str] = ..., webhook_id: _Optional[str] = ..., shop_domain: _Optional[str] = ..., triggered_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., customer_id: _Optional[str] = ..., body: _Optional[bytes] = ..., payload_version: _Optional[int] = ..., order: _Optional[_Union[ShopifyOrder, _Mapping]] = ..., refund: _Optional[_Union[ShopifyRefund, _Mapping]] = ..., customer: _Optional[_Union[ShopifyCustomer, _Mapping]] = ..., privacy_request: _Optional[_Union[ShopifyPrivacyRequest, _Mapping]] = ..., shop: _Optional[_Union[ShopifyShop, _Mapping]] = ..., customer_data: _Optional[_Union[SealedCustomerData, _Mapping]] = ...) -> None: ...

class ShopifyOrder(_message.Message):
    __slots__ = ("order_id", "customer_id", "currency", "financial_status", "line_items", "discount_codes", "created_time", "processed_time", "cancelled_time", "cancel_reason", "source_name", "landing_site_ref")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    FINANCIAL_STATUS_FIELD_NUMBER: _ClassVar[int]
    LINE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_CODES_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_TIME_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_TIME_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    LANDING_SITE_REF_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    customer_id: str
    currency: str
    financial_status: str
    line_items: _containers.RepeatedCompositeFieldContainer[ShopifyLineItem]
    discount_codes: _containers.RepeatedScalarFieldContainer[str]
    created_time: _timestamp_pb2.Timestamp
    processed_time: _timestamp_pb2.Timestamp
    cancelled_time: _timestamp_pb2.Timestamp
    cancel_reason: str
    source_name: str
    landing_site_ref: str
    def __init__(self, order_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., currency: _Optional[str] = ..., financial_status: _Optional[str] = ..., line_items: _Optional[_Iterable[_Union[ShopifyLineItem, _Mapping]]] = ..., discount_codes: _Optional[_Iterable[str]] = ..., created_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., processed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancelled_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancel_reason: _Optional[str] = ..., source_name: _Optional[str] = ..., landing_site_ref: _Optional[str] = ...) -> None: ...

class ShopifyLineItem(_message.Message):
    __slots__ = ("line_item_id", "product_id", "variant_id", "quantity", "price", "discount")
    LINE_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    line_item_id: str
    product_id: str
    variant_id: str
    quantity: int
    price: str
    discount: str
    def __init__(self, line_item_id: _Optional[str] = ..., product_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., quantity: _Optional[int] = ..., price: _Optional[str] = ..., discount: _Optional[str] = ...) -> None: ...

class ShopifyRefund(_message.Message):
    __slots__ = ("refund_id", "order_id", "refund_line_items", "created_time")
    REFUND_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REFUND_LINE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    refund_id: str
    order_id: str
    refund_line_items: _containers.RepeatedCompositeFieldContainer[ShopifyRefundLineItem]
    created_time: _timestamp_pb2.Timestamp
    def __init__(self, refund_id: _Optional[str] = ..., order_id: _Optional[str] = ..., refund_line_items: _Optional[_Iterable[_Union[ShopifyRefundLineItem, _Mapping]]] = ..., created_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ShopifyRefundLineItem(_message.Message):
    __slots__ = ("line_item_id", "quantity", "subtotal")
    LINE_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_FIELD_NUMBER: _ClassVar[int]
    line_item_id: str
    quantity: int
    subtotal: str
    def __init__(self, line_item_id: _Optional[str] = ..., quantity: _Optional[int] = ..., subtotal: _Optional[str] = ...) -> None: ...

class ShopifyCustomer(_message.Message):
    __slots__ = ("customer_id", "created_time", "updated_time", "email_marketing_state", "email_marketing_consent_updated_time")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_TIME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_MARKETING_STATE_FIELD_NUMBER: _ClassVar[int]
    EMAIL_MARKETING_CONSENT_UPDATED_TIME_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    created_time: _timestamp_pb2.Timestamp
    updated_time: _timestamp_pb2.Timestamp
    email_marketing_state: str
    email_marketing_consent_updated_time: _timestamp_pb2.Timestamp
    def __init__(self, customer_id: _Optional[str] = ..., created_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., email_marketing_state: _Optional[str] = ..., email_marketing_consent_updated_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ShopifyPrivacyRequest(_message.Message):
    __slots__ = ("customer_id", "order_ids", "data_request_id")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    DATA_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    order_ids: _containers.RepeatedScalarFieldContainer[str]
    data_request_id: str
    def __init__(self, customer_id: _Optional[str] = ..., order_ids: _Optional[_Iterable[str]] = ..., data_request_id: _Optional[str] = ...) -> None: ...

class ShopifyShop(_message.Message):
    __slots__ = ("shop_id",)
    SHOP_ID_FIELD_NUMBER: _ClassVar[int]
    shop_id: str
    def __init__(self, shop_id: _Optional[str] = ...) -> None: ...

class SealedCustomerData(_message.Message):
    __slots__ = ("customer_id", "key_id", "ciphertext")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    key_id: str
    ciphertext: bytes
    def __init__(self, customer_id: _Optional[str] = ..., key_id: _Optional[str] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class CustomerData(_message.Message):
    __slots__ = ("email", "phone", "first_name", "last_name")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    FIRST_NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_NAME_FIELD_NUMBER: _ClassVar[int]
    email: str
    phone: str
    first_name: str
    last_name: str
    def __init__(self, email: _Optional[str] = ..., phone: _Optional[str] = ..., first_name: _Optional[str] = ..., last_name: _Optional[str] = ...) -> None: ...

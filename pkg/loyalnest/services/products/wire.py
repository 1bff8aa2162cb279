"""The Products service's domain values as protobuf messages."""

from __future__ import annotations

from datetime import UTC, datetime

from loyalnest.gen.products.v1 import products_pb2 as pb
from loyalnest.platform.protos import timestamp
from loyalnest.services.products.domain import Product, ProductRfm, recency_days


def product_proto(product: Product) -> pb.Product:
    return pb.Product(
        product_id=product.product_id,
        title=product.title,
        handle=product.handle,
        vendor=product.vendor,
        product_type=product.product_type,
        status=product.status,
        tags=list(product.tags),
        variants=[
            pb.Variant(variant_id=v.variant_id, title=v.title, sku=v.sku, price=v.price)
            for v in product.variants
        ],
        collection_ids=list(product.collection_ids or ()),
        update_time=timestamp(product.updated_at),
    )


def rfm_proto(rfm: ProductRfm) -> pb.ProductRfm:
    return pb.ProductRfm(
        product_id=rfm.product_id,
        last_order_time=timestamp(rfm.last_order_at),
        recency_days=recency_days(rfm.last_order_at, datetime.now(UTC)),
        frequency=rfm.frequency,
        buyers=rfm.buyers,
        monetary_minor_units=rfm.monetary_minor,
        currency_code=rfm.currency,
        buyer_segments=rfm.buyer_segments,
    )

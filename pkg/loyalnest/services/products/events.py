"""What Products tells the mesh (product_rfm.updated), and the consumer group its processes
share. Enqueued in the transaction that changed the product's sales (store/sales.py)."""

from __future__ import annotations

from datetime import datetime

from loyalnest.gen.events.v1 import products_pb2 as products_events
from loyalnest.gen.events.v1 import rfm_pb2
from loyalnest.services.products.domain import ProductRfm, recency_days

# The consumer group of every Products process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.products"


def product_rfm_updated(rfm: ProductRfm, now: datetime) -> products_events.ProductRfmUpdated:
    # recency: days since the product's last sale when it changed (a sale makes it 0).
    return products_events.ProductRfmUpdated(
        product_id=rfm.product_id,
        score=rfm_pb2.RfmScore(
            recency=recency_days(rfm.last_order_at, now),
            frequency=rfm.frequency,
            monetary_minor_units=rfm.monetary_minor,
            currency_code=rfm.currency,
        ),
    )

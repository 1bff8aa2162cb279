"""The Products service's domain values as protobuf messages."""

from __future__ import annotations

from loyalnest.gen.products.v1 import products_pb2
from loyalnest.platform.protos import timestamp
from loyalnest.services.products.domain import Item


def item_proto(item: Item) -> products_pb2.Item:
    return products_pb2.Item(
        item_id=item.item_id, name=item.name, create_time=timestamp(item.created_at)
    )

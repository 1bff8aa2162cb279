"""gRPC surface of the Products service.

Handlers only: validation, the merchant from the token, the store's calls, proto mapping.
"""

from __future__ import annotations

from loyalnest.gen.products.v1 import products_pb2_grpc
from loyalnest.gen.products.v1.products_pb2 import (
    CreateItemRequest,
    CreateItemResponse,
    GetItemRequest,
    GetItemResponse,
)
from loyalnest.platform import tenancy
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.validation import Validator
from loyalnest.services.products.domain import name_problem
from loyalnest.services.products.store import ItemStore
from loyalnest.services.products.wire import item_proto


class ProductsServicer(products_pb2_grpc.ProductsServiceServicer):
    def __init__(self, store: ItemStore) -> None:
        self._store = store

    async def CreateItem(self, request: CreateItemRequest, context: Context) -> CreateItemResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            if v.check(request.HasField("item"), "item", "is required"):
                problem = name_problem(request.item.name)
                v.check(problem is None, "item.name", problem or "")
            v.idempotency_key("idempotency_key", request.idempotency_key)
        created = await self._store.create(
            merchant_id,
            name=request.item.name,
            key=IdempotencyKey.of("CreateItem", request),
        )
        return CreateItemResponse(item=item_proto(created))

    async def GetItem(self, request: GetItemRequest, context: Context) -> GetItemResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.uuid("item_id", request.item_id)
        item = await self._store.get(merchant_id, request.item_id)
        return GetItemResponse(item=item_proto(item))

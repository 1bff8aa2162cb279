"""gRPC surface of the Products service.

Handlers only: validation, the merchant from the token, the stores' calls, proto mapping.
"""

from __future__ import annotations

from loyalnest.gen.products.v1 import products_pb2 as pb
from loyalnest.gen.products.v1 import products_pb2_grpc
from loyalnest.platform import pagination, tenancy
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.protos import optional_timestamp
from loyalnest.platform.validation import Validator
from loyalnest.services.products.domain import MAX_QUERY_LENGTH, SHOPIFY_ID_RE, query_words
from loyalnest.services.products.store.campaigns import CampaignsStore
from loyalnest.services.products.store.catalogue import CatalogueStore
from loyalnest.services.products.store.sales import SalesStore
from loyalnest.services.products.sync import CatalogueSync
from loyalnest.services.products.wire import product_proto, rfm_proto


def _product_id(v: Validator, value: str) -> None:
    v.check(
        bool(SHOPIFY_ID_RE.fullmatch(value)), "product_id", "must be a Shopify product id (digits)"
    )


class ProductsServicer(products_pb2_grpc.ProductsServiceServicer):
    def __init__(
        self,
        catalogue: CatalogueStore,
        sales: SalesStore,
        campaigns: CampaignsStore,
        sync: CatalogueSync,
    ) -> None:
        self._catalogue = catalogue
        self._sales = sales
        self._campaigns = campaigns
        self._sync = sync

    async def ListProducts(
        self, request: pb.ListProductsRequest, context: Context
    ) -> pb.ListProductsResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.check(
                len(request.query) <= MAX_QUERY_LENGTH and request.query.isprintable(),
                "query",
                f"must be at most {MAX_QUERY_LENGTH} printable characters",
            )
        words = query_words(request.query)
        limit = pagination.page_size(request.page_size)
        scope = f"products:{merchant_id}:{' '.join(words)}"
        offset = pagination.decode_page_token(request.page_token, scope) or 0
        rows = await self._catalogue.page(merchant_id, words, limit=limit + 1, offset=offset)
        token = pagination.encode_page_token(scope, offset + limit) if len(rows) > limit else ""
        return pb.ListProductsResponse(
            products=[product_proto(p) for p in rows[:limit]], next_page_token=token
        )

    async def GetProduct(
        self, request: pb.GetProductRequest, context: Context
    ) -> pb.GetProductResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            _product_id(v, request.product_id)
        product = await self._catalogue.get(merchant_id, request.product_id)
        return pb.GetProductResponse(product=product_proto(product))

    async def SyncProducts(
        self, request: pb.SyncProductsRequest, context: Context
    ) -> pb.SyncProductsResponse:
        merchant_id = tenancy.merchant_id()
        result = await self._sync.sync(merchant_id, full=request.full)
        return pb.SyncProductsResponse(
            products_synced=result.written,
            pages=result.pages,
            synced_through=optional_timestamp(result.synced_through),
        )

    async def GetProductRFM(
        self, request: pb.GetProductRFMRequest, context: Context
    ) -> pb.GetProductRFMResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            _product_id(v, request.product_id)
        rfm = await self._sales.rfm(merchant_id, request.product_id)
        return pb.GetProductRFMResponse(rfm=rfm_proto(rfm))

    async def ListProductCampaigns(
        self, request: pb.ListProductCampaignsRequest, context: Context
    ) -> pb.ListProductCampaignsResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            _product_id(v, request.product_id)
        found = await self._campaigns.touching(
            merchant_id, request.product_id, include_ended=request.include_ended
        )
        return pb.ListProductCampaignsResponse(
            campaigns=[
                pb.ProductCampaign(campaign_id=c, name=n, state=s, all_products=a)
                for c, n, s, a in found
            ]
        )

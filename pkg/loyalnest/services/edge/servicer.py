"""gRPC surface of the edge service: the webhook ingress and rate-limit introspection."""

from __future__ import annotations

from prometheus_client import Counter

from loyalnest.gen.edge.v1 import edge_pb2, edge_pb2_grpc
from loyalnest.platform import tenancy
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.merchants import MerchantGate
from loyalnest.platform.observability import get_logger
from loyalnest.platform.validation import Validator
from loyalnest.services.edge.ratelimit import PlanDirectory, TokenBuckets
from loyalnest.services.edge.seen import SeenDeliveries
from loyalnest.services.edge.settings import EdgeSettings
from loyalnest.services.edge.store import EdgeStore, Outcome
from loyalnest.services.edge.webhooks import (
    HMAC_HEADER,
    Delivery,
    UnusableBody,
    customer_id,
    parse_body,
    verify_signature,
)

log = get_logger(__name__)

WEBHOOKS = Counter(
    "loyalnest_webhooks_total",
    "Shopify webhook deliveries by topic and outcome (accepted, duplicate, dead_lettered,"
    " skipped).",
    ["topic", "outcome"],
)
_OUTCOMES = {
    Outcome.ACCEPTED: edge_pb2.WEBHOOK_OUTCOME_ACCEPTED,
    Outcome.DUPLICATE: edge_pb2.WEBHOOK_OUTCOME_DUPLICATE,
    Outcome.DEAD_LETTERED: edge_pb2.WEBHOOK_OUTCOME_DEAD_LETTERED,
}
# Shopify sends these after an uninstall too (shop/redact 48 h later), and the app must
# complete them: never skipped for an uninstalled merchant.
GDPR_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact"})


class EdgeServicer(edge_pb2_grpc.EdgeServiceServicer):
    def __init__(
        self,
        settings: EdgeSettings,
        store: EdgeStore,
        seen: SeenDeliveries,
        buckets: TokenBuckets,
        plans: PlanDirectory,
        merchants: MerchantGate | None = None,
    ) -> None:
        self._secrets = [
            secret.get_secret_value()
            for secret in (settings.shopify_api_secret, *settings.shopify_api_previous_secrets)
            if secret.get_secret_value()
        ]
        if not self._secrets:
            raise ValueError("LOYALNEST_SHOPIFY_API_SECRET is empty: no webhook could verify")
        self._store = store
        self._seen = seen
        self._buckets = buckets
        self._plans = plans
        self._merchants = merchants

    async def ReceiveWebhook(
        self, request: edge_pb2.ReceiveWebhookRequest, context: Context
    ) -> edge_pb2.ReceiveWebhookResponse:
        headers = {
            key: value
            for key, value in (context.invocation_metadata() or ())
            if isinstance(value, str)
        }
        body = request.body.data
        # The signature first: an unsigned request learns nothing, not even what else is wrong.
        verify_signature(body, headers.get(HMAC_HEADER), self._secrets)
        delivery = Delivery.parse(request.resource, request.action, headers, body)
        merchant_id = tenancy.merchant_id_for_shop(delivery.shop_domain)
        if (
            self._merchants is not None
            and delivery.topic not in GDPR_TOPICS
            and not await self._merchants.allows(merchant_id, what=delivery.topic)
        ):
            # Acknowledged (200) so Shopify stops retrying; nothing recorded or published.
            WEBHOOKS.labels(delivery.topic, "skipped").inc()
            return edge_pb2.ReceiveWebhookResponse(
                outcome=edge_pb2.WEBHOOK_OUTCOME_SKIPPED,
                topic=delivery.topic,
                shopify_event_id=delivery.event_id,
            )
        if await self._seen.seen(delivery):
            outcome = Outcome.DUPLICATE
        else:
            try:
                payload = parse_body(body)
            except UnusableBody as exc:
                log.warning("webhook dead-lettered", topic=delivery.topic, reason=str(exc))
                outcome = await self._store.dead_letter(delivery, merchant_id, str(exc))
            else:
                outcome = await self._store.accept(
                    delivery, merchant_id, customer_id(delivery.topic, payload)
                )
            await self._seen.remember(delivery)
        WEBHOOKS.labels(delivery.topic, outcome.value).inc()
        return edge_pb2.ReceiveWebhookResponse(
            outcome=_OUTCOMES[outcome], topic=delivery.topic, shopify_event_id=delivery.event_id
        )

    async def GetRateLimits(
        self, request: edge_pb2.GetRateLimitsRequest, context: Context
    ) -> edge_pb2.GetRateLimitsResponse:
        Validator().raise_if_invalid()
        merchant_id = tenancy.merchant_id()
        plan = await self._plans.plan_of(merchant_id)
        limit = self._plans.limit_of(plan)
        levels = await self._buckets.levels(merchant_id, limit)
        return edge_pb2.GetRateLimitsResponse(
            plan=plan,
            burst=limit.burst,
            requests_per_second=limit.requests_per_second,
            buckets=[
                edge_pb2.RateLimitBucket(endpoint=endpoint, remaining=remaining)
                for endpoint, remaining in sorted(levels.items())
            ],
        )

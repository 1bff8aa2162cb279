"""gRPC surface of the edge service: the webhook ingress, rate-limit introspection, and
Envoy's rate-limit service (the gateway's `ratelimit` filter asks it before routing each
request, with one descriptor `[merchant_id, endpoint]` built from the verified JWT, never
from client headers, and the gRPC method: DESIGN §8).

Redis unreachable: fail open by default (the request passes and the failure is counted), or
closed (`rate_limit_fail_open=false`, every merchant is refused with 429) when protecting the
backends matters more than availability."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import redis.asyncio as redis
from prometheus_client import Counter, Histogram

from loyalnest.gen.edge.v1 import edge_pb2, edge_pb2_grpc
from loyalnest.gen.xds.envoy.config.core.v3 import base_pb2
from loyalnest.gen.xds.envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from loyalnest.platform import shopify_payloads, tenancy
from loyalnest.platform.errors import FieldViolation, InvalidArgument
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.merchants import MerchantGate
from loyalnest.platform.observability import get_logger
from loyalnest.platform.shopify_payloads import UnfitBody
from loyalnest.platform.validation import Validator
from loyalnest.services.edge.domain import GDPR_TOPICS, Outcome
from loyalnest.services.edge.events import webhook_received
from loyalnest.services.edge.store.buckets import TokenBuckets, bucket_key
from loyalnest.services.edge.store.customer_keys import CustomerKeys
from loyalnest.services.edge.store.plans import PlanDirectory
from loyalnest.services.edge.store.postgres import BodyReused, EdgeStore
from loyalnest.services.edge.webhooks import (
    HMAC_HEADER,
    Delivery,
    UnusableBody,
    parse_body,
    verify_signature,
)
from loyalnest.services.edge.wire import (
    ENDPOINT_KEY,
    MERCHANT_KEY,
    OUTCOMES,
    descriptor_entries,
    rate_limit_headers,
)

log = get_logger(__name__)

WEBHOOKS = Counter(
    "loyalnest_webhooks_total",
    "Shopify webhook deliveries by topic and outcome (accepted, duplicate, dead_lettered,"
    " skipped, refused: a signed body that does not fit its topic or was accepted under another).",
    ["topic", "outcome"],
)
DELIVERY_LAG = Histogram(
    "loyalnest_webhook_delivery_lag_seconds",
    "Time from X-Shopify-Triggered-At (unsigned: informative) to the delivery reaching the edge.",
    ["topic"],
    buckets=(1, 5, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
)
STALE = Counter(
    "loyalnest_webhooks_stale_total",
    "Deliveries triggered longer ago than LOYALNEST_WEBHOOK_STALE_AFTER_SECONDS (Shopify's"
    " retries, a backlog); accepted all the same.",
    ["topic"],
)
DECISIONS = Counter(
    "loyalnest_rate_limit_decisions_total",
    "Rate-limit checks by plan and decision (ok, over_limit, unlimited).",
    ["plan", "decision"],
)
REDIS_FAILURES = Counter(
    "loyalnest_rate_limit_redis_failures_total",
    "Checks Redis could not answer, by the decision taken instead (fail_open, fail_closed).",
    ["decision"],
)


class EdgeServicer(edge_pb2_grpc.EdgeServiceServicer):
    def __init__(
        self,
        secrets: Sequence[str],
        store: EdgeStore,
        buckets: TokenBuckets,
        plans: PlanDirectory,
        customer_keys: CustomerKeys,
        merchants: MerchantGate | None = None,
        *,
        stale_after_seconds: float = 3600.0,
    ) -> None:
        """`secrets`: the Shopify app secrets a webhook may be signed with (the current first)."""
        self._secrets = list(secrets)
        self._customer_keys = customer_keys
        self._stale_after_seconds = stale_after_seconds
        self._store = store
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
        self._observe_lag(delivery)
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
        # Deduplication is the accept (or dead-letter) statement's: the event's idempotency key
        # commits with its outbox row, so a redelivery is answered DUPLICATE (200, nothing
        # published) and a delivery that failed midway left no key and is accepted when
        # Shopify retries. No Redis round trip: a fast path that only pays off for
        # redeliveries cost every new delivery two (bench/README.md, issue 15).
        try:
            payload = parse_body(body)
        except UnusableBody as exc:
            log.warning("webhook dead-lettered", topic=delivery.topic, reason=str(exc))
            outcome = await self._store.dead_letter(delivery, merchant_id, str(exc))
        else:
            outcome = await self._accept(delivery, merchant_id, payload)
        WEBHOOKS.labels(delivery.topic, outcome.value).inc()
        return edge_pb2.ReceiveWebhookResponse(
            outcome=OUTCOMES[outcome], topic=delivery.topic, shopify_event_id=delivery.event_id
        )

    async def _accept(
        self, delivery: Delivery, merchant_id: str, payload: dict[str, Any]
    ) -> Outcome:
        """Publishes a JSON delivery whose body fits its topic; refuses it (400, nothing
        stored) when it does not, or when the same bytes were accepted under another topic:
        the headers naming the topic are not signed, so only the body can vouch for it."""
        try:
            content = shopify_payloads.content(delivery.topic, payload, delivery.shop_domain)
        except UnfitBody as exc:
            self._refuse(delivery, "unfit_body", str(exc))
        try:
            if content.customer_data is None or not content.customer_id:
                return await self._store.accept(
                    delivery, merchant_id, webhook_received(delivery, content)
                )
            keys = self._customer_keys
            if keys.known(merchant_id, content.customer_id):
                # A returning customer: under the key they have (two statements, as always).
                sealed = await keys.seal(
                    merchant_id,
                    content.customer_id,
                    delivery.event_id,
                    content.customer_data,
                    shop_domain=delivery.shop_domain,
                )
            else:
                # Sealed under a key made now, stored with the delivery if the customer has
                # none: one round trip for a customer seen for the first time.
                new_key = keys.new_key(merchant_id, content.customer_id)
                event = webhook_received(
                    delivery, content, new_key.seal(delivery.event_id, content.customer_data)
                )
                outcome = await self._store.accept(delivery, merchant_id, event, new_key)
                if isinstance(outcome, Outcome):
                    keys.remember(merchant_id, content.customer_id)
                    return outcome
                # Nothing written: sealed again under the customer's key.
                sealed = await keys.seal_again(
                    outcome,
                    delivery.event_id,
                    content.customer_data,
                    shop_domain=delivery.shop_domain,
                )
            # None: a redelivery of an event recorded before, its customer erased since; the
            # accept answers it (DUPLICATE, or refused) and publishes nothing.
            return await self._store.accept(
                delivery, merchant_id, webhook_received(delivery, content, sealed)
            )
        except BodyReused as exc:
            self._refuse(delivery, "body_reused", f"these bytes were accepted as {exc.first_topic}")

    def _refuse(self, delivery: Delivery, why: str, detail: str) -> NoReturn:
        WEBHOOKS.labels(delivery.topic, "refused").inc()
        log.warning("webhook refused", topic=delivery.topic, why=why, detail=detail)
        raise InvalidArgument(
            f"the body is not a {delivery.topic} webhook",
            [FieldViolation("body", f"{detail} (not a {delivery.topic} body)")],
        )

    def _observe_lag(self, delivery: Delivery) -> None:
        """X-Shopify-Triggered-At is not signed: it feeds these metrics, never a decision."""
        if delivery.triggered_at is None:
            return
        lag = (datetime.now(UTC) - delivery.triggered_at).total_seconds()
        DELIVERY_LAG.labels(delivery.topic).observe(max(lag, 0.0))
        if lag > self._stale_after_seconds:
            STALE.labels(delivery.topic).inc()

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


class RateLimitServicer(rls_pb2_grpc.RateLimitServiceServicer):
    """envoy.service.ratelimit.v3.RateLimitService for the gateway's `ratelimit` filter."""

    def __init__(self, buckets: TokenBuckets, plans: PlanDirectory, *, fail_open: bool) -> None:
        self._fail_open = fail_open
        self._buckets = buckets
        self._plans = plans

    async def ShouldRateLimit(self, request: Any, context: Context) -> Any:
        cost = max(1, request.hits_addend)
        statuses: list[Any] = []
        headers: list[base_pb2.HeaderValue] = []
        refused = False
        for descriptor in request.descriptors:
            entries = descriptor_entries(descriptor)
            merchant_id, endpoint = entries.get(MERCHANT_KEY), entries.get(ENDPOINT_KEY)
            if not merchant_id or not endpoint:
                # Not a descriptor this service defines: no limit from us.
                statuses.append(
                    rls_pb2.RateLimitResponse.DescriptorStatus(code=rls_pb2.RateLimitResponse.OK)
                )
                DECISIONS.labels("none", "unlimited").inc()
                continue
            try:
                plan = await self._plans.plan_of(merchant_id)
                decision = await self._buckets.take(
                    bucket_key(merchant_id, endpoint), self._plans.limit_of(plan), cost
                )
            except (redis.RedisError, OSError) as exc:
                return self._without_redis(exc)
            DECISIONS.labels(plan, "ok" if decision.allowed else "over_limit").inc()
            refused |= not decision.allowed
            statuses.append(
                rls_pb2.RateLimitResponse.DescriptorStatus(
                    code=rls_pb2.RateLimitResponse.OK
                    if decision.allowed
                    else rls_pb2.RateLimitResponse.OVER_LIMIT,
                    limit_remaining=max(0, decision.remaining),
                )
            )
            # One descriptor per request in our configuration; with several, the last wins.
            headers = rate_limit_headers(decision)
        return rls_pb2.RateLimitResponse(
            overall_code=rls_pb2.RateLimitResponse.OVER_LIMIT
            if refused
            else rls_pb2.RateLimitResponse.OK,
            statuses=statuses,
            response_headers_to_add=headers,
        )

    def _without_redis(self, exc: BaseException) -> Any:
        decision = "fail_open" if self._fail_open else "fail_closed"
        REDIS_FAILURES.labels(decision).inc()
        log.warning("rate limiter without Redis", decision=decision, error=str(exc))
        code = (
            rls_pb2.RateLimitResponse.OK
            if self._fail_open
            else rls_pb2.RateLimitResponse.OVER_LIMIT
        )
        return rls_pb2.RateLimitResponse(overall_code=code)

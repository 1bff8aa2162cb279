"""Webhook signatures, delivery parsing and the edge's rate-limit decisions (no servers)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import json
import pkgutil

import pytest

import loyalnest.gen
from loyalnest.gateway.descriptors import services_in_descriptor_set
from loyalnest.gateway.reflection import DEFAULT_DESCRIPTOR_SET
from loyalnest.platform.auth.policy import access_policy
from loyalnest.platform.errors import InvalidArgument
from loyalnest.platform.tenancy import merchant_id_for_shop
from loyalnest.services.edge.domain import Decision, PlanRateLimit
from loyalnest.services.edge.servicer import RateLimitServicer
from loyalnest.services.edge.signing import shopify_headers
from loyalnest.services.edge.store.buckets import TokenBuckets
from loyalnest.services.edge.webhooks import (
    BadSignature,
    Delivery,
    UnusableBody,
    parse_body,
    signature,
    verify_signature,
)
from loyalnest.services.edge.wire import rate_limit_headers

BODY = b'{"id": 1, "customer": {"id": 42}}'


def test_signature_is_shopify_recipe() -> None:
    expected = base64.b64encode(hmac.new(b"s3cret", BODY, hashlib.sha256).digest()).decode()
    assert signature(BODY, "s3cret") == expected
    verify_signature(BODY, expected, ["other", "s3cret"])


@pytest.mark.parametrize(
    ("header", "secrets"),
    [
        (None, ["s3cret"]),
        ("", ["s3cret"]),
        ("%%%", ["s3cret"]),
        (signature(BODY, "s3cret"), ["wrong"]),
        (signature(BODY + b" ", "s3cret"), ["s3cret"]),
        (signature(BODY, "s3cret"), []),
    ],
)
def test_bad_signatures_are_rejected(header: str | None, secrets: list[str]) -> None:
    with pytest.raises(BadSignature):
        verify_signature(BODY, header, secrets)


def test_delivery_parse_names_every_problem() -> None:
    with pytest.raises(InvalidArgument) as error:
        Delivery.parse("orders", "flip", {"x-shopify-shop-domain": "x.example.com"}, BODY)
    fields = {v.field for v in error.value.violations}
    assert fields == {
        "topic",
        "x-shopify-topic",
        "x-shopify-shop-domain",
        "x-shopify-webhook-id",
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"x-shopify-topic": None}, "x-shopify-topic"),
        ({"x-shopify-topic": "orders/paid"}, "x-shopify-topic"),
        ({"x-shopify-shop-domain": None}, "x-shopify-shop-domain"),
        ({"x-shopify-shop-domain": "a.myshopify.com.evil.example"}, "x-shopify-shop-domain"),
        ({"x-shopify-shop-domain": "a.myshopify.com\nx"}, "x-shopify-shop-domain"),
    ],
)
def test_topic_and_shop_headers_are_required_and_match(
    change: dict[str, str | None], field: str
) -> None:
    headers = shopify_headers(
        BODY, topic="orders/cancelled", shop_domain="a.myshopify.com", secret="s"
    )
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    with pytest.raises(InvalidArgument) as error:
        Delivery.parse("orders", "cancelled", headers, BODY)
    assert {v.field for v in error.value.violations} == {field}


def test_delivery_without_event_id_dedupes_by_webhook_id() -> None:
    headers = shopify_headers(BODY, topic="orders/paid", shop_domain="A.myshopify.com", secret="s")
    del headers["x-shopify-event-id"]
    delivery = Delivery.parse("orders", "paid", headers, BODY)
    assert delivery.event_id == headers["x-shopify-webhook-id"]
    assert delivery.shop_domain == "a.myshopify.com"
    assert "x-shopify-hmac-sha256" not in delivery.headers


def test_body_must_be_a_json_object() -> None:
    assert parse_body(BODY) == json.loads(BODY)
    for bad in (b"[1]", b"{", b"\xff"):
        with pytest.raises(UnusableBody):
            parse_body(bad)


def test_merchant_of_a_shop_is_stable_and_case_insensitive() -> None:
    first = merchant_id_for_shop("Demo.myshopify.com")
    assert first == merchant_id_for_shop("demo.myshopify.com ")
    assert first != merchant_id_for_shop("other.myshopify.com")


def test_rate_limit_headers() -> None:
    limit = PlanRateLimit(burst=10, requests_per_second=2)
    refused = Decision(False, limit, 0, retry_after_seconds=0.2, reset_seconds=5)
    headers = {h.key: h.value for h in rate_limit_headers(refused)}
    assert headers == {
        "x-ratelimit-limit": "10, 10;w=5",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "5",
        "retry-after": "1",
    }
    allowed = Decision(True, limit, 9, retry_after_seconds=0, reset_seconds=0.5)
    assert "retry-after" not in {h.key for h in rate_limit_headers(allowed)}


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down_fails_open_or_closed(fail_open: bool) -> None:
    from loyalnest.gen.xds.envoy.service.ratelimit.v3 import rls_pb2

    class Plans:
        async def plan_of(self, merchant_id: str) -> str:
            return "free"

        def limit_of(self, plan: str) -> PlanRateLimit:
            return PlanRateLimit(burst=1, requests_per_second=1)

    # A port nothing listens on: a real connection failure.
    buckets = TokenBuckets.from_url("redis://127.0.0.1:1")
    servicer = RateLimitServicer(buckets, Plans(), fail_open=fail_open)  # type: ignore[arg-type]
    request = rls_pb2.RateLimitRequest(domain="loyalnest")
    descriptor = request.descriptors.add()
    descriptor.entries.add(key="merchant_id", value="m")
    descriptor.entries.add(key="endpoint", value="/x.Y/Z")
    response = await servicer.ShouldRateLimit(request, None)  # type: ignore[arg-type]
    expected = rls_pb2.RateLimitResponse.OK if fail_open else rls_pb2.RateLimitResponse.OVER_LIMIT
    assert response.overall_code == expected
    await buckets.close()


def test_every_admin_rpc_requires_a_permission() -> None:
    # access_policy reads the default pool: load every generated module into it (a fixed
    # list passed only beside tests that had imported the rest).
    for module in pkgutil.walk_packages(loyalnest.gen.__path__, "loyalnest.gen."):
        if module.name.endswith("_pb2"):
            importlib.import_module(module.name)
    services = services_in_descriptor_set(DEFAULT_DESCRIPTOR_SET).values()
    admin = [s.grpc_path(m.name) for s in services for m in s.methods if m.admin]
    assert admin, "no /admin/ RPCs found: the allowlist would protect nothing"
    for path in admin:
        policy = access_policy(path)
        assert not policy.public and policy.permission, path


def test_webhook_route_declares_its_deadline_and_is_retry_safe() -> None:
    edge = services_in_descriptor_set(DEFAULT_DESCRIPTOR_SET)["loyalnest.edge.v1.EdgeService"]
    (receive,) = [m for m in edge.methods if m.name == "ReceiveWebhook"]
    assert receive.timeout_seconds == 4 and receive.idempotent


# --- whose key seals a dead letter (services/edge/dead_letters.py) ---------------------------


def test_a_dead_letter_names_the_customer_shopify_puts_in_it() -> None:
    from loyalnest.services.edge.dead_letters import customer_named

    order = b'{"id": 5, "line_items": [{"id": 9}], "customer": {"email": "a@b.c", "id": 73'
    assert customer_named("orders/create", order + b'9, "x": [ cut') == "739"
    assert customer_named("customers/update", b'{"id": 42, "email": "a@b.c", "note": "cut') == "42"
    privacy = b'{"shop_id": 1, "customer": {"id": "77", "email": "a@b.c"}, "orders_to_redact": [1'
    assert customer_named("customers/redact", privacy) == "77"
    # Invalid UTF-8 (orjson refuses it) in a body that is JSON otherwise.
    assert customer_named("orders/paid", b'{"note": "\xff", "customer": {"id": 12}}') == "12"
    assert customer_named("orders/create", b'{"id": 1, "line_items": [ truncated') is None
    assert customer_named("orders/create", b"\xff\xfe garbage") is None
    assert customer_named("customers/create", b'{"id": true}') is None

"""The gateway edge through a real Envoy: Shopify webhooks (HMAC, dedupe, dead letters),
per-merchant rate limits, the admin allowlist and the body limit. Real PostgreSQL, real Valkey,
the real edge service."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import psycopg.types.json
import pytest

from loyalnest.devstack.postgres import free_port
from loyalnest.gateway import Upstream
from loyalnest.gateway.edge import EdgePolicy, JwtProvider, ReadRateLimit
from loyalnest.gen.events.v1 import envelope_pb2
from loyalnest.gen.events.v1 import gateway_pb2 as gateway_events
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.personal_data import CustomerRef
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import running
from loyalnest.platform.tenancy import merchant_id_for_shop
from loyalnest.services.edge.domain import Outcome, PlanRateLimit
from loyalnest.services.edge.service import (
    DATABASE,
    SERVICE_NAME,
    SPEC,
    EdgeSettings,
    master_cipher,
)
from loyalnest.services.edge.signing import shopify_headers, webhook_path
from loyalnest.services.edge.store.customer_keys import CustomerErased, CustomerKeys, KeyNotStored
from loyalnest.services.edge.store.postgres import EdgeStore
from loyalnest.services.edge.webhooks import Delivery
from tests.auth import JWKS_PATH, merchant_headers
from tests.integration.conftest import eventually, service_settings_for_tests
from tests.integration.test_gateway_validate import (
    Gateway,
    Response,
    gateway_config,
    http,
    running_gateway,
)
from tests.shared import shared_file

pytestmark = pytest.mark.integration

SECRET = "edge-test-secret"
PREVIOUS_SECRET = "edge-test-old-secret"
SHOP = "loyalnest-demo.myshopify.com"
ORDER = shared_file("fixtures", "shopify", "orders-create.json").read_bytes()
BURST = 5
READ_LIMITS = ("gateway:read",)


@dataclass
class Edge:
    gateway: Gateway
    database_url: str

    async def deliver(
        self, body: bytes, headers: dict[str, str], topic: str = "orders/create"
    ) -> Response:
        return await http(
            "POST", self.gateway.url + webhook_path(topic), body=body, headers=headers
        )

    def count(self, sql: str, *params: Any) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(sql, params).fetchone()
            assert row is not None
            return int(row[0])

    def envelopes(self) -> list[bytes]:
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute("SELECT envelope FROM edge.outbox").fetchall()
        return [bytes(raw) for (raw,) in rows]

    def published(self, shopify_event_id: str) -> list[gateway_events.WebhookReceived]:
        """webhook.received events in the outbox for one Shopify event (the relay sends each
        row once; tests/integration/test_events.py proves that part)."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT envelope FROM edge.outbox WHERE event_type = 'webhook.received'"
            ).fetchall()
        events = []
        for (raw,) in rows:
            envelope = envelope_pb2.Envelope.FromString(bytes(raw))
            event = gateway_events.WebhookReceived()
            envelope.payload.Unpack(event)
            if event.shopify_event_id == shopify_event_id:
                assert envelope.merchant_id == merchant_id_for_shop(SHOP)
                events.append(event)
        return events


def edge_settings(database_url: str, redis_url: str) -> EdgeSettings:
    return service_settings_for_tests(
        EdgeSettings,
        database_url,
        redis_url=redis_url,
        shopify_api_secret=SECRET,
        shopify_api_previous_secrets=[PREVIOUS_SECRET],
        # A slow refill: the test exhausts a bucket in a few calls and it stays exhausted.
        rate_limit_plans={"free": PlanRateLimit(burst=BURST, requests_per_second=0.05)},
    )


@contextlib.asynccontextmanager
async def edge_gateway(
    database_url: str,
    redis_url: str,
    workdir: Path,
    admin_cidrs: tuple[str, ...],
    read_rate_limit: ReadRateLimit | None = None,
) -> AsyncIterator[Edge]:
    async with running(SPEC, edge_settings(database_url, redis_url)) as edge:
        await asyncio.wait_for(edge.health.started.wait(), 30)
        upstreams = (
            Upstream("edge", (SERVICE_NAME,), (("127.0.0.1", edge.port),)),
            # Admin RPCs only need to be routable: the allowlist answers before any backend.
            Upstream("auth", ("loyalnest.auth.v1.AuthService",), (("127.0.0.1", free_port()),)),
        )
        config = gateway_config(
            upstreams[0],
            upstreams=upstreams,
            policy=EdgePolicy(
                jwt=JwtProvider(JWKS_PATH, ServiceSettings().jwt_issuer),
                admin_allowed_cidrs=admin_cidrs,
                rate_limit_upstream="edge",
                read_rate_limit=read_rate_limit,
            ),
        )
        async with running_gateway(config, workdir, {"edge": 1}) as gateway:
            yield Edge(gateway, database_url)


@contextlib.asynccontextmanager
async def edge_store(database_url: str) -> AsyncIterator[EdgeStore]:
    """The edge's store and keys as the service builds them (its settings, the same key)."""
    settings = edge_settings(database_url, "redis://127.0.0.1:1")
    database = Database(settings, DATABASE)
    await database.open()
    try:
        yield EdgeStore(database, master_cipher(settings))
    finally:
        await database.close()


@contextlib.asynccontextmanager
async def customer_keys(database_url: str) -> AsyncIterator[CustomerKeys]:
    settings = edge_settings(database_url, "redis://127.0.0.1:1")
    database = Database(settings, DATABASE)
    await database.open()
    try:
        yield CustomerKeys(database, master_cipher(settings))
    finally:
        await database.close()


@pytest.fixture
async def edge(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Edge]:
    async with edge_gateway(database_url, redis_url, tmp_path, ("127.0.0.1/32",)) as running_edge:
        yield running_edge


def _headers(body: bytes = ORDER, **overrides: Any) -> dict[str, str]:
    return shopify_headers(
        body, topic="orders/create", shop_domain=SHOP, secret=SECRET, **overrides
    )


# --- webhooks -----------------------------------------------------------------------------


async def test_signed_webhook_is_accepted_once_and_published(edge: Edge) -> None:
    headers = _headers()
    response = await edge.deliver(ORDER, headers)
    assert response.status == 200, response.body
    assert response.json()["outcome"] == "WEBHOOK_OUTCOME_ACCEPTED"
    event_id = headers["x-shopify-event-id"]
    (event,) = edge.published(event_id)
    assert (event.topic, event.shop_domain, event.payload_version) == ("orders/create", SHOP, 2)
    assert event.webhook_id == headers["x-shopify-webhook-id"]
    assert event.customer_id == str(json.loads(ORDER)["customer"]["id"])
    # What Points needs, and no personal data in clear anywhere in the event.
    assert event.body == b""
    assert event.order.order_id == "5829301457001"
    assert [(i.product_id, i.quantity, i.price, i.discount) for i in event.order.line_items] == [
        ("8123400001", 2, "30.00", "6.00"),
        ("8123400002", 1, "60.00", "6.00"),
    ]
    assert event.customer_data.customer_id == event.customer_id
    published = edge.envelopes()
    for personal in (b"ada.lovelace@example.com", b"Lovelace", b"+14155550101"):
        assert all(personal not in raw for raw in published)
    merchant = edge.count(
        "SELECT count(*) FROM edge.webhook_idempotency_keys"
        " WHERE event_id = %s AND merchant_id = %s",
        event_id,
        merchant_id_for_shop(SHOP),
    )
    assert merchant == 1


async def test_redeliveries_sequential_and_concurrent_publish_one_event(edge: Edge) -> None:
    headers = _headers()
    event_id = headers["x-shopify-event-id"]
    first = await edge.deliver(ORDER, headers)
    assert first.json()["outcome"] == "WEBHOOK_OUTCOME_ACCEPTED"
    for _ in range(4):  # Shopify's retries: same event, new delivery ids
        again = await edge.deliver(ORDER, _headers(event_id=event_id))
        assert (again.status, again.json()["outcome"]) == (200, "WEBHOOK_OUTCOME_DUPLICATE")
    assert len(edge.published(event_id)) == 1

    concurrent_headers = _headers()
    burst = await asyncio.gather(*(edge.deliver(ORDER, concurrent_headers) for _ in range(5)))
    outcomes = sorted(r.json()["outcome"] for r in burst)
    assert [r.status for r in burst] == [200] * 5
    assert outcomes == ["WEBHOOK_OUTCOME_ACCEPTED"] + ["WEBHOOK_OUTCOME_DUPLICATE"] * 4
    assert len(edge.published(concurrent_headers["x-shopify-event-id"])) == 1


async def test_a_delivery_that_failed_midway_is_accepted_when_shopify_retries(
    edge: Edge,
) -> None:
    """PostgreSQL alone deduplicates (no Redis fast path): a delivery whose record failed
    (here the outbox insert, by a trigger) is not acknowledged, leaves no key, and Shopify's
    retry is accepted and published once."""
    headers = _headers()
    event_id = headers["x-shopify-event-id"]
    with psycopg.connect(edge.database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION edge.refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'outbox refused by the test'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_outbox BEFORE INSERT ON edge.outbox"
            " FOR EACH ROW EXECUTE FUNCTION edge.refuse_outbox()"
        )
        try:
            failed = await edge.deliver(ORDER, headers)
        finally:
            conn.execute("DROP TRIGGER refuse_outbox ON edge.outbox")
            conn.execute("DROP FUNCTION edge.refuse_outbox()")
    assert failed.status >= 500, failed.body  # Shopify retries anything but 2xx
    keys = "SELECT count(*) FROM edge.webhook_idempotency_keys WHERE event_id = %s"
    assert edge.count(keys, event_id) == 0
    assert edge.published(event_id) == []
    retried = await edge.deliver(ORDER, _headers(event_id=event_id))
    assert (retried.status, retried.json()["outcome"]) == (200, "WEBHOOK_OUTCOME_ACCEPTED")
    again = await edge.deliver(ORDER, _headers(event_id=event_id))
    assert (again.status, again.json()["outcome"]) == (200, "WEBHOOK_OUTCOME_DUPLICATE")
    assert len(edge.published(event_id)) == 1
    assert edge.count(keys, event_id) == 1


async def test_previous_secret_is_accepted_during_rotation(edge: Edge) -> None:
    headers = shopify_headers(
        ORDER, topic="orders/create", shop_domain=SHOP, secret=PREVIOUS_SECRET
    )
    response = await edge.deliver(ORDER, headers)
    assert response.status == 200, response.body
    assert len(edge.published(headers["x-shopify-event-id"])) == 1


@pytest.mark.parametrize(
    "tamper",
    ["wrong_secret", "missing_header", "body_altered", "not_base64"],
)
async def test_bad_signatures_get_401_and_store_nothing(edge: Edge, tamper: str) -> None:
    headers = _headers()
    body = ORDER
    if tamper == "wrong_secret":
        headers = shopify_headers(ORDER, topic="orders/create", shop_domain=SHOP, secret="guess")
    elif tamper == "missing_header":
        del headers["x-shopify-hmac-sha256"]
    elif tamper == "body_altered":
        body = (
            ORDER.replace(b'"total_price"', b'"total_price" ', 1)
            if b'"total_price"' in ORDER
            else ORDER + b" "
        )
    else:
        headers["x-shopify-hmac-sha256"] = "not base64!"
    response = await edge.deliver(body, headers)
    assert response.status == 401, response.body
    assert edge.count("SELECT count(*) FROM edge.webhook_idempotency_keys") == 0
    assert edge.count("SELECT count(*) FROM edge.outbox") == 0


async def test_signed_malformed_json_is_dead_lettered_not_dropped(edge: Edge) -> None:
    body = b'{"id": 1, "line_items": [ truncated'
    headers = _headers(body)
    response = await edge.deliver(body, headers)
    assert response.status == 200, response.body
    assert response.json()["outcome"] == "WEBHOOK_OUTCOME_DEAD_LETTERED"
    with psycopg.connect(edge.database_url) as conn:
        row = conn.execute(
            "SELECT body, reason, topic, body_sealed, dead_letter_id"
            " FROM edge.webhook_dead_letters WHERE event_id = %s",
            (headers["x-shopify-event-id"],),
        ).fetchone()
    assert row is not None and row[2] == "orders/create"
    assert "not JSON" in row[1]
    # Kept sealed under the edge's master key (it may hold anyone's personal data); an operator
    # reads it back with the key.
    assert row[3] is True and b"line_items" not in bytes(row[0])
    async with edge_store(edge.database_url) as store:
        assert await store.dead_letter_body(row[4]) == body
    assert edge.count("SELECT count(*) FROM edge.outbox") == 0


async def test_an_erased_customers_dead_letter_never_opens_again_anothers_still_does(
    edge: Edge,
) -> None:
    """A dead letter naming a customer is sealed under that customer's key: erasing them
    deletes the key and their dead letters, and a copy restored from a backup stays
    unreadable (crypto-shredding); another customer's dead letter still opens for a replay,
    and one naming nobody is sealed under the master key."""
    order = json.loads(ORDER)
    bodies: dict[str, bytes] = {}
    for customer in ("7390012230101", "7390012230102"):
        complete = json.dumps({**order, "customer": {**order["customer"], "id": int(customer)}})
        bodies[customer] = complete.encode()[:-40]  # cut short: not JSON any more
    bodies["nobody"] = b"\xff\xfe not json at all"
    rows: dict[str, tuple[Any, ...]] = {}
    for who, body in bodies.items():
        headers = _headers(body)
        response = await edge.deliver(body, headers)
        assert response.json()["outcome"] == "WEBHOOK_OUTCOME_DEAD_LETTERED", response.body
        with psycopg.connect(edge.database_url) as conn:
            row = conn.execute(
                "SELECT dead_letter_id, shop_domain, event_id, topic, webhook_id, headers,"
                " body, body_sealed, reason, key_id FROM edge.webhook_dead_letters"
                " WHERE event_id = %s",
                (headers["x-shopify-event-id"],),
            ).fetchone()
        assert row is not None and who.encode() not in bytes(row[6])
        rows[who] = row
    erased, kept = "7390012230101", "7390012230102"
    assert rows[erased][9] and rows[kept][9] and rows["nobody"][9] is None
    async with edge_store(edge.database_url) as store:
        for who, body in bodies.items():
            assert await store.dead_letter_body(rows[who][0]) == body
    async with customer_keys(edge.database_url) as keys:
        assert await keys.erase_customer(merchant_id_for_shop(SHOP), CustomerRef(erased)) >= 2
    assert edge.count("SELECT count(*) FROM edge.webhook_dead_letters") == 2
    # The erased customer's dead letter, as a backup taken before the erasure holds it.
    with psycopg.connect(edge.database_url) as conn:
        restored = conn.execute(
            "INSERT INTO edge.webhook_dead_letters (shop_domain, event_id, topic, webhook_id,"
            " headers, body, body_sealed, reason, key_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING dead_letter_id",
            (*rows[erased][1:5], psycopg.types.json.Jsonb(rows[erased][5]), *rows[erased][6:]),
        ).fetchone()
    assert restored is not None
    async with edge_store(edge.database_url) as store:
        with pytest.raises(CustomerErased):
            await store.dead_letter_body(restored[0])
        assert await store.dead_letter_body(rows[kept][0]) == bodies[kept]
        assert await store.dead_letter_body(rows["nobody"][0]) == bodies["nobody"]


async def test_unknown_topic_and_bad_shop_are_400_with_field_violations(edge: Edge) -> None:
    headers = _headers()
    response = await edge.deliver(
        ORDER, headers | {"x-shopify-topic": "orders/flip"}, topic="orders/flip"
    )
    assert response.status == 400, response.body
    fields = {v["field"] for v in response.json()["details"][0]["field_violations"]}
    assert fields == {"topic"}
    bad_shop = _headers() | {"x-shopify-shop-domain": "evil.example.com"}
    response = await edge.deliver(ORDER, bad_shop)
    assert response.status == 400
    assert edge.count("SELECT count(*) FROM edge.outbox") == 0


async def test_oversized_body_gets_413(edge: Edge) -> None:
    body = b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = await edge.deliver(body, _headers(body))
    assert response.status == 413
    assert edge.count("SELECT count(*) FROM edge.webhook_idempotency_keys") == 0


# --- rate limits --------------------------------------------------------------------------


async def test_merchant_over_its_limit_gets_429_others_are_unaffected(edge: Edge) -> None:
    url = f"{edge.gateway.url}/v1/api/rate-limits"
    noisy = merchant_headers("merchant-noisy", READ_LIMITS)
    statuses = []
    last: Response | None = None
    for _ in range(BURST + 2):
        last = await http("GET", url, headers=noisy)
        statuses.append(last.status)
    assert statuses[:BURST] == [200] * BURST, statuses
    assert statuses[BURST:] == [429, 429]
    assert last is not None
    assert int(last.headers["retry-after"]) >= 1
    assert last.headers["x-ratelimit-remaining"] == "0"
    assert last.headers["x-ratelimit-limit"].startswith(f"{BURST},")

    quiet = await http("GET", url, headers=merchant_headers("merchant-quiet", READ_LIMITS))
    assert quiet.status == 200, quiet.body
    assert quiet.headers["x-ratelimit-remaining"] == str(BURST - 1)
    body = quiet.json()
    assert (body["plan"], body["burst"]) == ("free", str(BURST))


async def test_over_limit_is_resource_exhausted_over_grpc(edge: Edge) -> None:
    from tests.auth import merchant_metadata

    async with grpc.aio.insecure_channel(edge.gateway.address) as channel:
        call = channel.unary_unary(
            "/loyalnest.edge.v1.EdgeService/GetRateLimits",
            request_serializer=lambda _: b"",
            response_deserializer=lambda raw: raw,
        )
        metadata = merchant_metadata("merchant-grpc", READ_LIMITS)
        for _ in range(BURST):
            await call(None, metadata=metadata)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(None, metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


READ_BURST = 3
STAFF_SESSIONS = "/v1/api/auth/staff-sessions"  # a write, routed to Auth (not running here)


@pytest.fixture
async def edge_local_reads(
    database_url: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[Edge]:
    reads = ReadRateLimit(burst=READ_BURST, requests_per_second=1)
    async with edge_gateway(
        database_url, redis_url, tmp_path, ("127.0.0.1/32",), reads
    ) as running_edge:
        yield running_edge


async def test_reads_are_limited_in_envoy_writes_by_the_service(edge_local_reads: Edge) -> None:
    gateway = edge_local_reads.gateway
    limits_url = f"{gateway.url}/v1/api/rate-limits"
    noisy = merchant_headers("merchant-reader", READ_LIMITS)
    statuses = []
    last: Response | None = None
    for _ in range(READ_BURST + 1):
        last = await http("GET", limits_url, headers=noisy)
        statuses.append(last.status)
    assert statuses == [200] * READ_BURST + [429], statuses
    assert last is not None and last.headers["retry-after"] == "1"
    # Envoy's own bucket: the rate-limit service was not asked (no x-ratelimit-* headers).
    assert "x-ratelimit-remaining" not in last.headers

    # Writes still take the plan's tokens in Redis, cluster-wide, through the service.
    writer = merchant_headers("merchant-writer", ["roles:write", *READ_LIMITS])
    writes = [
        (await http("POST", gateway.url + STAFF_SESSIONS, body=b"{}", headers=writer)).status
        for _ in range(BURST + 1)
    ]
    assert 429 not in writes[:BURST], writes  # Auth is not running: not 429 at least
    assert writes[BURST] == 429, writes
    seen = await http("GET", limits_url, headers=writer)
    assert seen.status == 200, seen.body
    buckets = {b["endpoint"]: int(b.get("remaining", 0)) for b in seen.json().get("buckets", [])}
    # The write's bucket is in Redis; the reads' never was.
    assert buckets == {"/loyalnest.auth.v1.AuthService/IssueStaffSession": 0}, buckets

    # Another merchant's reads have their own bucket.
    other = await http("GET", limits_url, headers=merchant_headers("merchant-other", READ_LIMITS))
    assert other.status == 200, other.body


# --- admin allowlist ----------------------------------------------------------------------


async def test_admin_route_from_outside_the_allowlist_is_403(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    admin = merchant_headers("merchant-admin", ("auth:revoke",))
    body = {"token_id": "abc"}
    async with edge_gateway(database_url, redis_url, tmp_path, ("10.99.0.0/16",)) as outside:
        refused = await http(
            "POST", f"{outside.gateway.url}/admin/v1/auth/revoke", headers=admin, json_body=body
        )
        # Native gRPC is refused too: the policy is on the method, not on a REST path.
        async with grpc.aio.insecure_channel(outside.gateway.address) as channel:
            call = channel.unary_unary(
                "/loyalnest.auth.v1.AuthService/RevokeToken",
                request_serializer=lambda _: b"",
                response_deserializer=lambda raw: raw,
            )
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await call(None)
        # X-Forwarded-For is the client's to write: it must not open the door.
        spoofed = await http(
            "POST",
            f"{outside.gateway.url}/admin/v1/auth/revoke",
            headers=admin | {"x-forwarded-for": "10.99.1.1"},
            json_body=body,
        )
        # Non-admin routes are untouched by the allowlist.
        webhook = await outside.deliver(ORDER, _headers())
    assert refused.status == 403, refused.body
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert spoofed.status == 403
    assert webhook.status == 200


async def test_admin_route_from_the_allowlist_passes_the_edge(edge: Edge) -> None:
    # Past RBAC, JWT and the rate limit, the request meets the (absent) Auth backend: Envoy's
    # 503, not the allowlist's 403.
    response = await http(
        "POST",
        f"{edge.gateway.url}/admin/v1/auth/revoke",
        headers=merchant_headers("merchant-admin", ("auth:revoke",)),
        json_body={"token_id": "abc"},
    )
    assert response.status == 503, response.body


# --- the topic bound to the body (issue 14, finding 2) -------------------------------------


def _signed(body: bytes, topic: str, **overrides: Any) -> dict[str, str]:
    return shopify_headers(body, topic=topic, shop_domain=SHOP, secret=SECRET, **overrides)


async def test_paid_order_replayed_as_cancelled_is_refused_and_stores_nothing(edge: Edge) -> None:
    # The attack: a captured orders/paid delivery (Shopify's signature, valid forever since it
    # covers the body only) sent to the cancellation route with fresh headers.
    paid = await edge.deliver(ORDER, _signed(ORDER, "orders/paid"), topic="orders/paid")
    assert paid.json()["outcome"] == "WEBHOOK_OUTCOME_ACCEPTED", paid.body
    before = edge.count("SELECT count(*) FROM edge.outbox")
    keys = edge.count("SELECT count(*) FROM edge.webhook_idempotency_keys")
    replay = _signed(ORDER, "orders/cancelled")
    response = await edge.deliver(ORDER, replay, topic="orders/cancelled")
    assert response.status == 400, response.body
    error = response.json()
    assert error["details"][0]["field_violations"][0]["field"] == "body"
    assert "cancelled_at" in error["details"][0]["field_violations"][0]["description"]
    assert edge.published(replay["x-shopify-event-id"]) == []
    assert edge.count("SELECT count(*) FROM edge.outbox") == before
    assert edge.count("SELECT count(*) FROM edge.webhook_idempotency_keys") == keys


async def test_same_bytes_under_an_incompatible_topic_are_refused(edge: Edge) -> None:
    # A body that fits two topics' rules (a customer record that also names a shop): accepted
    # under the first, refused under the second, whatever the event id.
    body = json.dumps({"id": 4242, "shop_id": 690933842, "shop_domain": SHOP}).encode()
    first = await edge.deliver(body, _signed(body, "customers/update"), topic="customers/update")
    assert first.json()["outcome"] == "WEBHOOK_OUTCOME_ACCEPTED", first.body
    headers = _signed(body, "shop/redact")
    second = await edge.deliver(body, headers, topic="shop/redact")
    assert second.status == 400, second.body
    assert "accepted as customers/update" in second.body.decode()
    assert edge.published(headers["x-shopify-event-id"]) == []


async def test_one_order_snapshot_under_several_order_topics_is_normal(edge: Edge) -> None:
    # Shopify sends a cancelled order's snapshot as orders/updated and orders/cancelled.
    cancelled = json.loads(ORDER) | {"cancelled_at": "2026-11-21T10:15:00-05:00"}
    body = json.dumps(cancelled).encode()
    for topic in ("orders/updated", "orders/cancelled"):
        response = await edge.deliver(body, _signed(body, topic), topic=topic)
        assert response.json()["outcome"] == "WEBHOOK_OUTCOME_ACCEPTED", (topic, response.body)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"x-shopify-topic": None}, "x-shopify-topic"),
        ({"x-shopify-topic": "orders/paid"}, "x-shopify-topic"),
        ({"x-shopify-shop-domain": None}, "x-shopify-shop-domain"),
    ],
)
async def test_topic_and_shop_headers_are_required(
    edge: Edge, change: dict[str, str | None], field: str
) -> None:
    headers = _headers()
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    response = await edge.deliver(ORDER, headers)
    assert response.status == 400, response.body
    assert response.headers["content-type"].startswith("application/json")
    fields = {v["field"] for v in response.json()["details"][0]["field_violations"]}
    assert fields == {field}
    assert edge.count("SELECT count(*) FROM edge.webhook_idempotency_keys") == 0
    assert edge.count("SELECT count(*) FROM edge.outbox") == 0


async def test_gdpr_body_must_name_the_delivery_shop(edge: Edge) -> None:
    body = shared_file("fixtures", "shopify", "customers-redact.json").read_bytes()
    other = "someone-else.myshopify.com"
    headers = shopify_headers(body, topic="customers/redact", shop_domain=other, secret=SECRET)
    response = await edge.deliver(body, headers, topic="customers/redact")
    assert response.status == 400, response.body
    assert "shop_domain" in response.body.decode()


# --- customers' data: sealed per customer, erasable (finding 7) -----------------------------


async def test_erasing_a_customer_key_makes_their_published_data_unreadable(edge: Edge) -> None:
    headers = _headers()
    assert (await edge.deliver(ORDER, headers)).json()["outcome"] == "WEBHOOK_OUTCOME_ACCEPTED"
    (event,) = edge.published(headers["x-shopify-event-id"])
    merchant_id = merchant_id_for_shop(SHOP)
    async with customer_keys(edge.database_url) as keys:
        data = await keys.open(merchant_id, event.shopify_event_id, event.customer_data)
        assert (data.email, data.first_name, data.last_name, data.phone) == (
            "ada.lovelace@example.com",
            "Ada",
            "Lovelace",
            "+14155550101",
        )
        assert await keys.erase(merchant_id, event.customer_id)
        with pytest.raises(CustomerErased):
            await keys.open(merchant_id, event.shopify_event_id, event.customer_data)
        # A later order of the same customer gets a new key; the old data stays unreadable.
        later_order = ORDER.replace(b"5829301457001", b"5829301457002")
        again = _headers(later_order)
        assert (await edge.deliver(later_order, again)).status == 200
        (later,) = edge.published(again["x-shopify-event-id"])
        assert later.customer_data.key_id != event.customer_data.key_id
        assert (await keys.open(merchant_id, later.shopify_event_id, later.customer_data)).email
        with pytest.raises(CustomerErased):
            await keys.open(merchant_id, event.shopify_event_id, event.customer_data)


async def test_one_customer_has_one_key_however_their_deliveries_arrive(edge: Edge) -> None:
    """A new customer's key is stored with their first delivery (one statement); the later
    ones, sequential or concurrent, are sealed under that key, and every one opens."""
    merchant_id = merchant_id_for_shop(SHOP)
    customer = "7001"
    orders = [
        ORDER.replace(b"5829301457001", f"58293014571{n:02d}".encode()).replace(
            str(json.loads(ORDER)["customer"]["id"]).encode(), customer.encode()
        )
        for n in range(8)
    ]
    first = _headers(orders[0])
    assert (await edge.deliver(orders[0], first)).json()["outcome"] == "WEBHOOK_OUTCOME_ACCEPTED"
    later = [_headers(order) for order in orders[1:]]
    await edge.deliver(orders[1], later[0])
    burst = await asyncio.gather(
        *(
            edge.deliver(order, headers)
            for order, headers in zip(orders[2:], later[1:], strict=True)
        )
    )
    assert {r.json()["outcome"] for r in burst} == {"WEBHOOK_OUTCOME_ACCEPTED"}
    events = [
        event
        for headers in (first, *later)
        for event in edge.published(headers["x-shopify-event-id"])
    ]
    assert len(events) == len(orders)
    stored = edge.count(
        "SELECT count(*) FROM edge.customer_keys WHERE merchant_id = %s AND customer_id = %s",
        merchant_id,
        customer,
    )
    assert stored == 1
    assert len({event.customer_data.key_id for event in events}) == 1
    async with customer_keys(edge.database_url) as keys:
        for event in events:
            opened = await keys.open(merchant_id, event.shopify_event_id, event.customer_data)
            assert opened.email == "ada.lovelace@example.com"


async def test_a_customer_keyed_by_another_edge_process_keeps_that_key(edge: Edge) -> None:
    """Another replica (here the test's own CustomerKeys) made the customer's key: this edge
    process, which has not seen them, seals their delivery under that key."""
    merchant_id = merchant_id_for_shop(SHOP)
    customer = "7003"
    order = ORDER.replace(b"5829301457001", b"5829301457301").replace(
        str(json.loads(ORDER)["customer"]["id"]).encode(), customer.encode()
    )
    async with customer_keys(edge.database_url) as keys:
        elsewhere = await keys.seal_bytes(merchant_id, customer, b"x", context="test")
        assert elsewhere is not None
        headers = _headers(order)
        response = await edge.deliver(order, headers)
        assert response.json()["outcome"] == "WEBHOOK_OUTCOME_ACCEPTED"
        (event,) = edge.published(headers["x-shopify-event-id"])
        assert event.customer_data.key_id == elsewhere[0]
        opened = await keys.open(merchant_id, event.shopify_event_id, event.customer_data)
        assert opened.email == "ada.lovelace@example.com"


async def test_a_delivery_for_a_customer_with_a_key_writes_nothing_with_a_new_one(
    edge: Edge,
) -> None:
    """EdgeStore.accept with a key made for the delivery: stored with it for a new customer;
    for one who has a key, nothing is written and the answer names their key."""
    database_url = edge.database_url  # migrated by the running edge
    async with edge_store(database_url) as store, customer_keys(database_url) as keys:
        merchant_id = merchant_id_for_shop(SHOP)
        customer = "7002"

        def delivery() -> Delivery:
            headers = _headers()
            return Delivery.parse("orders", "create", headers, ORDER)

        def event_for(made: Delivery, key: Any) -> gateway_events.WebhookReceived:
            sealed = key.seal(made.event_id, gateway_events.CustomerData(email="a@example.com"))
            return gateway_events.WebhookReceived(
                topic=made.topic,
                shopify_event_id=made.event_id,
                customer_id=customer,
                customer_data=sealed,
            )

        first, second = delivery(), delivery()
        key = keys.new_key(merchant_id, customer)
        assert await store.accept(first, merchant_id, event_for(first, key), key) == (
            Outcome.ACCEPTED
        )
        other = keys.new_key(merchant_id, customer)
        answer = await store.accept(second, merchant_id, event_for(second, other), other)
        assert isinstance(answer, KeyNotStored)
        assert (answer.recorded, answer.found) == (False, (key.key_id, key.wrapped))
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM edge.webhook_idempotency_keys WHERE event_id = %s",
                (second.event_id,),
            ).fetchone()
        assert row == (0,)
        # Sealed again under the customer's key, the same delivery is accepted.
        sealed = await keys.seal_again(
            answer,
            second.event_id,
            gateway_events.CustomerData(email="a@example.com"),
            shop_domain=SHOP,
        )
        assert sealed is not None and sealed.key_id == key.key_id


async def test_a_redelivery_after_the_erasure_brings_no_key_back(edge: Edge) -> None:
    """Shopify redelivers for up to 48 hours: a redelivery of an event recorded before the
    customer's erasure is a DUPLICATE that publishes nothing, and must not make the erased
    customer a key again (a row naming them). A new event for them does."""
    merchant_id = merchant_id_for_shop(SHOP)
    customer = str(json.loads(ORDER)["customer"]["id"])
    order = _headers()
    broken = ORDER[:-40]  # not JSON: dead-lettered under the customer's key
    dead = _headers(broken)
    assert (await edge.deliver(ORDER, order)).json()["outcome"] == "WEBHOOK_OUTCOME_ACCEPTED"
    outcome = (await edge.deliver(broken, dead)).json()["outcome"]
    assert outcome == "WEBHOOK_OUTCOME_DEAD_LETTERED"

    def keys_of_customer() -> int:
        return edge.count(
            "SELECT count(*) FROM edge.customer_keys WHERE merchant_id = %s AND customer_id = %s",
            merchant_id,
            customer,
        )

    assert keys_of_customer() == 1
    async with customer_keys(edge.database_url) as keys:
        keys.remember(merchant_id, customer)
        assert await keys.erase_customer(merchant_id, CustomerRef(customer)) >= 1
        assert not keys.known(merchant_id, customer), "an erased customer's id is not kept"
    assert keys_of_customer() == 0
    for body, headers in ((ORDER, order), (broken, dead)):
        again = await edge.deliver(body, _headers(body, event_id=headers["x-shopify-event-id"]))
        assert (again.status, again.json()["outcome"]) == (200, "WEBHOOK_OUTCOME_DUPLICATE")
    assert keys_of_customer() == 0
    assert len(edge.published(order["x-shopify-event-id"])) == 1
    # A new order of theirs is new data: a new key.
    later_order = ORDER.replace(b"5829301457001", b"5829301457003")
    later = await edge.deliver(later_order, _headers(later_order))
    assert later.json()["outcome"] == "WEBHOOK_OUTCOME_ACCEPTED"
    assert keys_of_customer() == 1


# --- retention -------------------------------------------------------------------------------


async def test_purge_drops_records_past_their_retention(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = edge_settings(database_url, redis_url).model_copy(
        update={"webhook_purge_interval_seconds": 0.2}
    )
    async with running(SPEC, settings) as service:
        await asyncio.wait_for(service.health.started.wait(), 30)
        async with edge_store(database_url) as store:
            merchant_id = merchant_id_for_shop(SHOP)
            for n, topic in enumerate(("orders/create", "orders/paid")):
                body = ORDER.replace(b"5829301457001", f"58293014570{n}9".encode())
                delivery = Delivery.parse(*topic.split("/"), _signed(body, topic), body)
                await store.dead_letter(delivery, merchant_id, "test")
        with psycopg.connect(database_url, autocommit=True) as conn:
            # One of each record past its retention (48 h, 14 days), one not.
            conn.execute(
                "UPDATE edge.webhook_idempotency_keys SET received_at = now() - interval '49 hours'"
                " WHERE topic = 'orders/create'"
            )
            conn.execute(
                "UPDATE edge.webhook_dead_letters SET received_at = now() - interval '15 days'"
                " WHERE topic = 'orders/create'"
            )
            conn.execute(
                "INSERT INTO edge.webhook_accepted_bodies (shop_domain, body_sha256, topic,"
                " accepted_at) VALUES (%s, '\\x01', 'orders/create', now() - interval '49 hours'),"
                " (%s, '\\x02', 'orders/create', now())",
                (SHOP, SHOP),
            )

        def remaining() -> tuple[int, ...]:
            with psycopg.connect(database_url) as conn:
                return tuple(
                    int(conn.execute(f"SELECT count(*) FROM edge.{table}").fetchone()[0])  # type: ignore[index]
                    for table in (
                        "webhook_idempotency_keys",
                        "webhook_dead_letters",
                        "webhook_accepted_bodies",
                    )
                )

        async def purged() -> bool:
            return remaining() == (1, 1, 1)

        await eventually(purged, 10, "the purge")

"""Customer pseudonyms on Kafka end to end (issue 18; platform/events/pseudonyms.py): the real
edge (the owner), Auth (service tokens), Points (a relay and a consumer that reach the edge
over CustomerPseudonymService) and a tansu broker.

A signed orders/create reaches Points, which credits the Shopify customer; no record of any
topic holds that id, key or value, only the customer's pseudonym (`cust_` + their edge key's
id). A platform consumer's handler sees the Shopify id. After the customer is erased at the
edge, a consumer reading the same records sees the erasure's anonymous id instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.edge.v1 import edge_pb2_grpc
from loyalnest.gen.events.v1 import envelope_pb2
from loyalnest.gen.events.v1 import points_pb2 as points_events
from loyalnest.gen.platform.v1 import customer_pseudonyms_pb2 as pseudonyms_pb2
from loyalnest.gen.platform.v1 import customer_pseudonyms_pb2_grpc
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform.auth.context import acting_for
from loyalnest.platform.auth.service_identity import service_credential
from loyalnest.platform.auth.service_tokens import ServiceTokenSource
from loyalnest.platform.client import open_channel
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.event_loops import relay_spec
from loyalnest.platform.events.consumer import ConsumerRunner
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.pseudonym_client import remote_pseudonyms
from loyalnest.platform.events.pseudonyms import Resolver, is_pseudonym, pseudonym_of_key
from loyalnest.platform.personal_data import CustomerRef, new_erasure_key
from loyalnest.platform.postgres import Database
from loyalnest.platform.tenancy import merchant_id_for_shop
from loyalnest.services.auth.service import SPEC as AUTH
from loyalnest.services.edge.service import DATABASE as EDGE_DATABASE
from loyalnest.services.edge.service import SPEC as EDGE
from loyalnest.services.edge.service import EdgeSettings, master_cipher
from loyalnest.services.edge.store.customer_keys import CustomerKeys
from loyalnest.services.points.service import SPEC as POINTS
from tests.auth import merchant_metadata
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import (
    eventually,
    points_settings,
    service_settings_for_tests,
    serving,
)
from tests.integration.shopify_standin import ShopifyStandIn
from tests.integration.test_access_wiring import auth_with, edge_settings_asking, events_on
from tests.integration.test_auth_service import install
from tests.integration.test_events import background, scalar
from tests.integration.test_gdpr_erasure import _shopify, kafka_records
from tests.integration.test_service_identity import MASTER_KEY
from tests.integration.webhook_delivery import deliver_signed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SECRET = "pseudonym-webhook-secret"
SHOP = "pseudonyms.myshopify.com"


@dataclass
class Mesh:
    broker: BrokerProcess
    edge: edge_pb2_grpc.EdgeServiceStub
    points: points_pb2_grpc.PointsServiceStub
    keys: CustomerKeys
    merchant_id: str
    # What a service with customer pseudonyms on is given (Points' identity here).
    caller: dict[str, Any]

    async def deliver(self, topic: str, payload: dict[str, Any]) -> None:
        await deliver_signed(self.edge, topic, payload, shop=SHOP, secret=SECRET)


@pytest.fixture
async def mesh(database_url: str, redis_url: str, shopify: ShopifyStandIn) -> AsyncIterator[Mesh]:
    broker = BrokerProcess()
    await broker.start()
    events = {**events_on(broker), "customer_pseudonyms": True}
    try:
        async with (
            # Auth starts before the edge, whose address it then cannot be told: its loops run
            # without pseudonyms here (it reads only app/uninstalled webhooks, naming no one).
            serving(AUTH, auth_with(database_url, redis_url, shopify, **events_on(broker))) as auth,
            grpc.aio.insecure_channel(auth.address) as auth_channel,
        ):
            await install(auth_pb2_grpc.AuthServiceStub(auth_channel), shopify, SHOP)
            edge_settings, _ = edge_settings_asking(
                auth, database_url, redis_url, secret=SECRET, cache_seconds=0.2, events=events
            )
            async with serving(EDGE, edge_settings) as edge:
                caller = {
                    "service_credential": service_credential(MASTER_KEY, "points"),
                    "call_targets": {"auth": auth.address, "edge": edge.address},
                }
                database = Database(edge_settings, EDGE_DATABASE)
                await database.open()
                async with (
                    serving(
                        POINTS,
                        points_settings(database_url, redis_url=redis_url, **events, **caller),
                    ) as points,
                    grpc.aio.insecure_channel(edge.address) as edge_channel,
                    grpc.aio.insecure_channel(points.address) as points_channel,
                ):
                    try:
                        yield Mesh(
                            broker,
                            edge_pb2_grpc.EdgeServiceStub(edge_channel),
                            points_pb2_grpc.PointsServiceStub(points_channel),
                            CustomerKeys(database, master_cipher(edge_settings)),
                            merchant_id_for_shop(SHOP),
                            {**events, **caller},
                        )
                    finally:
                        await database.close()
    finally:
        broker.close()


async def earned_as_seen(mesh: Mesh, count: int) -> list[str]:
    """The customer ids a platform consumer's handler sees in the first `count`
    points.earned of the topic (a consumer group of its own, from the beginning)."""
    settings = ServiceSettings(**mesh.caller)
    seen: list[str] = []

    async def handler(event: ConsumedEvent) -> bool:
        seen.append(event.payload_as(points_events.PointsEarned).customer_id)
        return True

    runner = ConsumerRunner(
        settings,
        group=f"pseudonym-test-{uuid.uuid4().hex[:8]}",
        handlers={"points.earned": handler},
        client_id="pseudonym-test",
        resolver=Resolver(remote_pseudonyms(settings, caller="points")),
    )

    async def consumed() -> bool:
        return len(seen) >= count

    async with background(runner.run):
        await eventually(consumed, timeout=60, what="points.earned consumed")
    return seen


@contextlib.asynccontextmanager
async def pseudonym_stub(mesh: Mesh, service: str) -> AsyncIterator[Any]:
    """The edge's CustomerPseudonymService as LoyalNest service `service` calls it (its own
    service tokens from Auth)."""
    tokens = ServiceTokenSource(
        service, service_credential(MASTER_KEY, service), mesh.caller["call_targets"]["auth"]
    )
    channel = open_channel(mesh.caller["call_targets"]["edge"], service_tokens=tokens)
    try:
        yield customer_pseudonyms_pb2_grpc.CustomerPseudonymServiceStub(channel)  # type: ignore[no-untyped-call]
    finally:
        await channel.close(None)
        await tokens.close()


async def test_no_topic_holds_the_shopify_id_and_handlers_see_it_until_the_erasure(
    mesh: Mesh,
) -> None:
    customer = str(8_200_000_000_000 + uuid.uuid4().int % 10**9)
    order_id = str(uuid.uuid4().int % 10**13)
    await mesh.deliver(
        "orders/create",
        _shopify("orders-create.json", id=int(order_id), customer={"id": int(customer)}),
    )
    md = merchant_metadata(mesh.merchant_id, ("points:read", "points:write"))

    async def credited() -> points_pb2.OrderEarning | None:
        try:
            answer = await mesh.points.GetOrderEarning(
                points_pb2.GetOrderEarningRequest(order_id=order_id), metadata=md
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return answer.order

    # Points' handler saw the Shopify id: the edge published only the pseudonym.
    order = await eventually(credited, timeout=60, what="the order in Points")
    assert order.customer_id == customer
    await mesh.points.EarnPoints(
        points_pb2.EarnPointsRequest(
            customer_id=customer, points=40, reason="welcome", idempotency_key="p-1"
        ),
        metadata=md,
    )
    export = await mesh.keys.export_customer(mesh.merchant_id, CustomerRef(customer))
    pseudonym = pseudonym_of_key(export.data["customer_key"]["key_id"])
    assert is_pseudonym(pseudonym)

    def earned_in(records: list[tuple[str, bytes, bytes]]) -> list[points_events.PointsEarned]:
        found = []
        for topic, _, value in records:
            envelope = envelope_pb2.Envelope.FromString(value)
            if topic == "loyalnest.points.events" and envelope.event_type == "points.earned":
                event = points_events.PointsEarned()
                assert envelope.payload.Unpack(event)
                found.append(event)
        return found

    async def published() -> list[tuple[str, bytes, bytes]] | None:
        records = await asyncio.to_thread(kafka_records, mesh.broker.bootstrap_servers)
        return records if any(e.points == 40 for e in earned_in(records)) else None

    records = await eventually(published, timeout=60, what="points.earned on the topic")
    earned = earned_in(records)
    needle = customer.encode()
    assert [topic for topic, key, value in records if needle in key + value] == []
    mine = [(t, k) for t, k, v in records if pseudonym.encode() in k + v]
    assert {t for t, _ in mine} >= {"loyalnest.edge.events", "loyalnest.points.events"}
    assert all(k == f"{mesh.merchant_id}/{pseudonym}".encode() for _, k in mine)
    assert {event.customer_id for event in earned} == {pseudonym}

    # A platform consumer's handler sees the Shopify id.
    assert await earned_as_seen(mesh, len(earned)) == [customer] * len(earned)

    # Erased at the edge: the records stay, their pseudonym now names the anonymous customer
    # every service's erasure made of them.
    ref = CustomerRef(customer, erasure_key=new_erasure_key())
    assert await mesh.keys.erase_customer(mesh.merchant_id, ref) > 0
    assert await earned_as_seen(mesh, len(earned)) == [ref.anonymous_id(customer)] * len(earned)


async def test_the_contract_refuses_other_callers_and_bad_input(mesh: Mesh) -> None:
    async def call(service: str, request: Any) -> grpc.StatusCode:
        async with pseudonym_stub(mesh, service) as stub:
            try:
                with acting_for(None):
                    await stub.Pseudonymize(request)
            except grpc.aio.AioRpcError as error:
                return error.code()
        return grpc.StatusCode.OK

    one = pseudonyms_pb2.PseudonymizeRequest(
        customers=[pseudonyms_pb2.MerchantCustomer(merchant_id=mesh.merchant_id, value="7")]
    )
    assert await call("points", one) == grpc.StatusCode.OK
    # Users handles no customer event: its token is not for the edge.
    assert await call("users", one) in (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    )
    empty = pseudonyms_pb2.PseudonymizeRequest()
    assert await call("points", empty) == grpc.StatusCode.INVALID_ARGUMENT
    erased = pseudonyms_pb2.PseudonymizeRequest(
        customers=[pseudonyms_pb2.MerchantCustomer(merchant_id=mesh.merchant_id, value="erased:ab")]
    )
    assert await call("points", erased) == grpc.StatusCode.INVALID_ARGUMENT


async def begin_erasure_as_admin_core(mesh: Mesh, customer: str, erasure_key: bytes) -> bool:
    """What AdminCore's GDPR worker calls before any holder erases (its token, acting for
    the merchant)."""
    async with pseudonym_stub(mesh, "admin_core") as stub:
        with acting_for(mesh.merchant_id):
            answer = await stub.BeginErasure(
                pseudonyms_pb2.BeginErasureRequest(
                    customer=pseudonyms_pb2.MerchantCustomer(
                        merchant_id=mesh.merchant_id, value=customer
                    ),
                    erasure_key=erasure_key,
                )
            )
    return bool(answer.begun)


async def test_a_record_consumed_after_the_erasure_began_names_the_anonymous_customer(
    mesh: Mesh,
) -> None:
    """The late record: published before a customer's erasure, consumed after a holder had
    erased them. It must not bring the person back there: from AdminCore's `BeginErasure`
    on, the pseudonym names the anonymous customer, although the edge erases (and deletes
    the key) only after every other holder."""
    customer = str(8_300_000_000_000 + uuid.uuid4().int % 10**9)
    await mesh.points.EarnPoints(
        points_pb2.EarnPointsRequest(
            customer_id=customer, points=40, reason="welcome", idempotency_key="p-1"
        ),
        metadata=merchant_metadata(mesh.merchant_id, ("points:write",)),
    )

    async def published() -> bool:
        records = await asyncio.to_thread(kafka_records, mesh.broker.bootstrap_servers)
        return any(
            topic == "loyalnest.points.events"
            and envelope_pb2.Envelope.FromString(value).event_type == "points.earned"
            for topic, _, value in records
        )

    await eventually(published, timeout=60, what="points.earned on the topic")
    export = await mesh.keys.export_customer(mesh.merchant_id, CustomerRef(customer))
    pseudonym = pseudonym_of_key(export.data["customer_key"]["key_id"])
    ref = CustomerRef(customer, erasure_key=new_erasure_key())
    anonymous = ref.anonymous_id(customer)

    assert await begin_erasure_as_admin_core(mesh, customer, ref.erasure_key) is True
    # A consumer that reads the record only now sees the anonymous customer...
    assert await earned_as_seen(mesh, 1) == [anonymous]
    # ... while the key, and the pseudonym relays are answered, stay until the edge erases.
    still = await mesh.keys.pseudonymize([(mesh.merchant_id, customer)])
    assert still == [pseudonym]
    # A retried request begins it again; the edge's erasure keeps the same anonymous id.
    assert await begin_erasure_as_admin_core(mesh, customer, ref.erasure_key) is True
    assert await mesh.keys.erase_customer(mesh.merchant_id, ref) > 0
    assert await earned_as_seen(mesh, 1) == [anonymous]
    # A customer the edge never saw has no pseudonym to retire.
    assert await begin_erasure_as_admin_core(mesh, "8399999999999", new_erasure_key()) is False


async def test_the_edges_relay_in_a_process_of_its_own_publishes_pseudonyms(
    database_url: str, redis_url: str
) -> None:
    """`loyalnest relay edge` (the edge run with its relay out of process) publishes what the
    edge's own relay would: the customer's pseudonym, never the Shopify id."""
    broker = BrokerProcess()
    await broker.start()
    customer = str(8_300_000_000_000 + uuid.uuid4().int % 10**9)
    settings = service_settings_for_tests(
        EdgeSettings,
        database_url,
        redis_url=redis_url,
        shopify_api_secret=SECRET,
        customer_pseudonyms=True,
        outbox_relay_in_process=False,
        **events_on(broker),
    )
    database = Database(settings, EDGE_DATABASE)
    try:
        async with (
            serving(EDGE, settings) as edge,
            grpc.aio.insecure_channel(edge.address) as channel,
        ):
            await database.open()
            order = _shopify("orders-create.json", customer={"id": int(customer)})
            await deliver_signed(
                edge_pb2_grpc.EdgeServiceStub(channel),
                "orders/create",
                order,
                shop=SHOP,
                secret=SECRET,
            )
            pending = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
            assert await scalar(database, pending) == 1, "the edge itself relays nothing"

            async def published() -> list[tuple[str, bytes, bytes]] | None:
                records = await asyncio.to_thread(kafka_records, broker.bootstrap_servers)
                edge_records = [r for r in records if r[0] == "loyalnest.edge.events"]
                return edge_records or None

            async with serving(relay_spec(EDGE), settings):
                records = await eventually(published, timeout=60, what="webhook.received")
            assert await scalar(database, pending) == 0
        keys = CustomerKeys(database, master_cipher(settings))
        merchant_id = merchant_id_for_shop(SHOP)
        export = await keys.export_customer(merchant_id, CustomerRef(customer))
    finally:
        await database.close()
        broker.close()
    pseudonym = pseudonym_of_key(export.data["customer_key"]["key_id"])
    assert [key for _, key, _ in records] == [f"{merchant_id}/{pseudonym}".encode()]
    assert all(customer.encode() not in key + value for _, key, value in records)

"""GDPR requests carried out across the mesh, proven by scanning every store (issue 18).

Real processes: PostgreSQL, Valkey, a Kafka-protocol broker (tansu), and the real Auth (service
tokens), edge (Shopify's signed webhooks), Points, Users, Core, RFM, Gamification, Event
Tracking, Products, Campaign, Referrals and AdminCore. One customer is seeded everywhere (an
order through a signed orders/create, which RFM scores and Products records, the RFM segment
Products and Campaign keep, points earned and cached, which Gamification and Event Tracking
apply, a Users account and a Core customer with email and names), then:

- customers/data_request: the export package holds every item seeded, from every service;
- customers/redact: afterwards no PostgreSQL schema, no Redis key or value and no Kafka record
  (key or value, of every topic) holds the customer's email, phone, names or Shopify id in
  clear; the webhook.received copies of their data in Kafka no longer decrypt
  (their key is gone); Points' amounts remain, under an id that names nobody; the person
  Event Tracking shipped to PostHog (the stand-in) under their pseudonym is deleted there,
  with its events;
- shop/redact: the same scans for the merchant, and nothing of it left in any service table
  nor at PostHog.

Points runs on each of its ledger stores (`points_store`): PostgreSQL, and MongoDB, here
mongomock-ng, an in-process FAKE (no MongoDB server runs where these tests were written, see
test_mongo_relay.py; ids say `mongo-FAKE-mongomock`), whose every database, collection and
document (strings and bytes, nested) is scanned like the PostgreSQL schemas.

No Kafka record holds the customer's Shopify id either, key or value, before or after the
erasure: every service with customer events runs with customer pseudonyms on, as the mesh does
(platform/events/pseudonyms.py: relays publish the customer's pseudonym, which the edge owns and
forgets at the erasure, consumers resolve it), and the scans assert zero hits. Auth's loops run
without them here (it starts before the edge; it publishes no customer event).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from unittest import mock

import grpc
import mongomock_ng
import psycopg
import pytest
import redis.asyncio as redis
from google.protobuf import json_format
from kafka import KafkaConsumer, TopicPartition
from psycopg import sql

from loyalnest.devstack.standins.posthog import (
    DEFAULT_API_KEY,
    DEFAULT_PERSONAL_API_KEY,
    DEFAULT_PROJECT_ID,
    PosthogStandIn,
)
from loyalnest.gen.admin_core.v1 import admin_core_pb2 as admin_pb
from loyalnest.gen.admin_core.v1 import admin_core_pb2_grpc
from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.core.v1 import core_pb2, core_pb2_grpc
from loyalnest.gen.edge.v1 import edge_pb2_grpc
from loyalnest.gen.events.v1 import envelope_pb2, gateway_pb2
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.gen.users.v1 import users_pb2, users_pb2_grpc
from loyalnest.platform.auth.service_identity import service_credential
from loyalnest.platform.events.mongo_outbox import OUTBOX_COLLECTION
from loyalnest.platform.events.pseudonyms import CALLERS as PSEUDONYM_CALLERS
from loyalnest.platform.events.pseudonyms import OWNER, is_pseudonym
from loyalnest.platform.mongo import FAKE_LOCK
from loyalnest.platform.personal_data import HOLDERS
from loyalnest.platform.postgres import Database
from loyalnest.platform.tenancy import merchant_id_for_shop
from loyalnest.services.admin_core.service import SPEC as ADMIN_CORE
from loyalnest.services.admin_core.service import AdminCoreSettings
from loyalnest.services.auth.service import SPEC as AUTH
from loyalnest.services.campaign.service import SPEC as CAMPAIGN
from loyalnest.services.campaign.service import CampaignSettings
from loyalnest.services.core.service import SPEC as CORE
from loyalnest.services.edge.service import DATABASE as EDGE_DATABASE
from loyalnest.services.edge.service import SPEC as EDGE
from loyalnest.services.edge.service import master_cipher
from loyalnest.services.edge.store.customer_keys import CustomerErased, CustomerKeys
from loyalnest.services.event_tracking.domain import Pseudonyms
from loyalnest.services.event_tracking.service import (
    _DEVELOPMENT_PSEUDONYM_KEY,
    EventTrackingSettings,
)
from loyalnest.services.event_tracking.service import SPEC as EVENT_TRACKING
from loyalnest.services.gamification.service import SPEC as GAMIFICATION
from loyalnest.services.points.service import SPEC as POINTS
from loyalnest.services.points.store.mongo import BALANCES, PROGRAM_SETTINGS
from loyalnest.services.products.service import SPEC as PRODUCTS
from loyalnest.services.products.service import ProductsSettings
from loyalnest.services.referrals.service import SPEC as REFERRALS
from loyalnest.services.rfm.service import SPEC as RFM
from loyalnest.services.users.service import SPEC as USERS
from loyalnest.services.users.service import UsersSettings
from tests.auth import merchant_metadata
from tests.integration.broker import BrokerProcess
from tests.integration.conftest import (
    NO_CALLEES,
    eventually,
    points_settings,
    service_settings_for_tests,
    serving,
)
from tests.integration.shopify_standin import ShopifyStandIn
from tests.integration.test_access_wiring import auth_with, edge_settings_asking, events_on
from tests.integration.test_auth_service import install
from tests.integration.test_core_service import core_settings
from tests.integration.test_gamification_service import settings_for as gamification_settings
from tests.integration.test_referrals_service import referrals_settings
from tests.integration.test_rfm_service import rfm_settings
from tests.integration.test_service_identity import MASTER_KEY
from tests.integration.webhook_delivery import deliver_signed
from tests.shared import shared_file

# Fourteen services in one process: more than the default 120 s on a busy machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SECRET = "gdpr-webhook-secret"
SHOP = "gdpr-erasure.myshopify.com"
GDPR = "admin_core:gdpr"
EVERYTHING = (
    "points:read",
    "points:write",
    "users:read",
    "users:write",
    "core:read",
    "core:write",
    GDPR,
)


PSEUDONYMS = Pseudonyms(_DEVELOPMENT_PSEUDONYM_KEY)
# Points' ledger stores the proof runs on (see the module's docstring).
POINTS_STORES = ["postgres", "mongo-FAKE-mongomock"]
POINTS_MONGO_DATABASE = "loyalnest_points"


@dataclass(frozen=True)
class Person:
    """One customer, with values found nowhere else (what the scans look for)."""

    shopify_id: str
    email: str
    phone: str
    first_name: str
    last_name: str

    @classmethod
    def new(cls) -> Person:
        tag = uuid.uuid4().hex[:8]
        return cls(
            shopify_id=str(8_100_000_000_000 + int(tag, 16) % 1_000_000_000),
            email=f"zephyrine.{tag}@example.org",
            phone=f"+1415{int(tag, 16) % 10_000_000:07d}",
            first_name=f"Zephyrine{tag}",
            last_name=f"Quimbleton{tag}",
        )

    def clear_text(self) -> dict[str, str]:
        return {
            "email": self.email,
            "phone": self.phone,
            "first name": self.first_name,
            "last name": self.last_name,
        }

    def everything(self) -> dict[str, str]:
        return {**self.clear_text(), "shopify id": self.shopify_id}


@dataclass
class Mesh:
    database_url: str
    redis_url: str
    broker: BrokerProcess
    edge: edge_pb2_grpc.EdgeServiceStub
    points: points_pb2_grpc.PointsServiceStub
    users: users_pb2_grpc.UsersServiceStub
    core: core_pb2_grpc.CoreServiceStub
    admin: admin_core_pb2_grpc.AdminCoreServiceStub
    edge_keys: CustomerKeys
    merchant_id: str
    posthog: PosthogStandIn
    # Points' MongoDB client when it runs on that store (the fake), else None.
    mongo: Any = None

    @property
    def md(self) -> tuple[tuple[str, str], ...]:
        return merchant_metadata(self.merchant_id, EVERYTHING)

    async def deliver(self, topic: str, payload: dict[str, Any]) -> None:
        await deliver_signed(self.edge, topic, payload, shop=SHOP, secret=SECRET)

    async def completed(self, kind: int, count: int = 1) -> list[admin_pb.GDPRRequest]:
        """Waits until `count` requests of `kind` exist and are all completed."""

        async def done() -> list[admin_pb.GDPRRequest] | None:
            listed = await self.admin.ListGDPRRequests(
                admin_pb.ListGDPRRequestsRequest(page_size=100), metadata=self.md
            )
            found = [r for r in listed.requests if r.type == kind]
            if len(found) == count and all(
                r.status == admin_pb.GDPR_REQUEST_STATUS_COMPLETED for r in found
            ):
                return found
            return None

        result: list[admin_pb.GDPRRequest] = await eventually(
            done, timeout=60, what=f"completed GDPR requests of type {kind}"
        )
        return result


def _shopify(name: str, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(shared_file("fixtures", "shopify", name).read_text())
    payload.update(changes)
    return payload


@contextlib.asynccontextmanager
async def mesh(
    database_url: str, redis_url: str, shopify: ShopifyStandIn, points_store: str = "postgres"
) -> AsyncIterator[Mesh]:
    fake_mongo = (
        None if points_store == "postgres" else mongomock_ng.MongoClient(tz_aware=True, tzinfo=UTC)
    )
    # Points connects by URL: every connection is the fake.
    with (
        mock.patch("loyalnest.services.points.store.mongo.MongoClient", return_value=fake_mongo)
        if fake_mongo is not None
        else contextlib.nullcontext()
    ):
        async with _mesh(database_url, redis_url, shopify, fake_mongo) as m:
            yield m


@contextlib.asynccontextmanager
async def _mesh(
    database_url: str, redis_url: str, shopify: ShopifyStandIn, fake_mongo: Any
) -> AsyncIterator[Mesh]:
    broker = BrokerProcess()
    await broker.start()
    events = events_on(broker)
    on_mongo = (
        {"points_ledger_store": "mongo", "mongo_database": POINTS_MONGO_DATABASE}
        if fake_mongo is not None
        else {}
    )
    posthog = PosthogStandIn().start()
    # Event Tracking ships to the PostHog stand-in and deletes erased persons there.
    analytics = {
        "posthog_host": posthog.url,
        "posthog_api_key": DEFAULT_API_KEY,
        "posthog_api_host": posthog.url,
        "posthog_project_id": DEFAULT_PROJECT_ID,
        "posthog_personal_api_key": DEFAULT_PERSONAL_API_KEY,
        "posthog_poll_interval_seconds": 0.1,
        "posthog_retry_initial_seconds": 0.05,
        "posthog_round_backoff_seconds": 0.1,
    }
    try:
        async with (
            serving(AUTH, auth_with(database_url, redis_url, shopify, **events)) as auth,
            grpc.aio.insecure_channel(auth.address) as auth_channel,
        ):
            # The merchant installed the app: Auth issues service tokens for known merchants.
            await install(auth_pb2_grpc.AuthServiceStub(auth_channel), shopify, SHOP)
            # Customer pseudonyms on wherever the mesh runs (platform/events/pseudonyms.py):
            # the edge owns them; every other caller gets its identity and the edge's address.
            # Auth starts before the edge and cannot be told its address: its loops run
            # without them (it reads only app/uninstalled webhooks, naming no customer).
            _, edge_settings = edge_settings_asking(
                auth,
                database_url,
                redis_url,
                secret=SECRET,
                cache_seconds=0.2,
                events={**events, "customer_pseudonyms": True},
            )
            async with serving(EDGE, edge_settings) as edge:

                def on(service: str) -> dict[str, Any]:
                    """`events`, with customer pseudonyms, for `service` (a CALLER)."""
                    assert service in PSEUDONYM_CALLERS
                    return {
                        **events,
                        "customer_pseudonyms": True,
                        "service_credential": service_credential(MASTER_KEY, service),
                        "call_targets": {"auth": auth.address, "edge": edge.address},
                    }

                users_settings = service_settings_for_tests(
                    UsersSettings, database_url, redis_url=redis_url, **events
                )
                async with (
                    serving(
                        POINTS,
                        points_settings(
                            database_url, redis_url=redis_url, **on("points"), **on_mongo
                        ),
                    ) as points,
                    serving(USERS, users_settings) as users,
                    serving(CORE, core_settings(database_url, redis_url, **on("core"))) as core,
                    serving(RFM, rfm_settings(database_url, redis_url, **on("rfm"))) as rfm,
                    serving(
                        GAMIFICATION,
                        gamification_settings(database_url, redis_url, **on("gamification")),
                    ) as gamification,
                    serving(
                        EVENT_TRACKING,
                        service_settings_for_tests(
                            EventTrackingSettings,
                            database_url,
                            **on("event_tracking"),
                            **analytics,
                        ),
                    ) as event_tracking,
                    serving(
                        PRODUCTS,
                        service_settings_for_tests(
                            ProductsSettings, database_url, redis_url=redis_url, **on("products")
                        ),
                    ) as products,
                    serving(
                        CAMPAIGN,
                        service_settings_for_tests(
                            CampaignSettings, database_url, redis_url=redis_url, **on("campaign")
                        ),
                    ) as campaign,
                    serving(
                        REFERRALS,
                        referrals_settings(database_url, redis_url=redis_url, **on("referrals")),
                    ) as referrals,
                ):
                    targets = {
                        "auth": auth.address,
                        "campaign": campaign.address,
                        "core": core.address,
                        "edge": edge.address,
                        "event_tracking": event_tracking.address,
                        "gamification": gamification.address,
                        "points": points.address,
                        "products": products.address,
                        "referrals": referrals.address,
                        "rfm": rfm.address,
                        "users": users.address,
                    }
                    assert set(targets) == set(HOLDERS)  # every holder is in the proof
                    admin_settings = service_settings_for_tests(
                        AdminCoreSettings,
                        database_url,
                        **(on("admin_core") | {"call_targets": targets}),
                        admin_core_gdpr_interval_seconds=0.2,
                    )
                    edge_database = Database(edge_settings, EDGE_DATABASE)
                    await edge_database.open()
                    async with (
                        serving(ADMIN_CORE, admin_settings) as admin,
                        grpc.aio.insecure_channel(edge.address) as edge_channel,
                        grpc.aio.insecure_channel(points.address) as points_channel,
                        grpc.aio.insecure_channel(users.address) as users_channel,
                        grpc.aio.insecure_channel(core.address) as core_channel,
                        grpc.aio.insecure_channel(admin.address) as admin_channel,
                    ):
                        try:
                            yield Mesh(
                                database_url,
                                redis_url,
                                broker,
                                edge_pb2_grpc.EdgeServiceStub(edge_channel),
                                points_pb2_grpc.PointsServiceStub(points_channel),
                                users_pb2_grpc.UsersServiceStub(users_channel),
                                core_pb2_grpc.CoreServiceStub(core_channel),
                                admin_core_pb2_grpc.AdminCoreServiceStub(admin_channel),
                                CustomerKeys(edge_database, master_cipher(edge_settings)),
                                merchant_id_for_shop(SHOP),
                                posthog,
                                fake_mongo,
                            )
                        finally:
                            await edge_database.close()
    finally:
        posthog.stop()
        broker.close()


@dataclass(frozen=True)
class Seeded:
    order_id: str
    user_id: str
    core_customer_id: str
    transaction_id: str


async def seed(mesh: Mesh, person: Person) -> Seeded:
    """The customer in every service: an order (signed webhook -> Points), points earned and
    their balance cached, a Users account, a Core customer linked to it."""
    order_id = str(uuid.uuid4().int % 10**13)
    customer = {
        "id": int(person.shopify_id),
        "email": person.email,
        "phone": person.phone,
        "first_name": person.first_name,
        "last_name": person.last_name,
    }
    await mesh.deliver(
        "orders/create",
        _shopify("orders-create.json", id=int(order_id), email=person.email, customer=customer),
    )
    md = mesh.md

    async def order_recorded() -> bool:
        try:
            await mesh.points.GetOrderEarning(
                points_pb2.GetOrderEarningRequest(order_id=order_id), metadata=md
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    await eventually(order_recorded, timeout=30, what="the order in Points")
    earned = await mesh.points.EarnPoints(
        points_pb2.EarnPointsRequest(
            customer_id=person.shopify_id, points=120, reason="welcome", idempotency_key="seed-1"
        ),
        metadata=md,
    )
    await mesh.points.GetPointsBalance(  # cached in Redis
        points_pb2.GetPointsBalanceRequest(customer_id=person.shopify_id), metadata=md
    )
    user = await mesh.users.CreateUser(
        users_pb2.CreateUserRequest(
            user=users_pb2.User(email=person.email, kind=users_pb2.USER_KIND_CUSTOMER),
            idempotency_key="seed-user",
        ),
        metadata=md,
    )
    await mesh.users.GetUser(  # cached in Redis
        users_pb2.GetUserRequest(user_id=user.user.user_id), metadata=md
    )
    created = await mesh.core.CreateCustomer(
        core_pb2.CreateCustomerRequest(
            customer=core_pb2.Customer(
                shopify_customer_id=person.shopify_id,
                user_id=user.user.user_id,
                email=person.email,
                first_name=person.first_name,
                last_name=person.last_name,
            ),
            idempotency_key="seed-customer",
        ),
        metadata=md,
    )
    # What other services derive from the seed's events, applied before any request (else a
    # late event would write it after the erasure): RFM's score of the order, Gamification's
    # progress and Event Tracking's task from points.earned, Products' sale, the segment
    # Products and Campaign take from rfm.updated, Referrals' record of the customer's first
    # order (a fresh-clone run saw it written after Referrals' erasure).
    await eventually(
        lambda: derived_data(mesh.database_url, mesh.merchant_id, person.shopify_id),
        timeout=30,
        what="the services deriving data applied the seed's events",
    )
    # Event Tracking shipped points_earned to PostHog, where the customer is now a person.
    await eventually(
        lambda: posthog_holds(mesh, person),
        timeout=30,
        what="the customer's events at PostHog",
    )
    return Seeded(
        order_id, user.user.user_id, created.customer.customer_id, earned.transaction.transaction_id
    )


async def derived_data(database_url: str, merchant_id: str, customer_id: str) -> bool:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT (SELECT count(*) FROM rfm.customer_rfm"
            "        WHERE merchant_id = %(m)s AND customer_id = %(c)s AND orders > 0),"
            " (SELECT count(*) FROM gamification.customer_progress"
            "  WHERE merchant_id = %(m)s AND customer_id = %(c)s),"
            " (SELECT count(*) FROM event_tracking.queue_tasks"
            "  WHERE merchant_id = %(m)s AND event_type = 'points_earned'),"
            " (SELECT count(*) FROM products.product_sales"
            "  WHERE merchant_id = %(m)s AND customer_id = %(c)s),"
            " (SELECT count(*) FROM products.customer_segments"
            "  WHERE merchant_id = %(m)s AND customer_id = %(c)s),"
            " (SELECT count(*) FROM campaign.customer_segments"
            "  WHERE merchant_id = %(m)s AND customer_id = %(c)s),"
            " (SELECT count(*) FROM referrals.customer_orders"
            "  WHERE merchant_id = %(m)s AND customer_id = %(c)s)",
            {"m": merchant_id, "c": customer_id},
        )
        row = await cursor.fetchone()
    return row is not None and all(row)


def analytics_of(mesh: Mesh, person: Person) -> tuple[dict[str, Any] | None, list[Any]]:
    """The customer's person at PostHog (the stand-in) and the events it holds of them, by
    the pseudonym Event Tracking ships instead of their id."""
    pseudonym = PSEUDONYMS.of(mesh.merchant_id, person.shopify_id)
    events = [e for e in mesh.posthog.received() if e["distinct_id"] == pseudonym]
    return mesh.posthog.person(pseudonym), events


def merchant_at_posthog(mesh: Mesh) -> list[dict[str, Any]]:
    """The merchant's events PostHog still holds."""
    return [
        e for e in mesh.posthog.received() if e["properties"].get("merchant_id") == mesh.merchant_id
    ]


async def posthog_holds(mesh: Mesh, person: Person) -> bool:
    return bool(analytics_of(mesh, person)[1])


async def posthog_forgot(mesh: Mesh, person: Person) -> bool:
    return analytics_of(mesh, person) == (None, [])


async def posthog_forgot_merchant(mesh: Mesh, person: Person) -> bool:
    return merchant_at_posthog(mesh) == [] and analytics_of(mesh, person)[0] is None


# ---- the scans ---------------------------------------------------------------------------


def _found(value: Any, needles: dict[str, str]) -> list[str]:
    if isinstance(value, memoryview):
        value = bytes(value)
    if isinstance(value, bytes):
        return [name for name, needle in needles.items() if needle.encode() in value]
    text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
    return [name for name, needle in needles.items() if needle in text]


async def postgres_hits(database_url: str, needles: dict[str, str]) -> list[str]:
    """Every row of every table of every schema, every column, text and bytes."""
    hits: list[str] = []
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        tables = await cursor.fetchall()
        assert len(tables) > 30, tables  # every service's schema is there
        for schema, table in tables:
            rows = await conn.execute(
                sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            )
            for row in await rows.fetchall():
                for value in row:
                    hits += [f"{schema}.{table}: {name}" for name in _found(value, needles)]
    return hits


async def redis_hits(redis_url: str, needles: dict[str, str]) -> list[str]:
    """Every key's name and value (strings, hashes, sets, lists, streams)."""
    hits: list[str] = []
    client = redis.from_url(redis_url)
    try:
        async for key in client.scan_iter(count=1000):
            kind = (await client.type(key)).decode()
            if kind == "string":
                value: Any = await client.get(key)
            elif kind == "hash":
                value = b"".join(k + v for k, v in (await client.hgetall(key)).items())
            elif kind == "set":
                value = b"".join(await client.smembers(key))
            elif kind == "list":
                value = b"".join(await client.lrange(key, 0, -1))
            elif kind == "zset":
                value = b"".join(await client.zrange(key, 0, -1))
            elif kind == "stream":
                value = repr(await client.xrange(key)).encode()
            else:
                value = b""
            hits += [f"redis {key!r}: {name}" for name in _found(key + (value or b""), needles)]
    finally:
        await client.aclose()
    return hits


def mongo_hits(mesh: Mesh, needles: dict[str, str]) -> list[str]:
    """Every document of every collection of every database of Points' MongoDB (the fake),
    every value at any depth, text and bytes; none when Points runs on PostgreSQL."""
    if mesh.mongo is None:
        return []
    hits: list[str] = []

    def walk(where: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(where, key)
                walk(where, item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(where, item)
        else:
            hits.extend(f"{where}: {name}" for name in _found(value, needles))

    with FAKE_LOCK:  # the service's threads use the fake too
        names = mesh.mongo.list_database_names()
        assert POINTS_MONGO_DATABASE in names, names
        for name in names:
            database = mesh.mongo[name]
            for collection in database.list_collection_names():
                for document in database[collection].find():
                    walk(f"mongo {name}.{collection}", document)
    return hits


def kafka_records(bootstrap: str) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) of every record of every topic, from the beginning."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in consumer.topics()
            for partition in consumer.partitions_for_topic(topic) or ()
        ]
        assert partitions
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[tuple[str, bytes, bytes]] = []
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for batch in consumer.poll(timeout_ms=1000).values():
                records += [(r.topic, r.key or b"", r.value or b"") for r in batch]
        return records
    finally:
        consumer.close()


async def kafka_findings(mesh: Mesh, needles: dict[str, str]) -> tuple[list[str], int, int]:
    """(records holding a needle in clear, sealed copies of the customer's data, of which
    still decrypt)."""
    hits: list[str] = []
    sealed = readable = 0
    for topic, key, value in kafka_records(mesh.broker.bootstrap_servers):
        hits += [f"kafka {topic}: {name}" for name in _found(key + value, needles)]
        if not topic.startswith("loyalnest.edge.events"):
            continue
        envelope = envelope_pb2.Envelope.FromString(value)
        event = gateway_pb2.WebhookReceived()
        if not envelope.payload.Unpack(event) or not event.HasField("customer_data"):
            continue
        sealed += 1
        # On the topic the sealed copy names the customer's pseudonym: resolved as a consumer
        # does (the Shopify id, or once erased the anonymous id, whose key there is none of).
        if is_pseudonym(event.customer_data.customer_id):
            (resolved,) = await mesh.edge_keys.resolve(
                [(envelope.merchant_id, event.customer_data.customer_id)]
            )
            event.customer_data.customer_id = resolved.customer_id
        with contextlib.suppress(CustomerErased):
            await mesh.edge_keys.open(
                envelope.merchant_id, event.shopify_event_id, event.customer_data
            )
            readable += 1
    return hits, sealed, readable


async def projections_settled(
    database_url: str, merchant_id: str, user_id: str, mongo: Any = None
) -> bool:
    """Every event of the seed applied: the owner account Users makes from merchant.created
    and the customer's account in Core's projection, Points' and the edge's program copies,
    Referrals' record of the order, and no outbox row left to publish."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT (SELECT count(*) FROM core.user_accounts WHERE merchant_id = %(m)s)"
            " + (SELECT count(*) FROM edge.merchant_plans WHERE merchant_id = %(m)s)"
            # Referrals records the seed's order from webhook.received on its own schedule.
            " + (SELECT least(count(*), 1) FROM referrals.customer_orders"
            "    WHERE merchant_id = %(m)s)",
            {"m": merchant_id, "u": user_id},
        )
        row = await cursor.fetchone()
        unsent = 0
        if mongo is None:
            copies = await conn.execute(
                "SELECT count(*) FROM points.program_settings_copies WHERE merchant_id = %s",
                (merchant_id,),
            )
            counted = await copies.fetchone()
            points_copies = counted[0] if counted else 0
        else:  # Points on MongoDB: its copy and its outbox are there
            points = mongo[POINTS_MONGO_DATABASE]
            with FAKE_LOCK:  # the service's threads use the fake too
                points_copies = points[PROGRAM_SETTINGS].count_documents({"_id": merchant_id})
                unsent += points[OUTBOX_COLLECTION].count_documents({"sent_at": None})
        for schema in ("admin_core", *(h for h in HOLDERS if h != "points" or mongo is None)):
            pending = await conn.execute(
                sql.SQL("SELECT count(*) FROM {}.outbox WHERE sent_at IS NULL").format(
                    sql.Identifier(schema)
                )
            )
            counted = await pending.fetchone()
            unsent += counted[0] if counted else 0
    # Two accounts in Core: the customer's and the owner's (merchant.created -> Users).
    return row is not None and row[0] + points_copies == 5 and unsent == 0


# ---- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("points_store", POINTS_STORES)
async def test_data_request_exports_every_item_then_redact_leaves_no_trace(
    database_url: str, redis_url: str, shopify: ShopifyStandIn, points_store: str
) -> None:
    person = Person.new()
    async with mesh(database_url, redis_url, shopify, points_store) as m:
        seeded = await seed(m, person)
        # PostHog's persons API throttles the first deletion request: it waits and retries.
        m.posthog.fail_api_next(429, retry_after="1")
        # Before: the scans find the customer (they can fail), and the sealed copy opens.
        assert await postgres_hits(database_url, person.everything())
        assert await redis_hits(redis_url, {"shopify id": person.shopify_id})
        if m.mongo is not None:  # Points' ledger and order there name the customer
            assert mongo_hits(m, {"shopify id": person.shopify_id})
        hits, sealed, readable = await kafka_findings(m, person.everything())
        # The edge never put them in clear on the topic, the Shopify id included (pseudonyms).
        assert not hits, hits
        assert sealed >= 1 and readable == sealed

        customer = {"id": int(person.shopify_id), "email": person.email, "phone": person.phone}
        await m.deliver(
            "customers/data_request",
            _shopify(
                "customers-data_request.json",
                shop_domain=SHOP,
                customer=customer,
                orders_requested=[int(seeded.order_id)],
            ),
        )
        (request,) = await m.completed(admin_pb.GDPR_REQUEST_TYPE_DATA_REQUEST)
        assert request.source == "shopify" and request.customer_id == person.shopify_id
        assert {s.service for s in request.steps} == set(HOLDERS)
        export = await m.admin.GetGDPRExport(
            admin_pb.GetGDPRExportRequest(request_id=request.request_id), metadata=m.md
        )
        package = json_format.MessageToDict(export.package)
        text = json.dumps(package)
        for item in (
            person.email,
            person.first_name,
            person.last_name,
            person.shopify_id,
            seeded.order_id,
            seeded.user_id,
            seeded.core_customer_id,
            seeded.transaction_id,
        ):
            assert item in text, (item, package)
        (core_customer,) = package["core"]["customers"]
        assert core_customer["email"] == person.email
        assert package["users"]["users"][0]["email"] == person.email
        ledger = package["points"]["ledgers"][person.shopify_id]["ledger"]
        assert ledger["balance"] in (120, "120")
        assert package["edge"]["customer_key"]["key_id"]
        # RFM's score of the seeded order and the order itself.
        assert package["rfm"]["customer"]["orders"] in (1, "1")
        assert [o["order_id"] for o in package["rfm"]["orders"]] == [seeded.order_id]
        assert package["gamification"]
        # Products' sale of the order and the RFM segment Products and Campaign were told of.
        assert package["products"]["product_purchases"][0]["order_id"] == seeded.order_id
        assert package["products"]["rfm_segment"] and package["campaign"]["rfm_segment"]
        assert export.expire_time.seconds > export.create_time.seconds

        await m.deliver(
            "customers/redact",
            _shopify(
                "customers-redact.json",
                shop_domain=SHOP,
                customer=customer,
                orders_to_redact=[int(seeded.order_id)],
            ),
        )
        (redaction,) = await m.completed(admin_pb.GDPR_REQUEST_TYPE_CUSTOMER_REDACT)
        assert redaction.customer_id == ""  # the record of an erasure names nobody
        # Every holder took part. How many rows each step reports is not asserted per holder:
        # a step whose answer was lost (a deadline under load) is retried, and the retry of an
        # idempotent erasure finds nothing left, so it reports 0. The scans below prove it.
        records = {step.service: step.records for step in redaction.steps}
        assert set(records) == set(HOLDERS)
        assert sum(records.values()) > 0, records

        assert await postgres_hits(database_url, person.everything()) == []
        assert await redis_hits(redis_url, person.everything()) == []
        assert mongo_hits(m, person.everything()) == []
        # Every topic, keys and values: not the Shopify id either (pseudonyms), and the sealed
        # copies of the data no longer open.
        hits, sealed, readable = await kafka_findings(m, person.everything())
        assert hits == [] and sealed >= 1 and readable == 0
        # PostHog forgot the person and its events (Event Tracking's deleter, after its own
        # erasure marked them; throttled once on the way).
        await eventually(
            lambda: posthog_forgot(m, person),
            timeout=30,
            what="the customer's person deleted at PostHog",
        )
        api = [(r.method, r.status) for r in m.posthog.requests if r.path.startswith("/api/")]
        assert api[0] == ("POST", 429) and ("POST", 202) in api, api  # persons/bulk_delete/
        # The export package went with the customer.
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await m.admin.GetGDPRExport(
                admin_pb.GetGDPRExportRequest(request_id=request.request_id), metadata=m.md
            )
        assert gone.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        # Points' ledgers stay consistent: the amounts remain, under an id naming nobody.
        if m.mongo is None:
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                cursor = await conn.execute(
                    "SELECT customer_id, balance FROM points.ledgers"
                    " WHERE merchant_id = %s AND customer_id LIKE 'erased:%%' AND balance > 0",
                    (m.merchant_id,),
                )
                ((anonymous, balance),) = await cursor.fetchall()
        else:
            with FAKE_LOCK:
                ((anonymous, balance),) = [
                    (doc["customer_id"], doc["balance"])
                    for doc in m.mongo[POINTS_MONGO_DATABASE][BALANCES].find(
                        {"merchant_id": m.merchant_id, "balance": {"$gt": 0}}
                    )
                ]
        assert anonymous.startswith("erased:") and balance == 120


@pytest.mark.parametrize("points_store", POINTS_STORES)
async def test_shop_redact_erases_the_merchant_everywhere(
    database_url: str, redis_url: str, shopify: ShopifyStandIn, points_store: str
) -> None:
    person = Person.new()
    async with mesh(database_url, redis_url, shopify, points_store) as m:
        seeded = await seed(m, person)
        # Shopify sends shop/redact 48 hours after the uninstall: the mesh has long applied
        # every event of the merchant by then. Here: until the projections the seed's events
        # feed exist (else a late event would write one after the erasure).
        await eventually(
            lambda: projections_settled(database_url, m.merchant_id, seeded.user_id, m.mongo),
            timeout=30,
            what="the merchant's events applied",
        )
        assert merchant_at_posthog(m)
        await m.deliver("shop/redact", _shopify("shop-redact.json", shop_domain=SHOP))
        await m.completed(admin_pb.GDPR_REQUEST_TYPE_SHOP_REDACT)
        # Every person of the merchant deleted at PostHog with its events; Event Tracking then
        # drops its marks (the table scan below finds none).
        await eventually(
            lambda: posthog_forgot_merchant(m, person),
            timeout=30,
            what="the merchant's persons deleted at PostHog",
        )

        assert await postgres_hits(database_url, person.everything()) == []
        assert await redis_hits(redis_url, person.everything()) == []
        # Every topic, keys and values: not the Shopify id either (pseudonyms), and the sealed
        # copies of the data no longer open.
        hits, sealed, readable = await kafka_findings(m, person.everything())
        assert hits == [] and sealed >= 1 and readable == 0
        # No service table keeps a row of the merchant, but AdminCore's record of the request
        # and Auth's of the install (tokens dropped at the uninstall; what a reinstall finds)
        # and of revoked tokens (until they expire), and Event Tracking's tombstone of the
        # merchant (its id and the erasure's time: its late events are dropped).
        kept = {"auth.merchants", "auth.token_revocations", "event_tracking.erased_merchants"}
        left: list[str] = []
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cursor = await conn.execute(
                "SELECT table_schema, table_name FROM information_schema.columns"
                " WHERE column_name = 'merchant_id'"
                " AND table_schema = ANY(%s)",
                (list(HOLDERS),),
            )
            for schema, table in await cursor.fetchall():
                if f"{schema}.{table}" in kept:
                    continue
                rows = await conn.execute(
                    sql.SQL("SELECT count(*) FROM {}.{} WHERE merchant_id = %s").format(
                        sql.Identifier(schema), sql.Identifier(table)
                    ),
                    (m.merchant_id,),
                )
                row = await rows.fetchone()
                if row and row[0]:
                    left.append(f"{schema}.{table}: {row[0]}")
        # Nor any collection of Points' MongoDB: by merchant, or an id made from it
        # (`merchant|customer|...`, the program copy's `_id`).
        if m.mongo is not None:
            assert mongo_hits(m, person.everything()) == []
            mine = {
                "$or": [
                    {"merchant_id": m.merchant_id},
                    {"_id": m.merchant_id},
                    {"_id": {"$regex": f"^{m.merchant_id}[|/:]"}},
                ]
            }
            with FAKE_LOCK:
                points = m.mongo[POINTS_MONGO_DATABASE]
                for collection in points.list_collection_names():
                    found = points[collection].count_documents(mine)
                    if found:
                        left.append(f"mongo {collection}: {found}")
        assert left == []


async def test_each_service_progresses_on_its_own_and_failures_stay_pending(
    database_url: str, redis_url: str, shopify: ShopifyStandIn
) -> None:
    """Users answers, the other holders are unreachable: Users' step completes, the others
    stay pending with the reason, and so does the request (retried with backoff). The edge,
    owner of the pseudonyms, is not even asked while another holder's erasure is pending."""
    broker = BrokerProcess()
    await broker.start()
    events = events_on(broker)
    try:
        async with (
            serving(AUTH, auth_with(database_url, redis_url, shopify, **events)) as auth,
            grpc.aio.insecure_channel(auth.address) as auth_channel,
        ):
            await install(auth_pb2_grpc.AuthServiceStub(auth_channel), shopify, SHOP)
            users_settings = service_settings_for_tests(
                UsersSettings, database_url, redis_url=redis_url, **events
            )
            async with serving(USERS, users_settings) as users:
                nowhere = {
                    name: NO_CALLEES.format(service=name)
                    for name in HOLDERS
                    if name not in ("auth", "users")
                }
                admin_settings = service_settings_for_tests(
                    AdminCoreSettings,
                    database_url,
                    service_credential=service_credential(MASTER_KEY, "admin_core"),
                    call_targets={"auth": auth.address, "users": users.address, **nowhere},
                    admin_core_gdpr_interval_seconds=0.2,
                    call_max_attempts=1,
                    **events,
                )
                async with (
                    serving(ADMIN_CORE, admin_settings) as admin,
                    grpc.aio.insecure_channel(admin.address) as channel,
                ):
                    stub = admin_core_pb2_grpc.AdminCoreServiceStub(channel)
                    md = merchant_metadata(
                        merchant_id_for_shop(SHOP), (GDPR, "admin_core:shop-redact")
                    )
                    filed = await stub.HandleGDPRRequest(
                        admin_pb.HandleGDPRRequestRequest(
                            type=admin_pb.GDPR_REQUEST_TYPE_SHOP_REDACT, idempotency_key="shop-1"
                        ),
                        metadata=md,
                    )

                    async def progressed() -> admin_pb.GDPRRequest | None:
                        got = await stub.GetGDPRRequest(
                            admin_pb.GetGDPRRequestRequest(request_id=filed.request.request_id),
                            metadata=md,
                        )
                        steps = {s.service: s for s in got.request.steps}
                        done = {"auth", "users"}
                        if all(
                            steps[name].status == admin_pb.GDPR_REQUEST_STATUS_COMPLETED
                            for name in done
                        ) and all(steps[name].last_error for name in nowhere if name != OWNER):
                            return got.request
                        return None

                    request = await eventually(progressed, timeout=30, what="per-step progress")
                    assert request.status == admin_pb.GDPR_REQUEST_STATUS_PENDING
                    for step in request.steps:
                        if step.service == OWNER:
                            assert step.status == admin_pb.GDPR_REQUEST_STATUS_PENDING
                            assert step.last_error == ""  # waits for the others
                        elif step.service in nowhere:
                            assert step.status == admin_pb.GDPR_REQUEST_STATUS_PENDING
                            assert "UNAVAILABLE" in step.last_error and step.attempts >= 1
    finally:
        broker.close()

"""BIRTHDAY and ANNIVERSARY earning rules end to end: the rules saved in Core through Envoy
(checked by the shared earning-rule check), birthdays given with consent to Users through
Envoy, and the occasions job (`loyalnest points occasions`, `credit_occasions`) asking Users
whose birthday it is through Points' declared call with its own service token from Auth. Real
Core, Points, edge, Users, Auth, PostgreSQL, Valkey, the broker and two Envoys.

The job runs for the day a year from now (its `--date`): the customers' ledgers, opened today,
then have their first anniversary, and the birthdays are set on that day."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from kafka import KafkaConsumer, TopicPartition

from loyalnest.devstack.postgres import free_port
from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.events.v1 import core_pb2
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.postgres import Database
from loyalnest.platform.program_settings import default_program
from loyalnest.platform.server import RunningService
from loyalnest.services.points.service import DATABASE as POINTS_DATABASE
from loyalnest.services.points.service import credit_occasions
from loyalnest.services.points.store.postgres import PostgresLedgerStore
from loyalnest.services.users.service import SERVICE_NAME as USERS_SERVICE
from loyalnest.services.users.service import SPEC as USERS
from tests.auth import merchant_headers
from tests.integration.conftest import points_settings, serving
from tests.integration.shopify_standin import ShopifyStandIn
from tests.integration.test_auth_service import install
from tests.integration.test_gateway_validate import Gateway, behind_gateway, http
from tests.integration.test_order_flow import SHOP, Stack, local_stack
from tests.integration.test_program_expiry import points_events_of, settings_reached_points
from tests.integration.test_program_rules import patch_settings
from tests.integration.test_service_identity import POINTS_CREDENTIAL, serving_auth
from tests.integration.test_users_service import users_settings

pytestmark = pytest.mark.integration

RULES = [
    {"rule_id": "bday", "enabled": True, "type": "EARNING_RULE_TYPE_BIRTHDAY", "points": "50"},
    {"rule_id": "anniv", "enabled": True, "type": "EARNING_RULE_TYPE_ANNIVERSARY", "points": "25"},
]


def next_year(today: date) -> date:
    """The same day a year on (29 February: 28 February, where its anniversary falls)."""
    try:
        return today.replace(year=today.year + 1)
    except ValueError:
        return date(today.year + 1, 2, 28)


@pytest.fixture
async def program_stack(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with local_stack(database_url, redis_url, tmp_path / "stack") as running_stack:
        yield running_stack


@pytest.fixture
async def users(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[RunningService, Gateway]]:
    async with serving(USERS, users_settings(database_url, None)) as service:
        async with behind_gateway("users", USERS_SERVICE, service, tmp_path / "users") as gw:
            yield service, gw


async def set_birthday(
    users_gateway: Gateway, stack: Stack, customer: str, month: int, day: int, year: int = 1990
) -> None:
    response = await http(
        "POST",
        f"{users_gateway.url}/v1/api/users/birthdays",
        headers=merchant_headers(stack.merchant_id, ("users:write",)),
        json_body={
            "customer_id": customer,
            "birthday": {"month": month, "day": day, "year": year},
            "consent": True,
            "idempotency_key": uuid.uuid4().hex,
        },
    )
    assert response.status == 200, response.body


async def save_program(database_url: str, merchant_id: str) -> None:
    """Points' copy of a program with the rules, for a merchant Core never told it about."""
    program = default_program()
    program.version = 1
    for rule in RULES:
        program.earning_rules.add(
            rule_id=rule["rule_id"],
            enabled=True,
            type=core_pb2.EarningRuleType.Value(rule["type"]),
            points=int(rule["points"]),
        )
    database = Database(ServiceSettings(database_url=database_url), POINTS_DATABASE)
    await database.open()
    try:
        store = PostgresLedgerStore(database)
        assert await store.save_program_settings(merchant_id, 1, program.SerializeToString())
    finally:
        await database.close()


async def earn(stack: Stack, customer: str, points: int) -> None:
    response = await http(
        "POST",
        f"{stack.gateway.url}/v1/api/points/earn",
        headers=stack.headers,
        json_body={
            "customer_id": customer,
            "points": points,
            "reason": "welcome",
            "idempotency_key": customer,
        },
    )
    assert response.status == 200, response.body


async def history(stack: Stack, customer: str) -> list[tuple[str, str, str]]:
    """(reason, rule_id, points) of the customer's credits, oldest first."""
    found = await stack.get_json(f"/v1/api/points/transactions/{customer}")
    return [
        (t.get("reason", ""), t.get("rule_id", ""), t["points"])
        for t in reversed(found["transactions"])
    ]


def broker_records(bootstrap: str) -> list[bytes]:
    """Every record value on every topic the broker holds."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in consumer.topics()
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        values: list[bytes] = []
        while batch := consumer.poll(timeout_ms=2000):
            values += [record.value for records in batch.values() for record in records]
        return values
    finally:
        consumer.close()


async def test_birthdays_and_anniversaries_once_a_year(
    program_stack: Stack,
    users: tuple[RunningService, Gateway],
    shopify: ShopifyStandIn,
    database_url: str,
    redis_url: str,
) -> None:
    stack = program_stack
    users_service, users_gateway = users
    # Core checks the new types with the shared check: no limit on a once-a-year rule.
    bad = await patch_settings(
        stack,
        {"earning_rules": [RULES[0] | {"limit": {"max_awards": 2, "period": "LIMIT_PERIOD_YEAR"}},
                           RULES[1] | {"points": "0"}],
         "timezone": "Mars/Olympus_Mons"},
        "earning_rules,timezone",
        "occasions-bad",
    )  # fmt: skip
    assert bad.status == 400, bad.body
    violations = {v["field"] for d in bad.json()["details"] for v in d.get("field_violations", [])}
    assert violations == {
        "settings.earning_rules[0].limit",
        "settings.earning_rules[1].points",
        "settings.timezone",
    }
    # The merchant's days in UTC, said explicitly (the default too).
    good = await patch_settings(
        stack, {"earning_rules": RULES, "timezone": "Etc/UTC"}, "earning_rules,timezone",
        "occasions-1",
    )  # fmt: skip
    assert good.json()["settings"]["timezone"] == "Etc/UTC", good.body
    assert good.status == 200, good.body
    await settings_reached_points(stack, int(good.json()["settings"]["version"]))

    day = next_year(datetime.now(UTC).date())
    # 8801: a member since today, birthday on the day: 50 + 25. 8802: a member, birthday
    # another day: 25. 8804: 29 February, celebrated on 28 February 2027 (a run of its own,
    # last: no ledger yet, the credit opens it).
    for customer in ("8801", "8802"):
        await earn(stack, customer, 10)
    await set_birthday(users_gateway, stack, "8801", day.month, day.day)
    other = day + timedelta(days=1)
    await set_birthday(users_gateway, stack, "8802", other.month, other.day)
    await set_birthday(users_gateway, stack, "8804", 2, 29, year=0)

    async with serving_auth(database_url, redis_url, shopify) as auth:
        async with grpc.aio.insecure_channel(auth.address) as channel:
            installed = await install(auth_pb2_grpc.AuthServiceStub(channel), shopify, SHOP)
        assert installed.merchant.merchant_id == stack.merchant_id
        settings = points_settings(
            database_url,
            redis_url=redis_url,
            call_targets={"auth": auth.address, "users": users_service.address},
            service_credential=POINTS_CREDENTIAL,
        )
        # Users down: the anniversaries are credited, the merchant is reported failed (the
        # job exits 1) and the next run finishes it without crediting anything twice.
        down = settings.model_copy(
            update={"call_targets": {"auth": auth.address, "users": f"127.0.0.1:{free_port()}"}}
        )
        failed = await credit_occasions(down, day)
        assert failed.failed_merchants == [stack.merchant_id]
        assert (failed.awarded, failed.points) == (2, 50)
        # A program copy of a merchant Auth does not know: skipped, not failed.
        await save_program(database_url, "merchant-unknown-to-auth")
        first = await credit_occasions(settings, day)
        assert (first.merchants, first.awarded, first.points, first.replayed) == (1, 1, 50, 2)
        assert not first.failed_merchants
        # Run again (a retry, a rerun the same day): nothing twice.
        again = await credit_occasions(settings, day)
        assert (again.awarded, again.points, again.replayed) == (0, 0, 3)

        leap = await credit_occasions(settings, date(2027, 2, 28))
        assert (leap.awarded, leap.points) == (1, 50)

    assert sorted(h[1:] for h in await history(stack, "8801")) == [
        ("", "10"), ("anniv", "25"), ("bday", "50")
    ]  # fmt: skip
    assert [h[0] for h in await history(stack, "8801")][1:] in (
        ["anniversary", "birthday"], ["birthday", "anniversary"]
    )  # fmt: skip
    assert [h[1:] for h in await history(stack, "8802")] == [("", "10"), ("anniv", "25")]
    assert [h[1:] for h in await history(stack, "8804")] == [("bday", "50")]

    # points.earned names the rule; no birthday travels on the broker in clear.
    earned = points_events_of(
        stack.bootstrap_servers, stack.merchant_id, expected=5, only=("points.earned",)
    )
    rules = sorted(p.rule_id for _, p in earned if p.rule_id)
    assert rules == ["anniv", "anniv", "bday", "bday"]
    birthday_texts = [
        f"1990-{day.month:02d}-{day.day:02d}".encode(),
        f"--{day.month:02d}-{day.day:02d}".encode(),
        b"--02-29",
    ]
    records: list[Any] = broker_records(stack.bootstrap_servers)
    assert records
    assert not [r for r in records for text in birthday_texts if r and text in r]

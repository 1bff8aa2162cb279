"""Signed custom activities end to end through a real Envoy: the merchant issues an integration
secret (POST /v1/api/points/integrations, shown once), a reviews app signs its reports with it
(POST /v1/api/points/integrations/activities, no token: X-LoyalNest-Integration-Id,
X-LoyalNest-Timestamp, X-LoyalNest-Hmac-SHA256) and the CUSTOM_ACTIVITY rules credit the
customer once per (rule, customer, occurrence) within their limits; bad or stale signatures
are 401 JSON, an activity no rule names is 400 FAILED_PRECONDITION UNKNOWN_ACTIVITY, and a
rotation keeps the old secret for its grace period only.

    rules: "review"  product_review  20 points, at most 2 a day
           "quiz"    quiz_done       15 points, once ever
    review-1 +20, review-1 again (any signature, any time) +0, review-2 +20, review-3 limit
    (2 a day): 40; quiz-1 +15: 55; quiz-2 (once ever) +0: 55.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from loyalnest.gateway import Upstream
from loyalnest.gen.events.v1 import core_pb2 as core_events
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.postgres import Database
from loyalnest.platform.server import RunningService
from loyalnest.services.points.integrations import (
    INTEGRATION_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from loyalnest.services.points.service import DATABASE as POINTS_DATABASE
from loyalnest.services.points.service import SERVICE_NAME, SPEC
from loyalnest.services.points.store.postgres import PostgresLedgerStore
from tests.auth import merchant_headers, merchant_metadata
from tests.integration.conftest import points_settings, serving
from tests.integration.test_gateway_validate import (
    Gateway,
    Response,
    gateway_config,
    http,
    running_gateway,
)

pytestmark = pytest.mark.integration

ACTIVITIES = "/v1/api/points/integrations/activities"
PERMISSIONS = ("points:read", "points:integrations")
RULES = [
    core_events.EarningRule(
        rule_id="review",
        enabled=True,
        type=core_events.EARNING_RULE_TYPE_CUSTOM_ACTIVITY,
        points=20,
        activity="product_review",
        limit=core_events.EarningLimit(max_awards=2, period=core_events.LIMIT_PERIOD_DAY),
    ),
    core_events.EarningRule(
        rule_id="quiz",
        enabled=True,
        type=core_events.EARNING_RULE_TYPE_CUSTOM_ACTIVITY,
        points=15,
        activity="quiz_done",
        limit=core_events.EarningLimit(max_awards=1, period=core_events.LIMIT_PERIOD_EVER),
    ),
]


@dataclass
class Fixture:
    points: RunningService
    gateway: Gateway
    merchant_id: str


async def publish_rules(database_url: str, merchant_id: str) -> None:
    """The program as Points keeps it from Core's program_settings.updated."""
    database = Database(ServiceSettings(database_url=database_url), POINTS_DATABASE)
    await database.open()
    try:
        program = core_events.ProgramSettings(version=1, program_enabled=True, earning_rules=RULES)
        await PostgresLedgerStore(database).save_program_settings(
            merchant_id, 1, program.SerializeToString()
        )
    finally:
        await database.close()


@contextlib.asynccontextmanager
async def stack(
    database_url: str, redis_url: str, tmp_path: Path, merchant_id: str, **settings: Any
) -> AsyncIterator[Fixture]:
    async with contextlib.AsyncExitStack() as exits:
        points = await exits.enter_async_context(
            serving(SPEC, points_settings(database_url, redis_url=redis_url, **settings))
        )
        await publish_rules(database_url, merchant_id)  # after Points migrated its schema
        upstream = Upstream("points", (SERVICE_NAME,), (("127.0.0.1", points.port),))
        gateway = await exits.enter_async_context(
            running_gateway(gateway_config(upstream), tmp_path, {"points": 1})
        )
        yield Fixture(points, gateway, merchant_id)


@pytest.fixture
async def fixture(
    database_url: str, redis_url: str, tmp_path: Path, merchant_id: str
) -> AsyncIterator[Fixture]:
    async with stack(database_url, redis_url, tmp_path, merchant_id) as running:
        yield running


def signed(
    integration_id: str, secret: str, body: bytes, *, at: float | None = None
) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {
        "content-type": "application/json",
        INTEGRATION_HEADER: integration_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def activity(customer: str, name: str, occurrence: str) -> bytes:
    return json.dumps(
        {"customer_id": customer, "activity": name, "occurrence_id": occurrence}
    ).encode()


async def report(fx: Fixture, integration_id: str, secret: str, body: bytes) -> Response:
    return await http(
        "POST",
        f"{fx.gateway.url}{ACTIVITIES}",
        body=body,
        headers=signed(integration_id, secret, body),
    )


async def create_integration(fx: Fixture, key: str) -> dict[str, Any]:
    created = await http(
        "POST",
        f"{fx.gateway.url}/v1/api/points/integrations",
        headers=merchant_headers(fx.merchant_id, PERMISSIONS),
        json_body={"name": "Reviews app", "idempotency_key": key},
    )
    assert created.status == 200, created.body
    body: dict[str, Any] = created.json()
    return body


async def balance(fx: Fixture, customer: str) -> str:
    answered = await http(
        "GET",
        f"{fx.gateway.url}/v1/api/points/balance/{customer}",
        headers=merchant_headers(fx.merchant_id, PERMISSIONS),
    )
    assert answered.status == 200, answered.body
    points: str = answered.json()["balance"]["balance"]
    return points


def statuses(answered: Response) -> list[tuple[str, str, str]]:
    assert answered.status == 200, answered.body
    return [(a["rule_id"], a["status"], a.get("points", "0")) for a in answered.json()["awards"]]


def violation_types(answered: Response) -> list[str]:
    return [
        v["type"]
        for detail in answered.json().get("details", [])
        for v in detail.get("violations", [])
        if "type" in v
    ]


async def test_signed_activities_credit_once_per_occurrence(fixture: Fixture) -> None:
    fx = fixture
    created = await create_integration(fx, "reviews-app-1")
    integration_id, secret = created["integration"]["integration_id"], created["secret"]
    assert secret.startswith("lnis_") and len(secret) > 40
    # A retry of the create answers the same integration and secret; the listing never
    # shows a secret.
    assert await create_integration(fx, "reviews-app-1") == created
    listed = await http(
        "GET",
        f"{fx.gateway.url}/v1/api/points/integrations",
        headers=merchant_headers(fx.merchant_id, PERMISSIONS),
    )
    assert listed.status == 200, listed.body
    assert [i["integration_id"] for i in listed.json()["integrations"]] == [integration_id]
    assert secret not in listed.body.decode()

    review_1 = activity("c-1", "product_review", "review-1")
    assert statuses(await report(fx, integration_id, secret, review_1)) == [
        ("review", "ACTIVITY_AWARD_STATUS_AWARDED", "20")
    ]
    # Redelivered (signed again, later) and replayed byte for byte (same signature): nothing.
    again = await report(fx, integration_id, secret, review_1)
    assert statuses(again) == [("review", "ACTIVITY_AWARD_STATUS_DUPLICATE", "20")]
    headers = signed(integration_id, secret, review_1)
    for _ in range(2):
        replayed = await http(
            "POST", f"{fx.gateway.url}{ACTIVITIES}", body=review_1, headers=headers
        )
        assert statuses(replayed)[0][1] == "ACTIVITY_AWARD_STATUS_DUPLICATE"
    assert await balance(fx, "c-1") == "20"

    review_2 = activity("c-1", "product_review", "review-2")
    assert statuses(await report(fx, integration_id, secret, review_2))[0][1] == (
        "ACTIVITY_AWARD_STATUS_AWARDED"
    )
    review_3 = activity("c-1", "product_review", "review-3")
    assert statuses(await report(fx, integration_id, secret, review_3)) == [
        ("review", "ACTIVITY_AWARD_STATUS_LIMIT_REACHED", "0")
    ]
    quiz_1 = activity("c-1", "quiz_done", "quiz-1")
    assert statuses(await report(fx, integration_id, secret, quiz_1))[0][1] == (
        "ACTIVITY_AWARD_STATUS_AWARDED"
    )
    quiz_2 = activity("c-1", "quiz_done", "quiz-2")
    assert statuses(await report(fx, integration_id, secret, quiz_2))[0][1] == (
        "ACTIVITY_AWARD_STATUS_LIMIT_REACHED"
    )
    assert await balance(fx, "c-1") == "55"

    # The credit names the rule, in the customer's history.
    history = await http(
        "GET",
        f"{fx.gateway.url}/v1/api/points/transactions/c-1",
        headers=merchant_headers(fx.merchant_id, PERMISSIONS),
    )
    assert sorted(
        (t["reason"], t["rule_id"], t["points"]) for t in history.json()["transactions"]
    ) == [
        ("activity:product_review", "review", "20"),
        ("activity:product_review", "review", "20"),
        ("activity:quiz_done", "quiz", "15"),
    ]


async def test_refusals_are_clear_and_credit_nothing(fixture: Fixture) -> None:
    fx = fixture
    created = await create_integration(fx, "reviews-app-2")
    integration_id, secret = created["integration"]["integration_id"], created["secret"]
    body = activity("c-2", "product_review", "review-9")
    url = f"{fx.gateway.url}{ACTIVITIES}"

    async def refused(headers: dict[str, str], sent: bytes = body) -> Response:
        return await http("POST", url, body=sent, headers=headers)

    cases = {
        "wrong secret": signed(integration_id, "lnis_not-the-secret", body),
        "stale": signed(integration_id, secret, body, at=time.time() - 600),
        "future": signed(integration_id, secret, body, at=time.time() + 600),
        "unknown integration": signed(str(uuid.uuid4()), secret, body),
        "not an id": signed("x' OR 1=1", secret, body),
        "unsigned": {"content-type": "application/json", INTEGRATION_HEADER: integration_id},
        "not base64": signed(integration_id, secret, body) | {SIGNATURE_HEADER: "%%%"},
    }
    for name, headers in cases.items():
        answered = await refused(headers)
        assert answered.status == 401, (name, answered.body)
        error = answered.json()
        assert error["code"] == 16, (name, error)  # UNAUTHENTICATED, as JSON
        assert error["message"].startswith("activity signature rejected"), (name, error)
    stale = (await refused(cases["stale"])).json()["message"]
    assert "replay window" in stale, stale
    # The body signed with another timestamp than the header's: the HMAC does not match.
    tampered = signed(integration_id, secret, body) | {TIMESTAMP_HEADER: str(int(time.time()))}
    tampered[SIGNATURE_HEADER] = sign(secret, "1", body)
    assert (await refused(tampered)).status == 401

    unknown = activity("c-2", "newsletter_quiz", "n-1")
    answered = await refused(signed(integration_id, secret, unknown), unknown)
    assert answered.status == 400, answered.body
    assert answered.json()["code"] == 9  # FAILED_PRECONDITION
    assert violation_types(answered) == ["UNKNOWN_ACTIVITY"]
    assert "newsletter_quiz" in answered.json()["message"]

    for bad, field in (
        (b"[1, 2]", "body"),
        (b'{"customer_id": "c-2", "activity": "product_review"}', "occurrence_id"),
        (
            b'{"customer_id": "c-2", "activity": "product_review", "occurrence_id": "o",'
            b' "occurred_at": "yesterday"}',
            "occurred_at",
        ),
    ):
        answered = await refused(signed(integration_id, secret, bad), bad)
        assert answered.status == 400, answered.body
        assert answered.json()["code"] == 3, answered.body  # INVALID_ARGUMENT
        assert field in answered.body.decode(), answered.body

    # Nothing above credited c-2: no ledger was even opened.
    missing = await http(
        "GET",
        f"{fx.gateway.url}/v1/api/points/balance/c-2",
        headers=merchant_headers(fx.merchant_id, PERMISSIONS),
    )
    assert missing.status == 404, missing.body


async def test_rotation_keeps_the_old_secret_for_its_grace(
    fixture: Fixture, database_url: str
) -> None:
    fx = fixture
    created = await create_integration(fx, "reviews-app-3")
    integration_id, old = created["integration"]["integration_id"], created["secret"]
    rotate_url = f"{fx.gateway.url}/v1/api/points/integrations/{integration_id}/rotate"
    headers = merchant_headers(fx.merchant_id, PERMISSIONS)
    rotated = await http("POST", rotate_url, headers=headers, json_body={"idempotency_key": "r1"})
    assert rotated.status == 200, rotated.body
    new = rotated.json()["secret"]
    assert new.startswith("lnis_") and new != old
    assert rotated.json()["integration"]["secret_generation"] == 2
    assert "previous_valid_until" in rotated.json()["integration"]
    retried = await http("POST", rotate_url, headers=headers, json_body={"idempotency_key": "r1"})
    assert retried.json()["secret"] == new  # a retry, not a second rotation
    # The create's replay no longer shows a secret: it was rotated.
    assert (await create_integration(fx, "reviews-app-3"))["secret"] == ""

    first = activity("c-3", "product_review", "r-1")
    assert statuses(await report(fx, integration_id, old, first))[0][1] == (
        "ACTIVITY_AWARD_STATUS_AWARDED"
    )
    second = activity("c-3", "product_review", "r-2")
    assert statuses(await report(fx, integration_id, new, second))[0][1] == (
        "ACTIVITY_AWARD_STATUS_AWARDED"
    )
    # Leaked: rotated again with the previous secret revoked at once.
    revoked = await http(
        "POST",
        rotate_url,
        headers=headers,
        json_body={"idempotency_key": "r2", "revoke_previous": True},
    )
    assert revoked.status == 200, revoked.body
    newest = revoked.json()["secret"]
    assert "previous_valid_until" not in revoked.json()["integration"]
    third = activity("c-3", "product_review", "r-3")
    for stale_secret in (old, new):
        assert (await report(fx, integration_id, stale_secret, third)).status == 401
    assert statuses(await report(fx, integration_id, newest, third))[0][1] == (
        "ACTIVITY_AWARD_STATUS_LIMIT_REACHED"  # 2 a day, both used above: still verified
    )
    # Another merchant's token cannot rotate it.
    other = merchant_headers(f"m-{uuid.uuid4().hex[:8]}", PERMISSIONS)
    foreign = await http("POST", rotate_url, headers=other, json_body={"idempotency_key": "r9"})
    assert foreign.status == 404, foreign.body

    # Issuing and rotating are audited, naming the caller, without the secrets.
    logs = await audit_rows(database_url, integration_id)
    assert [(action, actor) for action, actor, _ in logs] == [
        ("create", "test-user"),  # tests/auth.py's token subject
        ("update", "test-user"),
        ("update", "test-user"),
    ]
    assert logs[1][2]["changed"] == [
        "generation",
        "previous_secret",
        "previous_valid_until",
        "rotated_at",
        "secret",
        "secret_key",
    ]
    for _, _, details in logs:
        assert not {"secret", "previous_secret", "secret_key"} & set(details["new"]), details
        assert not any(s in json.dumps(details) for s in (old, new, newest)), details


async def audit_rows(database_url: str, integration_id: str) -> list[tuple[str, str, Any]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT action, actor, details FROM points.audit_logs"
            " WHERE entity_type = 'integrations' AND entity_id = %s ORDER BY created_at",
            (integration_id,),
        )
        return [(a, b, c) for a, b, c in await cursor.fetchall()]


async def test_without_grace_the_rotated_secret_is_refused_at_once(
    database_url: str, redis_url: str, tmp_path: Path, merchant_id: str
) -> None:
    async with stack(
        database_url,
        redis_url,
        tmp_path,
        merchant_id,
        points_integration_rotation_grace_seconds=0,
    ) as fx:
        md = merchant_metadata(merchant_id, PERMISSIONS)
        async with grpc.aio.insecure_channel(fx.points.address) as channel:
            stub = points_pb2_grpc.PointsServiceStub(channel)
            created = await stub.CreateIntegration(
                points_pb2.CreateIntegrationRequest(name="Quiz", idempotency_key="q"), metadata=md
            )
            rotated = await stub.RotateIntegrationSecret(
                points_pb2.RotateIntegrationSecretRequest(
                    integration_id=created.integration.integration_id, idempotency_key="r"
                ),
                metadata=md,
            )
        integration_id = created.integration.integration_id
        body = activity("c-4", "quiz_done", "q-1")
        assert (await report(fx, integration_id, created.secret, body)).status == 401
        assert statuses(await report(fx, integration_id, rotated.secret, body))[0][1] == (
            "ACTIVITY_AWARD_STATUS_AWARDED"
        )

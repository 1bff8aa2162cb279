"""Event Tracking's rules without I/O, and the PostHog stand-in's capture contract."""

from __future__ import annotations

import base64
import gzip
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loyalnest.devstack.standins.posthog import (
    DEFAULT_API_KEY,
    DEFAULT_PERSONAL_API_KEY,
    DEFAULT_PROJECT_ID,
    PosthogStandIn,
)
from loyalnest.services.event_tracking.domain import (
    Pseudonyms,
    Task,
    TaskStatus,
    allowed,
    client_task_id,
    event_name_problem,
    property_violations,
    reason_kind,
    timestamp_problem,
)
from loyalnest.services.event_tracking.shipping import batch_body, retry_after_seconds


def test_pseudonyms_are_per_merchant_and_stable() -> None:
    p = Pseudonyms(b"k" * 32)
    assert p.of("m1", "c-1") == p.of("m1", "c-1") != p.of("m2", "c-1")
    assert p.of("m1", "c-1") != Pseudonyms(b"j" * 32).of("m1", "c-1")
    assert "c-1" not in p.of("m1", "c-1") and len(p.of("m1", "c-1")) == 32


def test_client_task_ids_are_derived_and_merchant_bound() -> None:
    u = str(uuid.uuid4())
    assert client_task_id("m1", u) == client_task_id("m1", u.upper()) != client_task_id("m2", u)


def test_allow_list_keeps_only_allowed_impersonal_properties() -> None:
    kept = allowed(
        "reward_viewed",
        {"reward_id": "r", "points_cost": 10.0, "email": "a@b.co", "page_type": "x@y.example"},
    )
    assert kept.kept == {"reward_id": "r", "points_cost": 10} and kept.dropped == 2
    unknown = allowed(
        "my_custom_event", {"reward_id": "r", "locale": "fr", "widget": "+33 6 12 34 56 78"}
    )
    assert unknown.kept == {"locale": "fr"} and unknown.dropped == 2


def test_limits() -> None:
    assert event_name_problem("widget_opened") is None and event_name_problem("$pageview") is None
    assert event_name_problem("Widget Opened") and event_name_problem("")
    assert event_name_problem("a" * 65)
    assert property_violations("p", {"a": 1, "b": "x", "c": None, "d": True}) == []
    assert [v.field for v in property_violations("p", {"n": {"x": 1}, "l": [1]})] == ["p.n", "p.l"]
    assert property_violations("p", {str(i): i for i in range(51)})
    now = datetime.now(UTC)
    assert timestamp_problem(now + timedelta(minutes=30), now) is None
    assert timestamp_problem(now + timedelta(hours=2), now)
    assert reason_kind("order:1001") == "order" and reason_kind("Spaces here") == "other"


def test_retry_after_as_seconds_or_date() -> None:
    now = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Sun, 06 Dec 2026 03:00:30 GMT", now) == 30.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_batch_body_is_gzip_in_posthogs_shape() -> None:
    occurred = datetime(2026, 12, 6, tzinfo=UTC)
    task = Task(
        task_id=str(uuid.uuid4()),
        merchant_id="m1",
        event_type="points_earned",
        source="domain",
        subject="abc",
        status=TaskStatus.PENDING,
        properties={"points": 5},
        occurred_at=occurred,
        attempts=0,
        last_error=None,
        created_at=occurred,
        completed_at=None,
    )
    body = json.loads(gzip.decompress(batch_body("phc_x", [task], occurred)))
    assert body["api_key"] == "phc_x"
    (event,) = body["batch"]
    assert event["uuid"] == task.task_id and event["distinct_id"] == "abc"
    assert event["event"] == "points_earned" and event["properties"]["points"] == 5


@pytest.fixture
def standin() -> Iterator[PosthogStandIn]:
    server = PosthogStandIn().start()
    try:
        yield server
    finally:
        server.stop()


def _post(url: str, body: Any, *, gzipped: bool = False) -> tuple[int, dict[str, str]]:
    data = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if gzipped:
        data, headers["content-encoding"] = gzip.compress(data), "gzip"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, dict(reply.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def test_standin_honours_the_capture_contract(standin: PosthogStandIn) -> None:
    batch = f"{standin.url}/batch/"
    event = {"event": "e", "distinct_id": "d", "uuid": str(uuid.uuid4())}
    assert _post(batch, {"batch": [event]})[0] == 401
    assert _post(batch, {"api_key": "phc_other", "batch": [event]})[0] == 401
    mixed = {**event, "api_key": "phc_other"}
    assert _post(batch, {"api_key": DEFAULT_API_KEY, "batch": [mixed]})[0] == 401
    assert _post(batch, {"api_key": DEFAULT_API_KEY, "batch": []})[0] == 400
    assert _post(batch, {"api_key": DEFAULT_API_KEY, "batch": [{"event": "e"}]})[0] == 400
    assert _post(batch, {"api_key": DEFAULT_API_KEY, "batch": [{"distinct_id": "d"}]})[0] == 400
    assert standin.received() == []
    assert _post(batch, {"api_key": DEFAULT_API_KEY, "batch": [event]}, gzipped=True)[0] == 200
    single = {"api_key": DEFAULT_API_KEY, "event": "e2", "properties": {"distinct_id": "d"}}
    assert _post(f"{standin.url}/i/v0/e/", single)[0] == 200
    assert _post(f"{standin.url}/capture/", {**single, "uuid": "nope"})[0] == 200
    assert len(standin.received()) == 2 and len(standin.dropped) == 1
    standin.fail_next(429, retry_after="3")
    status, headers = _post(batch, {"api_key": DEFAULT_API_KEY, "batch": [event]})
    assert status == 429 and headers["retry-after"] == "3"
    assert _post(batch, {"api_key": DEFAULT_API_KEY, "batch": [event]})[0] == 200
    assert standin.deliveries[event["uuid"]] == 2  # PostHog dedupes only eventually


def _api(
    url: str, method: str = "GET", key: str | None = DEFAULT_PERSONAL_API_KEY, body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["content-type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            raw = reply.read()
            return reply.status, json.loads(raw) if raw else None, dict(reply.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), dict(error.headers)


def test_standin_honours_the_persons_api(standin: PosthogStandIn) -> None:
    persons = f"{standin.url}/api/projects/{DEFAULT_PROJECT_ID}/persons/"
    event = {"event": "e", "distinct_id": "d-1", "uuid": str(uuid.uuid4())}
    other = {"event": "e", "distinct_id": "d-2", "uuid": str(uuid.uuid4())}
    batch = {"api_key": DEFAULT_API_KEY, "batch": [event, other]}
    assert _post(f"{standin.url}/batch/", batch)[0] == 200
    assert _api(persons + "?distinct_id=d-1", key=None)[0] == 401
    status, body, _ = _api(persons + "?distinct_id=d-1", key="phx_other")
    assert status == 401 and body["code"] == "authentication_failed"
    assert _api(f"{standin.url}/api/projects/999/persons/?distinct_id=d-1")[0] == 404
    assert _api(persons + "?distinct_id=nobody")[1]["results"] == []
    status, body, _ = _api(persons + "?distinct_id=d-1")
    (person,) = body["results"]
    assert status == 200 and person["distinct_ids"] == ["d-1"]
    status, body, _ = _api(f"{persons}{person['uuid']}/?delete_events=true", "DELETE")
    assert (status, body) == (204, None)
    assert [e["distinct_id"] for e in standin.received()] == ["d-2"]  # with its events
    assert _api(f"{persons}{person['uuid']}/?delete_events=true", "DELETE")[0] == 404
    assert _api(persons + "?distinct_id=d-1")[1]["results"] == []
    standin.fail_api_next(503, retry_after="2")
    status, _, headers = _api(persons + "?distinct_id=d-2")
    assert status == 503 and headers["retry-after"] == "2"


def test_standin_honours_the_bulk_deletion(standin: PosthogStandIn) -> None:
    """POST persons/bulk_delete/ (posthog/api/person.py): distinct_ids or ids, at most 1000,
    202 with a summary; the same key and project checks as the other persons endpoints."""
    bulk = f"{standin.url}/api/projects/{DEFAULT_PROJECT_ID}/persons/bulk_delete/"
    events = [{"event": "e", "distinct_id": f"d-{i}", "uuid": str(uuid.uuid4())} for i in range(3)]
    assert _post(f"{standin.url}/batch/", {"api_key": DEFAULT_API_KEY, "batch": events})[0] == 200
    wanted = {"distinct_ids": ["d-0", "d-1", "nobody"], "delete_events": True}
    assert _api(bulk, "POST", key=None, body=wanted)[0] == 401
    assert _api(bulk.replace("/1/", "/999/"), "POST", body=wanted)[0] == 404
    for wrong in (
        {},
        {"distinct_ids": ["d-0"], "ids": [str(uuid.uuid4())]},
        {"distinct_ids": [f"d-{i}" for i in range(1001)]},
    ):
        status, body, _ = _api(bulk, "POST", body=wrong)
        assert status == 400 and body["type"] == "validation_error", (wrong, body)
    assert len(standin.persons) == 3  # nothing deleted by a refused call
    status, body, _ = _api(bulk, "POST", body=wanted)
    assert status == 202 and body == {
        "persons_found": 2,
        "persons_deleted": 2,
        "events_queued_for_deletion": True,
        "recordings_queued_for_deletion": False,
        "deletion_errors": [],
    }
    assert [e["distinct_id"] for e in standin.received()] == ["d-2"]  # with their events
    status, body, _ = _api(bulk, "POST", body=wanted)  # again: found none, fine
    assert status == 202 and body["persons_found"] == 0
    (left,) = standin.persons.values()
    status, body, _ = _api(bulk, "POST", body={"ids": [left["uuid"]]})  # by person uuid
    assert status == 202 and body["persons_deleted"] == 1 and standin.persons == {}
    assert [e["distinct_id"] for e in standin.received()] == ["d-2"]  # events kept
    standin.fail_api_next(429, retry_after="4")
    status, _, headers = _api(bulk, "POST", body=wanted)
    assert status == 429 and headers["retry-after"] == "4"


def test_standin_throttles_the_private_api() -> None:
    server = PosthogStandIn(api_rate_per_minute=2).start()
    try:
        persons = f"{server.url}/api/projects/{DEFAULT_PROJECT_ID}/persons/"
        assert [_api(persons)[0] for _ in range(2)] == [200, 200]
        status, body, headers = _api(persons)
        assert status == 429 and body["type"] == "throttled_error"
        assert 1 <= int(headers["retry-after"]) <= 61
    finally:
        server.stop()


def test_the_development_pseudonym_key_is_refused_outside_a_developer_machine(
    tmp_path: Path,
) -> None:
    """A cluster (only the public JWKS mounted) must bring its own pseudonym key: the public
    development key would let anyone recompute a customer's PostHog id from a Shopify id."""
    from loyalnest.services.event_tracking.service import EventTrackingSettings, _pseudonyms

    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    with pytest.raises(ValueError, match="LOYALNEST_EVENT_TRACKING_PSEUDONYM_KEY is required"):
        _pseudonyms(EventTrackingSettings(jwt_jwks_path=jwks))
    key = base64.b64encode(bytes(range(32))).decode()
    given = _pseudonyms(EventTrackingSettings(jwt_jwks_path=jwks, event_tracking_pseudonym_key=key))
    assert given.of("m", "1") == Pseudonyms(bytes(range(32))).of("m", "1")

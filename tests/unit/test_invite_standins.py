"""The Klaviyo, Postscript and SES stand-ins answer as their providers document (DESIGN §9):
auth errors, required headers and fields, Klaviyo's unique_id dedupe, 429 with Retry-After
and no RateLimit-* headers, SES through boto3's own SigV4 signing and error parsing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from loyalnest.devstack.standins import klaviyo, postscript, ses
from loyalnest.devstack.standins.base import StandIn


@pytest.fixture
def started(request: pytest.FixtureRequest) -> Iterator[StandIn]:
    standin: StandIn = request.param().start()
    yield standin
    standin.stop()


def _event(unique_id: str = "inv-1") -> dict[str, Any]:
    return {
        "data": {
            "type": "event",
            "attributes": {
                "properties": {"referral_code": "REF-1"},
                "unique_id": unique_id,
                "metric": {"data": {"type": "metric", "attributes": {"name": "Referral Invite"}}},
                "profile": {"data": {"type": "profile", "attributes": {"email": "a@b.co"}}},
            },
        }
    }


KLAVIYO_HEADERS = {
    "Authorization": f"Klaviyo-API-Key {klaviyo.DEFAULT_API_KEY}",
    "revision": "2026-10-15",
}


@pytest.mark.parametrize("started", [klaviyo.KlaviyoStandIn], indirect=True)
def test_klaviyo_create_event(started: klaviyo.KlaviyoStandIn) -> None:
    url = f"{started.url}/api/events"
    assert httpx.post(url, json=_event(), headers={"revision": "2026-10-15"}).status_code == 401
    unknown_key = httpx.post(url, json=_event(), headers={"Authorization": "Klaviyo-API-Key x"})
    assert unknown_key.status_code == 401
    missing = httpx.post(url, json=_event(), headers={**KLAVIYO_HEADERS, "revision": ""})
    assert missing.status_code == 400 and missing.json()["errors"][0]["detail"]
    retired = httpx.post(url, json=_event(), headers={**KLAVIYO_HEADERS, "revision": "2023-02-22"})
    assert retired.status_code == 410
    first = httpx.post(url, json=_event(), headers=KLAVIYO_HEADERS)
    assert first.status_code == 202 and first.content == b""
    # The same unique_id for the same profile and metric is recorded once.
    assert httpx.post(url, json=_event(), headers=KLAVIYO_HEADERS).status_code == 202
    assert len(started.accepted) == 1
    started.fail_next(429, retry_after="2")
    throttled = httpx.post(url, json=_event("inv-2"), headers=KLAVIYO_HEADERS)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "2"
    assert not any(h.lower().startswith("ratelimit-") for h in throttled.headers)
    assert throttled.json()["errors"][0]["code"] == "throttled"


@pytest.mark.parametrize("started", [postscript.PostscriptStandIn], indirect=True)
def test_postscript_message_requests(started: postscript.PostscriptStandIn) -> None:
    url = f"{started.url}/api/v2/message_requests"
    auth = {"Authorization": f"Bearer {postscript.DEFAULT_API_KEY}"}
    assert httpx.post(url, json={"phone": "+14155550123", "body": "hi"}).status_code == 401
    bad = httpx.post(url, json={"phone": "4155550123", "body": "hi"}, headers=auth)
    assert bad.status_code == 400 and "E.164" in bad.json()["errors"][0]["msg"]
    sent = httpx.post(url, json={"phone": "+14155550123", "body": "hi"}, headers=auth)
    assert sent.status_code == 202 and sent.json()["status"] == "processing"
    started.fail_next(429)
    throttled = httpx.post(url, json={"phone": "+14155550123", "body": "hi"}, headers=auth)
    assert throttled.status_code == 429 and throttled.json()["error_code"] == 3002


@pytest.mark.parametrize("started", [ses.SesStandIn], indirect=True)
def test_ses_send_email_through_boto3(started: ses.SesStandIn) -> None:
    def client(key_id: str) -> Any:
        return boto3.client(
            "sesv2",
            endpoint_url=started.url,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key="secret",
            config=Config(retries={"total_max_attempts": 1}),
        )

    email = {
        "FromEmailAddress": "from@example.com",
        "Destination": {"ToAddresses": ["to@example.com"]},
        "Content": {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}},
    }
    sent = client(ses.DEFAULT_ACCESS_KEY_ID).send_email(**email)
    assert sent["MessageId"] and len(started.accepted) == 1
    with pytest.raises(ClientError) as denied:
        client("AKIAUNKNOWN").send_email(**email)
    assert denied.value.response["Error"]["Code"] == "UnrecognizedClientException"
    started.fail_next(429)
    with pytest.raises(ClientError) as throttled:
        client(ses.DEFAULT_ACCESS_KEY_ID).send_email(**email)
    assert throttled.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert len(started.accepted) == 1

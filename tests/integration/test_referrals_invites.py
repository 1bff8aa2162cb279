"""Referral invites end to end (issue 16 item 6): SendInvite through a real Envoy queues the
invite, Referrals' send job delivers it to the Klaviyo, Postscript and SES stand-ins, and the
delivery shows in GetReferralStatus and stats; failures reach the real broker as
email_event.created (FAILED), which Event Tracking maps to `notification_failed`. The daily
caps come from Core's referral program (PATCH through Envoy → program_settings.updated).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from loyalnest.devstack.standins import klaviyo, postscript, ses
from loyalnest.gen.events.v1 import admin_features_pb2, envelope_pb2
from loyalnest.services.event_tracking.consumers import MAPPINGS
from tests.integration.conftest import eventually
from tests.integration.test_gateway_validate import http
from tests.integration.test_gdpr_erasure import kafka_records
from tests.integration.test_referrals_flow import Stack, referrals_stack

pytestmark = pytest.mark.integration


@pytest.fixture
def standins() -> Iterator[
    tuple[klaviyo.KlaviyoStandIn, postscript.PostscriptStandIn, ses.SesStandIn]
]:
    started = (
        klaviyo.KlaviyoStandIn().start(),
        postscript.PostscriptStandIn().start(),
        ses.SesStandIn().start(),
    )
    yield started  # type: ignore[misc]
    for standin in started:
        standin.stop()


@pytest.fixture
async def stack(
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    standins: tuple[klaviyo.KlaviyoStandIn, postscript.PostscriptStandIn, ses.SesStandIn],
) -> AsyncIterator[Stack]:
    k, p, s = standins
    keys = {
        "*": {
            "klaviyo_api_key": klaviyo.DEFAULT_API_KEY,
            "postscript_api_key": postscript.DEFAULT_API_KEY,
        }
    }
    async with referrals_stack(
        database_url,
        redis_url,
        tmp_path,
        referrals_invite_interval_seconds=0.1,
        referrals_provider_keys=json.dumps(keys),
        # Short timeouts keep the retries quick; the attempts are the production three.
        referrals_provider_timeout_seconds=1.0,
        klaviyo_base_url=k.url,
        postscript_base_url=p.url,
        ses_endpoint_url=s.url,
        ses_access_key_id=ses.DEFAULT_ACCESS_KEY_ID,
        ses_secret_access_key=ses.DEFAULT_SECRET_ACCESS_KEY,
        ses_from_address="invites@referrals-flow.example",
    ) as running_stack:
        yield running_stack


async def invite(stack: Stack, key: str, **fields: Any) -> Any:
    return await stack.call("POST", "/v1/api/referrals/invite", {"idempotency_key": key, **fields})


async def delivered(stack: Stack, referral_id: str, invite_id: str) -> dict[str, Any] | None:
    status = await stack.call("GET", f"/v1/api/referrals/status?referral_id={referral_id}")
    for found in status.get("invites", []):
        if found["invite_id"] == invite_id and found["status"] != "INVITE_STATUS_QUEUED":
            return dict(found)
    return None


async def test_invites_are_sent_by_klaviyo_postscript_and_ses_once(
    stack: Stack,
    standins: tuple[klaviyo.KlaviyoStandIn, postscript.PostscriptStandIn, ses.SesStandIn],
) -> None:
    k, p, s = standins
    # Email through Klaviyo: queued in the answer, sent by the job, one event with unique_id.
    first = await invite(
        stack,
        "mail-1",
        referrer_id="1",
        channel="INVITE_CHANNEL_EMAIL",
        friend_email="Friend@Example.com",
        shop="referrals-flow.myshopify.com",
    )
    assert first["invite"]["status"] == "INVITE_STATUS_QUEUED"
    assert "friend_email" not in json.dumps(first)  # the address is not echoed back
    referral_id, invite_id = first["referral"]["referral_id"], first["invite"]["invite_id"]
    # A retry of the call is the same invite: nothing more is sent.
    again = await invite(
        stack,
        "mail-1",
        referrer_id="1",
        channel="INVITE_CHANNEL_EMAIL",
        friend_email="Friend@Example.com",
        shop="referrals-flow.myshopify.com",
    )
    assert again["invite"]["invite_id"] == invite_id
    sent = await eventually(lambda: delivered(stack, referral_id, invite_id), 20, "the email")
    assert sent["status"] == "INVITE_STATUS_SENT" and sent["provider"] == "klaviyo"
    assert not sent.get("fallback_used") and sent.get("send_time")
    assert [e["unique_id"] for e in k.accepted] == [invite_id]
    event = k.accepted[0]
    assert event["profile"]["data"]["attributes"]["email"] == "friend@example.com"
    assert first["referral"]["code"] in event["properties"]["referral_code"]
    assert s.accepted == []

    # SMS through Postscript, E.164; a 429 with Retry-After first is waited out and retried.
    p.fail_next(429, retry_after="1")
    sms = await invite(
        stack, "sms-1", referrer_id="1", channel="INVITE_CHANNEL_SMS", friend_phone="+14155550123"
    )
    sms_id = sms["invite"]["invite_id"]
    sent = await eventually(lambda: delivered(stack, referral_id, sms_id), 20, "the SMS")
    assert sent["status"] == "INVITE_STATUS_SENT" and sent["provider"] == "postscript"
    assert [m["phone"] for m in p.accepted] == ["+14155550123"]
    assert p.statuses[:2] == [429, 202]

    # Klaviyo down (5xx on all three attempts): SES sends the email, exactly once.
    k.fail_next(503, count=3)
    down = await invite(
        stack,
        "mail-2",
        referrer_id="1",
        channel="INVITE_CHANNEL_EMAIL",
        friend_email="other@example.com",
    )
    down_id = down["invite"]["invite_id"]
    sent = await eventually(lambda: delivered(stack, referral_id, down_id), 30, "the fallback")
    assert sent["status"] == "INVITE_STATUS_SENT" and sent["provider"] == "ses"
    assert sent["fallback_used"] is True
    assert k.statuses.count(503) == 3
    assert [m["Destination"]["ToAddresses"] for m in s.accepted] == [["other@example.com"]]
    assert s.accepted[0]["EmailTags"] == [{"Name": "invite_id", "Value": down_id}]

    # Both down: the invite fails with its reason, and email_event.created (FAILED) is
    # published for Event Tracking.
    k.fail_next(503, count=3)
    s.fail_next(500)
    failed = await invite(
        stack,
        "mail-3",
        referrer_id="1",
        channel="INVITE_CHANNEL_EMAIL",
        friend_email="third@example.com",
    )
    failed_id = failed["invite"]["invite_id"]
    outcome = await eventually(lambda: delivered(stack, referral_id, failed_id), 30, "failure")
    assert outcome["status"] == "INVITE_STATUS_FAILED" and outcome["fallback_used"] is True
    assert "klaviyo 503" in outcome["failure_reason"] and "ses" in outcome["failure_reason"]
    assert len(s.accepted) == 1  # SES was called once for it, and refused

    stats = await stack.call("GET", "/v1/api/referrals/stats")
    assert stats["invites_sent"] == "3" and stats["invites_failed"] == "1"

    def failures() -> list[admin_features_pb2.EmailEventCreated]:
        found = []
        for _topic, _, value in kafka_records(stack.bootstrap_servers):
            envelope = envelope_pb2.Envelope.FromString(value)
            if envelope.event_type != "email_event.created":
                continue
            event = admin_features_pb2.EmailEventCreated()
            envelope.payload.Unpack(event)
            if event.status == admin_features_pb2.EMAIL_STATUS_FAILED:
                found.append(event)
        return found

    async def published() -> list[admin_features_pb2.EmailEventCreated]:
        return failures()

    events = await eventually(published, 30, "email_event.created FAILED on the broker")
    assert [(e.email_event_id, e.provider, e.customer_id) for e in events] == [
        (failed_id, "ses", "1")
    ]
    _payload_type, mapping = MAPPINGS["email_event.created"]
    assert mapping(events[0]) == (
        "notification_failed",
        "1",
        {"provider": "ses", "template_id": "referral_invite"},
    )


async def test_bad_invites_and_daily_caps(stack: Stack) -> None:
    for body, field in (
        ({"channel": "INVITE_CHANNEL_EMAIL", "friend_email": "not-an-address"}, "friend_email"),
        ({"channel": "INVITE_CHANNEL_SMS", "friend_phone": "4155550123"}, "friend_phone"),
        ({"friend_email": "a@example.com"}, "channel"),
    ):
        response = await http(
            "POST",
            stack.gateway.url + "/v1/api/referrals/invite",
            headers=stack.headers,
            json_body={"referrer_id": "5", "idempotency_key": uuid.uuid4().hex, **body},
        )
        assert response.status == 400, response.body
        assert field in response.body.decode()

    await stack.call(
        "PATCH",
        "/v1/api/core/settings",
        {
            "settings": {
                "referral": {
                    "daily_invites_per_referrer": 2,
                    "daily_invites_per_merchant": 3,
                    # A milestone only to tell when Referrals has this program (progress).
                    "milestones": [{"referrals": 5, "bonus_points": "1"}],
                }
            },
            "update_mask": "referral",
            "idempotency_key": "invite-caps",
        },
    )

    async def referrals_has_it() -> bool:
        progress = await stack.call("GET", "/v1/api/referrals/progress?referrer_id=7")
        return bool(progress.get("next_milestone") == "5")

    await eventually(referrals_has_it, 60, "Referrals to copy Core's referral program")

    async def sms(referrer: str, key: str) -> Any:
        return await http(
            "POST",
            stack.gateway.url + "/v1/api/referrals/invite",
            headers=stack.headers,
            json_body={
                "referrer_id": referrer,
                "channel": "INVITE_CHANNEL_SMS",
                "friend_phone": "+14155550100",
                "idempotency_key": key,
            },
        )

    assert (await sms("7", "cap-7a")).status == 200
    assert (await sms("7", "cap-7b")).status == 200
    refused = await sms("7", "cap-7c")
    assert refused.status == 429, refused.body
    assert "2 invites per referrer per day" in refused.body.decode()
    # Referrer 8's first reaches the merchant's 3; referrer 9 is then refused by it.
    assert (await sms("8", "cap-8a")).status == 200
    refused = await sms("9", "cap-9a")
    assert refused.status == 429, refused.body
    assert "3 invites per merchant per day" in refused.body.decode()
    # A retry of an accepted invite is still its answer, cap or not.
    assert (await sms("7", "cap-7a")).status == 200

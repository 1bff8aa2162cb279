"""The invite send job: delivers queued invites, never in the request path.

Email goes to Klaviyo as a "Referral Invite" event (its flow sends the email), with the
invite id as `unique_id` so a repeated call records one event; when Klaviyo keeps failing
(its three attempts spent, or refused) the email goes through AWS SES v2 `SendEmail`
instead, at most once per invite: SES has no idempotency, so the invite's SES claim is
committed before the call and never taken twice. SMS goes to Postscript (E.164 number).
Each HTTP call has a 5 s timeout and 3 attempts with jittered exponential backoff honouring
`Retry-After` (platform/http.py, tenacity). Outcomes are recorded per invite and announced as
email_event.created (FAILED ones are what Event Tracking follows).

Keys and addresses are never logged: an invite is named by its id.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from prometheus_client import Counter
from pydantic import SecretStr

from loyalnest.platform.http import HttpClient
from loyalnest.platform.observability import get_logger
from loyalnest.services.referrals.domain import referral_link
from loyalnest.services.referrals.invites import DueInvite, InviteStatus, InviteStore
from loyalnest.services.referrals.status_feed import StatusFeed

log = get_logger(__name__)

SENDS = Counter(
    "loyalnest_referrals_invites_total",
    "Referral invites by provider and outcome (sent, failed).",
    ["provider", "outcome"],
)
BATCH = 50
# Long enough for a Klaviyo call's attempts, then SES: another replica waits it out.
LEASE = timedelta(seconds=60)
KLAVIYO_REVISION = "2026-10-15"
INVITE_METRIC = "Referral Invite"


@dataclass(frozen=True)
class ProviderKeys:
    klaviyo_api_key: str = ""
    postscript_api_key: str = ""


class Credentials:
    """Provider keys per merchant from the service's secret settings: a JSON object
    `{"<merchant_id>": {"klaviyo_api_key": ..., "postscript_api_key": ...}, "*": {...}}`
    ("*": every other merchant). Kept as SecretStr until used, never logged."""

    def __init__(self, raw: SecretStr | None) -> None:
        parsed: dict[str, Any] = json.loads(raw.get_secret_value()) if raw else {}
        self._keys = {
            merchant: ProviderKeys(
                klaviyo_api_key=str(keys.get("klaviyo_api_key", "")),
                postscript_api_key=str(keys.get("postscript_api_key", "")),
            )
            for merchant, keys in parsed.items()
        }

    def of(self, merchant_id: str) -> ProviderKeys:
        return self._keys.get(merchant_id) or self._keys.get("*") or ProviderKeys()


@dataclass(frozen=True)
class SesSettings:
    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: SecretStr
    from_address: str


def _message(invite: DueInvite) -> tuple[str, str]:
    link = referral_link(invite.shop, invite.code)
    subject = "A friend invited you"
    return subject, f"A friend invited you to {invite.shop}: use code {invite.code} at {link}"


def _reason(response: httpx.Response) -> str:
    """A refusal as `<status>: <provider's own words>` (never the request: it has keys)."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code}"
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        detail = errors[0].get("detail") or errors[0].get("msg") or errors[0].get("title")
        return f"{response.status_code}: {detail}"
    if isinstance(body, dict) and "error_message" in body:
        return f"{response.status_code}: {body['error_message']}"
    return f"{response.status_code}"


def _new_ses_client(ses: SesSettings) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "sesv2",
        endpoint_url=ses.endpoint_url,
        region_name=ses.region,
        aws_access_key_id=ses.access_key_id,
        aws_secret_access_key=ses.secret_access_key.get_secret_value(),
        # One attempt: a retry could send a second email (SES has no idempotency).
        config=BotoConfig(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=5),
    )


class InviteSender:
    def __init__(
        self,
        store: InviteStore,
        *,
        credentials: Credentials,
        klaviyo: HttpClient,
        klaviyo_base_url: str,
        postscript: HttpClient,
        postscript_base_url: str,
        ses: SesSettings | None,
        feed: StatusFeed | None = None,
    ) -> None:
        self._store = store
        # Live status: a delivery outcome moves the referral's stream.
        self._feed = feed
        self._credentials = credentials
        self._klaviyo = klaviyo
        self._klaviyo_url = klaviyo_base_url.rstrip("/")
        self._postscript = postscript
        self._postscript_url = postscript_base_url.rstrip("/")
        self._ses = ses
        # Built at the first fallback (_ses_client_for): boto3 and the SES model it loads
        # cost ~22 MiB of RSS, held for a path taken only when Klaviyo fails.
        self._ses_client: Any = None

    async def send_due(self) -> int:
        due = await self._store.take_due(BATCH, LEASE)
        for invite in due:
            try:
                await self._send(invite)
            except Exception:
                # Stays queued: the lease runs out and the next pass tries again.
                log.exception("sending an invite failed", invite_id=invite.invite_id)
        return len(due)

    async def _send(self, invite: DueInvite) -> None:
        keys = self._credentials.of(invite.merchant_id)
        if invite.channel == "sms":
            await self._sms(invite, keys)
        else:
            await self._email(invite, keys)

    async def _finish(
        self,
        invite: DueInvite,
        status: InviteStatus,
        provider: str,
        *,
        fallback: bool = False,
        reason: str = "",
    ) -> None:
        SENDS.labels(provider, status.value).inc()
        if status is InviteStatus.FAILED:
            log.warning(
                "invite failed", invite_id=invite.invite_id, provider=provider, reason=reason
            )
        finished = await self._store.finish(
            invite, status, provider=provider, fallback_used=fallback, reason=reason
        )
        if finished and self._feed is not None:
            await self._feed.announce([invite.referral_id])

    async def _sms(self, invite: DueInvite, keys: ProviderKeys) -> None:
        if not keys.postscript_api_key:
            # Failed at once rather than queued unseen: the merchant sees why in status.
            await self._finish(
                invite,
                InviteStatus.FAILED,
                "postscript",
                reason="postscript: no API key configured for this merchant",
            )
            return
        _, text = _message(invite)
        try:
            response = await self._postscript.post_json(
                f"{self._postscript_url}/api/v2/message_requests",
                {"phone": invite.recipient, "body": text, "category": "promotional"},
                headers={"Authorization": f"Bearer {keys.postscript_api_key}"},
            )
        except httpx.TransportError as error:
            await self._finish(
                invite, InviteStatus.FAILED, "postscript", reason=f"unreachable: {error!r}"
            )
            return
        if response.status_code == 202:
            await self._finish(invite, InviteStatus.SENT, "postscript")
        else:
            await self._finish(invite, InviteStatus.FAILED, "postscript", reason=_reason(response))

    async def _email(self, invite: DueInvite, keys: ProviderKeys) -> None:
        klaviyo_error = "klaviyo: no API key for this merchant"
        # An earlier pass claimed SES and died before recording: Klaviyo is not asked again,
        # SES is not called again (it may have sent): failed, with what is known.
        if invite.ses_claimed:
            await self._finish(
                invite,
                InviteStatus.FAILED,
                "ses",
                fallback=True,
                reason="ses outcome unknown (interrupted); not sent again",
            )
            return
        if keys.klaviyo_api_key:
            try:
                response = await self._klaviyo.post_json(
                    f"{self._klaviyo_url}/api/events",
                    self._klaviyo_event(invite),
                    headers={
                        "Authorization": f"Klaviyo-API-Key {keys.klaviyo_api_key}",
                        "revision": KLAVIYO_REVISION,
                        "accept": "application/vnd.api+json",
                        "content-type": "application/vnd.api+json",
                    },
                )
            except httpx.TransportError as error:
                klaviyo_error = f"klaviyo unreachable: {error!r}"
            else:
                if response.status_code == 202:
                    await self._finish(invite, InviteStatus.SENT, "klaviyo")
                    return
                klaviyo_error = f"klaviyo {_reason(response)}"
        await self._fallback(invite, klaviyo_error)

    @staticmethod
    def _klaviyo_event(invite: DueInvite) -> dict[str, Any]:
        return {
            "data": {
                "type": "event",
                "attributes": {
                    "properties": {
                        "referral_code": invite.code,
                        "referral_link": referral_link(invite.shop, invite.code),
                        "shop": invite.shop,
                    },
                    # Klaviyo records one event per profile, metric and unique_id.
                    "unique_id": invite.invite_id,
                    "metric": {"data": {"type": "metric", "attributes": {"name": INVITE_METRIC}}},
                    "profile": {
                        "data": {"type": "profile", "attributes": {"email": invite.recipient}}
                    },
                },
            }
        }

    async def _ses_client_for(self, ses: SesSettings) -> Any:
        if self._ses_client is None:
            # Two first fallbacks at once build two equal clients; either will do.
            self._ses_client = await asyncio.to_thread(_new_ses_client, ses)
        return self._ses_client

    async def _fallback(self, invite: DueInvite, klaviyo_error: str) -> None:
        if self._ses is None:
            await self._finish(invite, InviteStatus.FAILED, "klaviyo", reason=klaviyo_error)
            return
        ses = self._ses
        # Before the claim: a client that cannot be built leaves the invite unclaimed.
        client = await self._ses_client_for(ses)
        from botocore.exceptions import BotoCoreError, ClientError

        if not await self._store.claim_ses(invite):
            return  # another pass holds SES for it and records the outcome
        subject, text = _message(invite)
        send: Callable[[], Any] = lambda: client.send_email(  # noqa: E731
            FromEmailAddress=ses.from_address,
            Destination={"ToAddresses": [invite.recipient]},
            Content={
                "Simple": {
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {"Text": {"Data": text, "Charset": "UTF-8"}},
                }
            },
            EmailTags=[{"Name": "invite_id", "Value": invite.invite_id}],
        )
        try:
            # boto3 is synchronous: off the event loop.
            await asyncio.to_thread(send)
        except ClientError as error:
            err = error.response.get("Error", {})
            reason = f"{klaviyo_error}; ses {err.get('Code', '?')}: {err.get('Message', '')}"
            await self._finish(invite, InviteStatus.FAILED, "ses", fallback=True, reason=reason)
            return
        except BotoCoreError as error:
            reason = f"{klaviyo_error}; ses unreachable: {error}"
            await self._finish(invite, InviteStatus.FAILED, "ses", fallback=True, reason=reason)
            return
        await self._finish(invite, InviteStatus.SENT, "ses", fallback=True)

    async def run(self, interval_seconds: float) -> None:
        while True:
            try:
                full = await self.send_due() >= BATCH
            except Exception:
                log.exception("the invite send job failed; retrying next pass")
                full = False
            if not full:
                await asyncio.sleep(interval_seconds)

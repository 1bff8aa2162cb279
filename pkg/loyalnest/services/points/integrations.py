"""Merchant integrations: the secrets Points issues to a merchant's integration (a reviews
app, a quiz, ...) and the signed custom activities it reports with them (issue 21).

    CreateIntegration / RotateIntegrationSecret   the merchant (token, `points:integrations`)
                          gets a random 256-bit secret, in that answer only. Points keeps it
                          AES-256-GCM encrypted (platform/crypto.FieldCipher, bound to the
                          integration and the secret's generation): an HMAC is checked with
                          the secret itself, so a hash would not do. A rotation keeps the
                          replaced secret valid for a grace period, so no report is lost
                          while the integration switches.
    RecordSignedActivity  public; the request proves itself as a Shopify webhook does
                          (platform/signatures.py), with a timestamp signed along:
                              X-LoyalNest-Integration-Id: <integration_id>
                              X-LoyalNest-Timestamp:      <Unix seconds>
                              X-LoyalNest-Hmac-SHA256:    base64(HMAC-SHA256(secret,
                                                              "<timestamp>." + raw body))
                          A timestamp outside the replay window is refused, so a captured
                          request cannot be sent again later; within it, a replay names the
                          same occurrence_id and earns nothing more (earning.Activities).

Every refusal before the signature is verified says the same ("signature rejected"), so an
unsigned caller learns neither which integration ids exist nor what else is wrong.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from loyalnest.platform.crypto import FieldCipher, InvalidCiphertext
from loyalnest.platform.errors import (
    Aborted,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from loyalnest.platform.idempotency import IdempotencyKeyReused
from loyalnest.platform.mongo import to_millis
from loyalnest.platform.observability import get_logger
from loyalnest.platform.signatures import MalformedSignature, hmac_sha256_base64, matches_any
from loyalnest.platform.validation import IDENTIFIER_RE

Clock = Callable[[], datetime]
log = get_logger(__name__)

INTEGRATION_HEADER = "x-loyalnest-integration-id"
TIMESTAMP_HEADER = "x-loyalnest-timestamp"
SIGNATURE_HEADER = "x-loyalnest-hmac-sha256"
# Secrets are recognisable in logs and secret scanners: "lnis_" (LoyalNest integration secret).
SECRET_PREFIX = "lnis_"
SECRET_BYTES = 32
MAX_NAME_LENGTH = 100
MAX_BODY_BYTES = 4096
ACTIVITY_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
_IDS = uuid.UUID("5b0c3f59-8c2e-4a57-9d3c-6f1e0a2b7c41")


@dataclass(frozen=True)
class Integration:
    merchant_id: str
    integration_id: str
    name: str
    generation: int
    # Ciphertexts (FieldCipher) of the current secret and of the one the last rotation replaced.
    secret: bytes
    previous_secret: bytes | None
    previous_valid_until: datetime | None
    # The idempotency key of the call that set the current secret (a create or a rotation).
    secret_key: str
    created_at: datetime
    rotated_at: datetime


class IntegrationStore(Protocol):
    async def create_integration(self, integration: Integration) -> Integration:
        """Inserts `integration` unless its id exists; returns the stored one."""
        ...

    async def get_integration(self, integration_id: str) -> Integration | None:
        """Whichever merchant's: the signed request names only the integration."""
        ...

    async def list_integrations(self, merchant_id: str) -> list[Integration]:
        """Oldest first."""
        ...

    async def rotate_integration(self, rotated: Integration) -> bool:
        """Stores `rotated` if the merchant's integration is still at generation
        `rotated.generation - 1`; False when another rotation came first."""
        ...


@dataclass(frozen=True)
class SignedActivity:
    merchant_id: str
    integration_id: str
    customer_id: str
    activity: str
    occurrence_id: str
    occurred_at: datetime | None


class IntegrationNotFound(NotFound):
    def __init__(self, integration_id: str) -> None:
        super().__init__("integration", integration_id)


class BadActivitySignature(Unauthenticated):
    def __init__(self, reason: str) -> None:
        super().__init__(f"activity signature rejected: {reason}")


class Integrations:
    def __init__(
        self,
        store: IntegrationStore,
        cipher: FieldCipher,
        *,
        replay_window_seconds: float = 300.0,
        rotation_grace_seconds: float = 86400.0,
        clock: Clock,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._window = replay_window_seconds
        self._grace = timedelta(seconds=rotation_grace_seconds)
        self._clock = clock

    # ---- the merchant's API --------------------------------------------------------------

    async def create(self, merchant_id: str, name: str, key: str) -> tuple[Integration, str]:
        """(the integration, its secret; "" on a replay after a rotation)."""
        integration_id = str(uuid.uuid5(_IDS, f"{merchant_id}\0{key}"))
        secret = _new_secret()
        now = to_millis(self._clock())
        stored = await self._store.create_integration(
            Integration(
                merchant_id=merchant_id,
                integration_id=integration_id,
                name=name,
                generation=1,
                secret=self._seal(secret, integration_id, 1),
                previous_secret=None,
                previous_valid_until=None,
                secret_key=key,
                created_at=now,
                rotated_at=now,
            )
        )
        if stored.merchant_id != merchant_id or stored.name != name:
            raise IdempotencyKeyReused()
        if stored.generation == 1 and stored.secret_key == key:
            return stored, self._open(stored.secret, integration_id, 1)
        return stored, ""

    async def rotate(
        self, merchant_id: str, integration_id: str, key: str, *, revoke_previous: bool = False
    ) -> tuple[Integration, str]:
        """A new secret; the replaced one valid for the grace period, or not at all with
        `revoke_previous` (a leaked secret: then nothing of it is kept)."""
        current = await self._owned(merchant_id, integration_id)
        if current.secret_key == key:  # a retry of the rotation that set this secret
            return current, self._open(current.secret, integration_id, current.generation)
        secret = _new_secret()
        now = to_millis(self._clock())
        generation = current.generation + 1
        rotated = replace(
            current,
            generation=generation,
            secret=self._seal(secret, integration_id, generation),
            previous_secret=None if revoke_previous else current.secret,
            previous_valid_until=None if revoke_previous else now + self._grace,
            secret_key=key,
            rotated_at=now,
        )
        if await self._store.rotate_integration(rotated):
            return rotated, secret
        # Another rotation won the race: a retry of ours finds its own key, another answers
        # with the secret it set, never ours, which was not stored.
        latest = await self._owned(merchant_id, integration_id)
        if latest.secret_key == key:
            return latest, self._open(latest.secret, integration_id, latest.generation)
        raise Aborted(
            "the integration's secret was rotated by another call at the same time: retry"
        )

    async def listing(self, merchant_id: str) -> list[Integration]:
        return await self._store.list_integrations(merchant_id)

    async def _owned(self, merchant_id: str, integration_id: str) -> Integration:
        found = await self._store.get_integration(integration_id)
        if found is None or found.merchant_id != merchant_id:
            raise IntegrationNotFound(integration_id)
        return found

    # ---- the integration's signed request ------------------------------------------------

    async def verify(self, headers: Mapping[str, str], body: bytes) -> SignedActivity:
        """The activity of a request signed by one of the integration's valid secrets, within
        the replay window; BadActivitySignature (UNAUTHENTICATED) otherwise, and
        INVALID_ARGUMENT for a signed body that is not an activity."""
        integration_id = headers.get(INTEGRATION_HEADER, "").strip()
        timestamp = headers.get(TIMESTAMP_HEADER, "").strip()
        signature = headers.get(SIGNATURE_HEADER, "").strip()
        if not (integration_id and timestamp and signature):
            missing = [
                name
                for name, value in (
                    (INTEGRATION_HEADER, integration_id),
                    (TIMESTAMP_HEADER, timestamp),
                    (SIGNATURE_HEADER, signature),
                )
                if not value
            ]
            raise BadActivitySignature(f"missing {', '.join(missing)}")
        integration = await self._known(integration_id)
        secrets = self._valid_secrets(integration) if integration is not None else []
        try:
            matched = matches_any(signed_message(timestamp, body), signature, secrets)
        except MalformedSignature:
            raise BadActivitySignature(f"{SIGNATURE_HEADER} is not base64") from None
        if integration is None or not matched:
            raise BadActivitySignature("unknown integration or the HMAC does not match")
        # Signed, so the timestamp is the integration's: only now is it worth reading.
        try:
            sent_at = datetime.fromtimestamp(int(timestamp), UTC)
        except (ValueError, OverflowError, OSError):
            raise BadActivitySignature(f"{TIMESTAMP_HEADER} is not Unix seconds") from None
        skew = abs((self._clock() - sent_at).total_seconds())
        if skew > self._window:
            raise BadActivitySignature(
                f"{TIMESTAMP_HEADER} is {skew:.0f} s from now, outside the"
                f" {self._window:.0f} s replay window: sign the request again"
            )
        return _activity(integration, body, latest=self._clock() + timedelta(seconds=self._window))

    async def _known(self, integration_id: str) -> Integration | None:
        try:
            uuid.UUID(integration_id)
        except ValueError:
            return None  # never reaches the store; the same answer as an unknown id
        return await self._store.get_integration(integration_id)

    def _valid_secrets(self, integration: Integration) -> list[bytes]:
        sealed = [(integration.secret, integration.generation)]
        until = integration.previous_valid_until
        if integration.previous_secret is not None and until is not None and self._clock() < until:
            sealed.append((integration.previous_secret, integration.generation - 1))
        secrets = []
        for blob, generation in sealed:
            try:
                secrets.append(self._open(blob, integration.integration_id, generation).encode())
            except InvalidCiphertext:
                # A key no longer configured (LOYALNEST_POINTS_INTEGRATION_SECRET_KEY changed
                # without keeping the old one): that secret cannot be checked; rotate it.
                log.error(
                    "integration secret undecryptable", integration=integration.integration_id
                )
        return secrets

    def _seal(self, secret: str, integration_id: str, generation: int) -> bytes:
        return self._cipher.encrypt(secret, context=_context(integration_id, generation))

    def _open(self, blob: bytes, integration_id: str, generation: int) -> str:
        return self._cipher.decrypt_text(blob, context=_context(integration_id, generation))


def signed_message(timestamp: str, body: bytes) -> bytes:
    """What the signature covers: the timestamp, a ".", and the raw body."""
    return timestamp.encode() + b"." + body


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-LoyalNest-Hmac-SHA256 an integration sends (for its developers, the tests and
    README's example)."""
    return hmac_sha256_base64(secret.encode(), signed_message(timestamp, body))


def _new_secret() -> str:
    return SECRET_PREFIX + base64.urlsafe_b64encode(os.urandom(SECRET_BYTES)).decode().rstrip("=")


def _context(integration_id: str, generation: int) -> str:
    return f"points.integrations.secret:{integration_id}:{generation}"


def _activity(integration: Integration, body: bytes, *, latest: datetime) -> SignedActivity:
    """The body's activity; INVALID_ARGUMENT naming each problem (`latest`: the last
    acceptable occurred_at)."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidArgument(
            "invalid activity", [FieldViolation("body", f"at most {MAX_BODY_BYTES} bytes")]
        )
    try:
        payload: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        raise InvalidArgument("invalid activity", [FieldViolation("body", "must be a JSON object")])
    violations: list[FieldViolation] = []

    def text(name: str, pattern: re.Pattern[str], rule: str) -> str:
        value = payload.get(name)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            violations.append(FieldViolation(name, rule))
            return ""
        return value

    identifier = "must be 1-128 characters of letters, digits and _ . : @ -"
    customer_id = text("customer_id", IDENTIFIER_RE, identifier)
    activity = text("activity", ACTIVITY_RE, "must be 1-64 characters of a-z, 0-9, - and _")
    occurrence_id = text("occurrence_id", IDENTIFIER_RE, identifier)
    occurred_at = None
    raw_time = payload.get("occurred_at")
    if raw_time is not None:
        try:
            occurred_at = datetime.fromisoformat(str(raw_time).replace("Z", "+00:00"))
        except ValueError:
            occurred_at = None
        if occurred_at is None or occurred_at.tzinfo is None:
            violations.append(
                FieldViolation("occurred_at", "must be an RFC 3339 time with an offset")
            )
            occurred_at = None
        elif occurred_at > latest:
            violations.append(FieldViolation("occurred_at", "must not be in the future"))
            occurred_at = None
    if violations:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise InvalidArgument(f"invalid activity: {summary}", violations)
    return SignedActivity(
        integration.merchant_id,
        integration.integration_id,
        customer_id,
        activity,
        occurrence_id,
        occurred_at.astimezone(UTC) if occurred_at is not None else None,
    )

"""Idempotency keys for mutating RPCs, in the style of Stripe's.

A retry with the same key returns the first call's result; the same key with different
parameters is rejected. The key is claimed in the same database transaction as the effect,
so a crash between the two cannot leave one without the other, and a failed call (rolled
back) leaves the key free for a retry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from google.protobuf.message import Message
from psycopg import AsyncConnection

from loyalnest.platform.errors import FieldViolation, InvalidArgument

KEY_FIELD = "idempotency_key"


@dataclass(frozen=True)
class IdempotencyKey:
    key: str
    # Hash of the method and every request field except the key itself.
    fingerprint: str

    @classmethod
    def of(
        cls, method: str, request: Message, *, key_field: str = KEY_FIELD, namespace: str = ""
    ) -> IdempotencyKey:
        """The key in `request.<key_field>`; `namespace` keeps keys of another field (e.g. a
        batch id) apart from the merchant's idempotency keys, which share the table."""
        params = type(request)()
        params.CopyFrom(request)
        params.ClearField(key_field)
        digest = hashlib.sha256(method.encode())
        digest.update(b"\0")
        digest.update(params.SerializeToString(deterministic=True))
        return cls(key=namespace + getattr(request, key_field), fingerprint=digest.hexdigest())

    @classmethod
    def internal(cls, key: str, *parts: object) -> IdempotencyKey:
        """A key a service derives for a write of its own (an event's effect, a refund):
        `parts` are what the write does, so one `key` reused for another write is refused."""
        digest = hashlib.sha256("\0".join(map(str, (key, *parts))).encode())
        return cls(key=key, fingerprint=digest.hexdigest())


class IdempotencyKeyReused(InvalidArgument):
    def __init__(self) -> None:
        description = "was already used with different parameters; use a new key"
        super().__init__(f"{KEY_FIELD} {description}", [FieldViolation(KEY_FIELD, description)])


def ensure_same_request(key: IdempotencyKey, stored_fingerprint: str) -> None:
    if stored_fingerprint != key.fingerprint:
        raise IdempotencyKeyReused()


async def claim(conn: AsyncConnection, merchant_id: str, key: IdempotencyKey) -> str | None:
    """Claims `key` inside the caller's transaction.

    Returns None when this call is the first (the caller then performs the effect and calls
    `record`), or the result reference of the earlier call. A concurrent first call holding
    the key makes this wait until it commits or rolls back.
    """
    cursor = await conn.execute(
        "INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_fingerprint)"
        " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (merchant_id, key.key, key.fingerprint),
    )
    if await cursor.fetchone():
        return None
    cursor = await conn.execute(
        "SELECT request_fingerprint, result_ref FROM idempotency_keys"
        " WHERE merchant_id = %s AND idempotency_key = %s",
        (merchant_id, key.key),
    )
    row = await cursor.fetchone()
    if row is None:  # pragma: no cover - the conflicting row is committed by now
        raise RuntimeError("idempotency key vanished while being claimed")
    ensure_same_request(key, row[0])
    return str(row[1])


async def record(
    conn: AsyncConnection, merchant_id: str, key: IdempotencyKey, result_ref: str
) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET result_ref = %s"
        " WHERE merchant_id = %s AND idempotency_key = %s",
        (result_ref, merchant_id, key.key),
    )

"""Idempotency keys for mutating RPCs, in the style of Stripe's.

A retry with the same key returns the first call's result; the same key with different
parameters is rejected. The key is claimed in the same database transaction as the effect,
so a crash between the two cannot leave one without the other, and a failed call (rolled
back) leaves the key free for a retry.

Every idempotent write of a service goes through `write_once`:

    role = await idempotency.write_once(
        pool, merchant_id, key,
        write=insert_role,              # (conn) -> (result, reference to find it again)
        replay=read_role,               # (conn, reference) -> the earlier call's result
        audited=True,                   # audit rows name the caller
        unique_errors={"roles_name": lambda: RoleNameTaken(name)},
    )
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import Message
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from loyalnest.platform import audit
from loyalnest.platform.errors import FieldViolation, InvalidArgument
from loyalnest.platform.postgres import unique_violations

KEY_FIELD = "idempotency_key"
# Namespaces of keys (the `namespace` column, part of the primary key): a client chooses its
# keys freely, so a key a service derives for a write of its own must never be one a client
# can claim first (EarnPoints with key "order:1234" would block order 1234's credit forever).
REQUEST = "request"  # a request's `idempotency_key` field
INTERNAL = "internal"  # keys a service derives itself (IdempotencyKey.internal)
T = TypeVar("T")
# The effect of a first call: its result and the reference a retry finds it again by.
Write = Callable[[AsyncConnection], Awaitable[tuple[T, str]]]
# The result of an earlier call, from the reference its write returned.
Replay = Callable[[AsyncConnection, str], Awaitable[T]]


@dataclass(frozen=True)
class IdempotencyKey:
    key: str
    # Hash of the method and every request field except the key itself.
    fingerprint: str
    # Keys collide only within one namespace (see REQUEST, INTERNAL).
    namespace: str = REQUEST

    @classmethod
    def of(
        cls, method: str, request: Message, *, key_field: str = KEY_FIELD, namespace: str = REQUEST
    ) -> IdempotencyKey:
        """The key in `request.<key_field>`; `namespace` keeps keys of another field (e.g. a
        batch id) apart from the merchant's idempotency keys, which share the table."""
        params = type(request)()
        params.CopyFrom(request)
        params.ClearField(key_field)
        digest = hashlib.sha256(method.encode())
        digest.update(b"\0")
        digest.update(params.SerializeToString(deterministic=True))
        return cls(
            key=getattr(request, key_field), fingerprint=digest.hexdigest(), namespace=namespace
        )

    @classmethod
    def internal(cls, key: str, *parts: object) -> IdempotencyKey:
        """A key a service derives for a write of its own (an event's effect, a refund):
        `parts` are what the write does, so one `key` reused for another write is refused.
        In the INTERNAL namespace, which no client key reaches."""
        digest = hashlib.sha256("\0".join(map(str, (key, *parts))).encode())
        return cls(key=key, fingerprint=digest.hexdigest(), namespace=INTERNAL)


class IdempotencyKeyReused(InvalidArgument):
    def __init__(self) -> None:
        description = "was already used with different parameters; use a new key"
        super().__init__(f"{KEY_FIELD} {description}", [FieldViolation(KEY_FIELD, description)])


def ensure_same_request(key: IdempotencyKey, stored_fingerprint: str) -> None:
    if stored_fingerprint != key.fingerprint:
        raise IdempotencyKeyReused()


# A key's claim for a statement that also performs the effect (one round trip for both):
# `INSERT INTO idempotency_keys {CLAIM_COLUMNS} SELECT {CLAIM_VALUES} WHERE <guard> ON CONFLICT
# DO NOTHING RETURNING 1`, with `claim_params`' named parameters. No row returned: claimed
# before (read it with `claim`, in a new transaction: this one must roll back).
CLAIM_COLUMNS = "(merchant_id, namespace, idempotency_key, request_fingerprint, result_ref)"
CLAIM_VALUES = (
    "%(key_merchant_id)s, %(key_namespace)s, %(key_value)s, %(key_fingerprint)s, %(key_result_ref)s"
)


def claim_params(
    merchant_id: str, key: IdempotencyKey, result_ref: str | None
) -> dict[str, str | None]:
    return {
        "key_merchant_id": merchant_id,
        "key_namespace": key.namespace,
        "key_value": key.key,
        "key_fingerprint": key.fingerprint,
        "key_result_ref": result_ref,
    }


async def claim(
    conn: AsyncConnection, merchant_id: str, key: IdempotencyKey, *, result_ref: str | None = None
) -> str | None:
    """Claims `key` inside the caller's transaction.

    Returns None when this call is the first (the caller then performs the effect and calls
    `record`), or the result reference of the earlier call. A concurrent first call holding
    the key makes this wait until it commits or rolls back. `result_ref`: the reference of
    the effect when the caller chooses it before writing (an id it generates), stored with
    the claim so that no `record` statement is needed.
    """
    cursor = await conn.execute(
        f"INSERT INTO idempotency_keys {CLAIM_COLUMNS} VALUES ({CLAIM_VALUES})"
        " ON CONFLICT DO NOTHING RETURNING 1",
        claim_params(merchant_id, key, result_ref),
        prepare=True,
    )
    if await cursor.fetchone():
        return None
    cursor = await conn.execute(
        "SELECT request_fingerprint, result_ref FROM idempotency_keys"
        " WHERE merchant_id = %s AND namespace = %s AND idempotency_key = %s",
        (merchant_id, key.namespace, key.key),
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
        " WHERE merchant_id = %s AND namespace = %s AND idempotency_key = %s",
        (result_ref, merchant_id, key.namespace, key.key),
    )


@asynccontextmanager
async def _transaction(
    pool: AsyncConnectionPool, *, audited: bool
) -> AsyncIterator[AsyncConnection]:
    if audited:
        async with audit.transaction(pool) as conn:
            yield conn
    else:
        async with pool.connection() as conn, conn.transaction():
            yield conn


async def write_once(
    pool: AsyncConnectionPool,
    merchant_id: str,
    key: IdempotencyKey,
    *,
    write: Write[T],
    replay: Replay[T],
    audited: bool = False,
    unique_errors: Mapping[str, Callable[[], Exception]] | None = None,
) -> T:
    """`write` once per key, in one transaction with the key: a retry gets `replay` of the
    reference the first call's `write` returned (waiting for that call if it is still
    running); the key with other parameters is IdempotencyKeyReused.

    `write` does the whole effect, its outbox events included. `audited`: the transaction's
    audit rows name the caller of the RPC. `unique_errors`: the error to raise for a unique
    violation of each named constraint, once the transaction has rolled back.
    """
    with unique_violations(unique_errors or {}):
        async with _transaction(pool, audited=audited) as conn:
            earlier = await claim(conn, merchant_id, key)
            if earlier is not None:
                return await replay(conn, earlier)
            result, reference = await write(conn)
            await record(conn, merchant_id, key, reference)
    return result

"""Customers' birthdays in PostgreSQL (users_0002_birthdays.sql): sealed, found by day.

The date is sealed by Users' PII vault under column "birthday", bound to (merchant, customer);
the day celebrated is a blind index ("birthday_day") of "--MM-DD" per merchant, so listing a
day's birthdays is an index lookup that never decrypts, and the table shows no date to whoever
reads it without the keys. Writes run with their idempotency key (and audit rows, which name
the row's own id and leave the customer and the sealed columns out).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from loyalnest.gen.users.v1 import users_pb2
from loyalnest.platform import idempotency
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.pii import PiiVault
from loyalnest.platform.postgres import Database
from loyalnest.services.users.domain import Birthday, BirthdayNotFound, CustomerBirthday

SEALED = "birthday"
DAY_INDEX = "birthday_day"
_SELECT = (
    "SELECT merchant_id, customer_id, birthday_id::text, birthday_ciphertext, consent_at"
    " FROM customer_birthdays"
)


class BirthdayStore:
    def __init__(self, database: Database, vault: PiiVault) -> None:
        self._pool = database.pool
        self._vault = vault

    def idempotency_key(
        self, request: users_pb2.SetCustomerBirthdayRequest, merchant_id: str
    ) -> IdempotencyKey:
        """The request's key; its fingerprint holds the birthday's blind index, never the date
        (the fingerprint is an unkeyed hash kept in the database: see PiiVault)."""
        blinded = users_pb2.SetCustomerBirthdayRequest()
        blinded.CopyFrom(request)
        blinded.ClearField("birthday")
        blinded.ClearField("idempotency_key")
        digest = hashlib.sha256(b"SetCustomerBirthday\0")
        digest.update(blinded.SerializeToString(deterministic=True))
        if request.HasField("birthday"):
            b = request.birthday
            date = f"{b.year}-{b.month}-{b.day}"
            digest.update(b"\0" + self._vault.index(merchant_id, date, column=SEALED))
        return IdempotencyKey(key=request.idempotency_key, fingerprint=digest.hexdigest())

    def _birthday(self, row: Sequence[Any]) -> CustomerBirthday:
        merchant_id, customer_id, _, ciphertext, consent_at = row
        text = self._vault.open(merchant_id, customer_id, bytes(ciphertext), column=SEALED)
        return CustomerBirthday(customer_id, Birthday.parse(text), consent_at)

    def day_index(self, merchant_id: str, day_key: str) -> bytes:
        return self._vault.index(merchant_id, day_key, column=DAY_INDEX)

    async def _by_id(
        self, conn: AsyncConnection, merchant_id: str, birthday_id: str
    ) -> CustomerBirthday | None:
        cursor = await conn.execute(
            f"{_SELECT} WHERE merchant_id = %s AND birthday_id = %s", (merchant_id, birthday_id)
        )
        row = await cursor.fetchone()
        return self._birthday(row) if row is not None else None

    async def set(
        self,
        merchant_id: str,
        customer_id: str,
        birthday: Birthday | None,
        *,
        now: datetime,
        key: IdempotencyKey,
    ) -> CustomerBirthday | None:
        """Keeps `birthday` (consent given at `now`), or deletes the one kept (None: consent
        withdrawn). The result: what is kept now (None after a withdrawal)."""

        async def write(conn: AsyncConnection) -> tuple[CustomerBirthday | None, str]:
            if birthday is None:
                cursor = await conn.execute(
                    "DELETE FROM customer_birthdays WHERE merchant_id = %s AND customer_id = %s"
                    " RETURNING birthday_id::text",
                    (merchant_id, customer_id),
                )
                deleted = await cursor.fetchone()
                # A retry replays "nothing kept" (that id names no row any more).
                return None, deleted[0] if deleted else str(uuid.uuid4())
            cursor = await conn.execute(
                "INSERT INTO customer_birthdays (merchant_id, customer_id, birthday_id,"
                " birthday_ciphertext, day_index, consent_at)"
                " VALUES (%(m)s, %(c)s, %(id)s, %(sealed)s, %(day)s, %(now)s)"
                " ON CONFLICT (merchant_id, customer_id) DO UPDATE SET"
                " birthday_ciphertext = excluded.birthday_ciphertext,"
                " day_index = excluded.day_index, consent_at = excluded.consent_at,"
                " updated_at = now()"
                " RETURNING birthday_id::text",
                {
                    "m": merchant_id,
                    "c": customer_id,
                    "id": str(uuid.uuid4()),
                    "sealed": self._vault.seal(
                        merchant_id, customer_id, birthday.text, column=SEALED
                    ),
                    "day": self.day_index(merchant_id, birthday.day_key),
                    "now": now,
                },
            )
            row = await cursor.fetchone()
            assert row is not None  # an upsert returns its row
            return CustomerBirthday(customer_id, birthday, now), row[0]

        return await idempotency.write_once(
            self._pool,
            merchant_id,
            key,
            write=write,
            replay=lambda conn, birthday_id: self._by_id(conn, merchant_id, birthday_id),
            audited=True,
        )

    async def get(self, merchant_id: str, customer_id: str) -> CustomerBirthday:
        async with self._pool.connection() as conn:
            found = await self.of_customer(conn, merchant_id, customer_id)
        if found is None:
            raise BirthdayNotFound(customer_id)
        return found

    async def celebrating(
        self, merchant_id: str, day_keys: Sequence[str], *, limit: int, after_seq: int | None
    ) -> list[tuple[int, str]]:
        """(seq, customer_id) of the birthdays on any of `day_keys`, in seq order."""
        indexes = [self.day_index(merchant_id, key) for key in day_keys]
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT seq, customer_id FROM customer_birthdays"
                " WHERE merchant_id = %s AND day_index = ANY(%s) AND seq > %s"
                " ORDER BY seq LIMIT %s",
                (merchant_id, indexes, after_seq or 0, limit),
            )
            return [(seq, customer_id) for seq, customer_id in await cursor.fetchall()]

    # --- personal data: inside UserStore's transactions (store/postgres.py) -----------------

    async def of_customer(
        self, conn: AsyncConnection, merchant_id: str, customer_id: str
    ) -> CustomerBirthday | None:
        cursor = await conn.execute(
            f"{_SELECT} WHERE merchant_id = %s AND customer_id = %s", (merchant_id, customer_id)
        )
        row = await cursor.fetchone()
        return self._birthday(row) if row is not None else None

    @staticmethod
    async def erase_customer(conn: AsyncConnection, merchant_id: str, customer_id: str) -> int:
        # The delete's audit row keeps the row's own id and times only (the trigger leaves
        # the customer and the sealed columns out).
        cursor = await conn.execute(
            "DELETE FROM customer_birthdays WHERE merchant_id = %s AND customer_id = %s",
            (merchant_id, customer_id),
        )
        return cursor.rowcount

    @staticmethod
    async def erase_merchant(conn: AsyncConnection, merchant_id: str) -> int:
        cursor = await conn.execute(
            "DELETE FROM customer_birthdays WHERE merchant_id = %s", (merchant_id,)
        )
        return cursor.rowcount

"""The interface every ledger store implements; tests/contract runs against each one."""

from __future__ import annotations

from typing import Protocol

from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.services.points.domain import Balance, Posting, PostingResult, Transaction


class LedgerStore(Protocol):
    async def get_balance(self, merchant_id: str, customer_id: str) -> Balance:
        """Raises LedgerNotFound when the customer has no ledger."""
        ...

    async def post(self, posting: Posting, key: IdempotencyKey) -> PostingResult:
        """Applies `posting` atomically, at most once per (merchant, key), and enqueues its
        event (events.ledger_event) in the outbox in the same transaction.

        Raises LedgerNotFound for a debit on a customer without a ledger,
        InsufficientPoints when a debit would overdraw, IdempotencyKeyReused when `key`
        was used with other parameters. Returns the first result on a replay.
        """
        ...

    async def open_ledger(
        self, merchant_id: str, customer_id: str, *, event: ConsumedEvent
    ) -> bool:
        """Opens an empty ledger unless one exists, at most once per consumed event.

        False when `event` was applied before (by its consumer group).
        """
        ...

    async def list_transactions(
        self, merchant_id: str, customer_id: str, *, limit: int, before_sequence: int | None
    ) -> list[Transaction]:
        """Newest first. Raises LedgerNotFound when the customer has no ledger."""
        ...

    async def ping(self) -> None:
        """Raises when the backing database does not answer."""
        ...

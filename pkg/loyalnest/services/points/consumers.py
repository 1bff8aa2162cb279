"""The events Points applies: user.created (a customer's ledger), Core's settings (the copy
of the program) and webhook.received (orders earning points, earning.py)."""

from __future__ import annotations

from loyalnest.gen.events.v1 import core_pb2, users_pb2
from loyalnest.platform.events.consumer import PermanentEventError
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler
from loyalnest.platform.validation import IDENTIFIER_RE
from loyalnest.services.points.earning import OrderEarnings, ProgramCopies
from loyalnest.services.points.store.base import LedgerStore


def handlers(
    store: LedgerStore, programs: ProgramCopies, orders: OrderEarnings
) -> dict[str, Handler]:
    async def on_user_created(event: ConsumedEvent) -> bool:
        user = event.payload_as(users_pb2.UserCreated)
        if user.kind != users_pb2.USER_KIND_CUSTOMER:
            return True  # staff have no ledger: nothing to apply
        if not IDENTIFIER_RE.match(user.user_id):
            raise PermanentEventError(f"user.created with an invalid user_id {user.user_id!r}")
        # The customer sees a zero balance at once instead of NOT_FOUND until a first earn.
        return await store.open_ledger(event.merchant_id, user.user_id, event=event)

    async def on_settings_updated(event: ConsumedEvent) -> bool:
        settings = event.payload_as(core_pb2.ProgramSettingsUpdated).settings
        # Versioned: a redelivered or older copy changes nothing.
        return await programs.save(event.merchant_id, settings)

    return {
        "user.created": on_user_created,
        "program_settings.updated": on_settings_updated,
        "webhook.received": orders.on_webhook,
    }

"""The events Auth applies.

- `role.assigned` (a user got another role) and `role.updated` (a role's permissions
  changed), from Roles: the live access tokens of the staff sessions concerned are revoked
  at once (every service checks revocation on every call), and the sessions stay open: the
  next refresh asks Roles again and carries the new permissions. A demotion so takes effect
  immediately for revocation-checked calls, and within one access-token lifetime at most
  anywhere (the gateway alone does not check revocation).
- `webhook.received` of topic `app/uninstalled`, from the edge: the merchant is marked
  uninstalled (ValidateMerchant then refuses it; the edge and the consumers skip its work
  within their cache period), its owner and staff sessions end (their refresh tokens with
  them), its Shopify tokens are dropped (GetShopAccessToken: FAILED_PRECONDITION) and
  merchant.uninstalled is published, all in one transaction. A reinstall (OAuth) makes it
  active again with new tokens and publishes merchant.reinstalled.
"""

from __future__ import annotations

from datetime import UTC

from psycopg import AsyncConnection

from loyalnest.gen.events.v1 import gateway_pb2, roles_pb2
from loyalnest.platform import audit
from loyalnest.platform.events.envelope import ConsumedEvent
from loyalnest.platform.events.inbox import Handler, transactional
from loyalnest.platform.observability import get_logger
from loyalnest.platform.postgres import Database
from loyalnest.platform.validation import is_uuid
from loyalnest.services.auth.sessions import SessionTokens
from loyalnest.services.auth.store import AuthStore

log = get_logger(__name__)

UNINSTALLED_TOPIC = "app/uninstalled"


def handlers(database: Database, store: AuthStore, sessions: SessionTokens) -> dict[str, Handler]:
    async def on_role_assigned(conn: AsyncConnection, event: ConsumedEvent) -> None:
        assigned = event.payload_as(roles_pb2.RoleAssigned)
        # Staff sessions exist only for installed merchants and Users ids (UUIDs both).
        if not (is_uuid(event.merchant_id) and is_uuid(assigned.user_id)):
            return
        revoked = await sessions.revoke_staff_access(
            conn, event.merchant_id, user_id=assigned.user_id
        )
        if revoked:
            log.info(
                "staff tokens revoked: role assigned",
                merchant_id=event.merchant_id,
                user_id=assigned.user_id,
                role_id=assigned.role_id,
                tokens=revoked,
            )

    async def on_role_updated(conn: AsyncConnection, event: ConsumedEvent) -> None:
        updated = event.payload_as(roles_pb2.RoleUpdated)
        if not (is_uuid(event.merchant_id) and is_uuid(updated.role_id)):
            return
        revoked = await sessions.revoke_staff_access(
            conn, event.merchant_id, role_id=updated.role_id
        )
        if revoked:
            log.info(
                "staff tokens revoked: role changed",
                merchant_id=event.merchant_id,
                role_id=updated.role_id,
                tokens=revoked,
            )

    async def on_uninstalled(conn: AsyncConnection, event: ConsumedEvent) -> None:
        webhook = event.payload_as(gateway_pb2.WebhookReceived)
        triggered_at = (
            webhook.triggered_time.ToDatetime(tzinfo=UTC)
            if webhook.HasField("triggered_time")
            else None
        )
        merchant_id = await store.mark_uninstalled(
            conn,
            webhook.shop_domain,
            triggered_at=triggered_at,
            actor=audit.actor_of_event(event),
        )
        if merchant_id is None:
            log.info("app/uninstalled changed nothing", shop=webhook.shop_domain)
            return
        ended = await sessions.revoke_merchant_sessions(conn, merchant_id, "app uninstalled")
        log.info("merchant uninstalled", merchant_id=merchant_id, sessions_ended=ended)

    uninstalls = transactional(database, on_uninstalled)

    async def on_webhook(event: ConsumedEvent) -> bool:
        if event.payload_as(gateway_pb2.WebhookReceived).topic != UNINSTALLED_TOPIC:
            # The other topics (every order) are the other services' business: nothing to
            # apply, so nothing to record in the inbox either.
            return True
        return await uninstalls(event)

    return {
        "role.assigned": transactional(database, on_role_assigned),
        "role.updated": transactional(database, on_role_updated),
        "webhook.received": on_webhook,
    }

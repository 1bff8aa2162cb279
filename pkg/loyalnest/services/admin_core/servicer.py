"""gRPC surface of the AdminCore service.

Handlers only: validation, the merchant from the token, the store's calls, proto mapping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC

from google.protobuf.message import Message

from loyalnest.gen.admin_core.v1 import admin_core_pb2, admin_core_pb2_grpc
from loyalnest.platform import pagination, tenancy
from loyalnest.platform.auth.context import current_principal
from loyalnest.platform.errors import PermissionDenied
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.pii import PiiVault
from loyalnest.platform.validation import Validator, is_valid_email, normalize_email
from loyalnest.services.admin_core.audit_log import Filter, MeshAuditLog
from loyalnest.services.admin_core.domain import (
    NewRequest,
    RequestType,
    Source,
    customer_id_problem,
)
from loyalnest.services.admin_core.store import GdprStore, MerchantDirectory, utc_now
from loyalnest.services.admin_core.wire import (
    TYPES_OF_PROTO,
    export_proto,
    merchant_proto,
    request_proto,
)

# Filing a shop redaction by hand (RPC), beyond "admin_core:gdpr".
SHOP_REDACT = "admin_core:shop-redact"
AUDIT_ACTIONS = ("create", "update", "delete")


def audit_filter(request: admin_core_pb2.AuditLogFilter, *, merchant_required: bool) -> Filter:
    """The filter a caller may ask for: a merchant-bound token is confined to its merchant
    (naming another is PERMISSION_DENIED); a platform admin's names any, or none for all."""
    bound = current_principal().merchant_id
    with Validator() as v:
        if request.merchant_id:
            v.identifier("filter.merchant_id", request.merchant_id)
        elif merchant_required and not bound:
            v.check(False, "filter.merchant_id", "is required for a token of no merchant")
        for field in ("actor", "resource", "service"):
            v.text(f"filter.{field}", getattr(request, field))
        if request.action:
            v.check(
                request.action in AUDIT_ACTIONS, "filter.action", "must be create, update or delete"
            )
    if bound and request.merchant_id and request.merchant_id != bound:
        raise PermissionDenied("this token sees its own merchant's audit log only")
    return Filter(
        merchant_id=bound or request.merchant_id or None,
        actor=request.actor,
        resource=request.resource,
        action=request.action,
        service=request.service,
    )


class AdminCoreServicer(admin_core_pb2_grpc.AdminCoreServiceServicer):
    def __init__(
        self,
        store: GdprStore,
        merchants: MerchantDirectory,
        vault: PiiVault,
        audit_log: MeshAuditLog,
    ) -> None:
        self._store = store
        self._merchants = merchants
        self._vault = vault
        self._audit_log = audit_log

    async def GetMerchants(
        self, request: admin_core_pb2.GetMerchantsRequest, context: Context
    ) -> admin_core_pb2.GetMerchantsResponse:
        # A merchant-bound token (a merchant-level admin) sees its merchant only; a platform
        # admin's token names no merchant and sees all.
        scope_merchant = current_principal().merchant_id
        with Validator() as v:
            v.check(len(request.query) <= 255, "query", "must be at most 255 characters")
            v.check(request.query.isprintable(), "query", "must be printable text")
        size = pagination.page_size(request.page_size)
        scope = f"merchants:{scope_merchant or '*'}:{request.query}"
        offset = pagination.decode_page_token(request.page_token, scope) or 0
        found = await self._merchants.list(
            merchant_id=scope_merchant, query=request.query, limit=size + 1, offset=offset
        )
        response = admin_core_pb2.GetMerchantsResponse(
            merchants=[merchant_proto(m) for m in found[:size]]
        )
        if len(found) > size:
            response.next_page_token = pagination.encode_page_token(scope, offset + size)
        return response

    async def HandleGDPRRequest(
        self, request: admin_core_pb2.HandleGDPRRequestRequest, context: Context
    ) -> admin_core_pb2.HandleGDPRRequestResponse:
        merchant_id = tenancy.merchant_id()
        kind = TYPES_OF_PROTO.get(request.type)
        with Validator() as v:
            v.check(
                kind is not None, "type", "must be DATA_REQUEST, CUSTOMER_REDACT or SHOP_REDACT"
            )
            if kind is not None and kind.about_a_customer:
                problem = customer_id_problem(request.customer_id)
                v.check(problem is None, "customer_id", problem or "")
            elif kind is not None:
                v.check(not request.customer_id, "customer_id", "must be empty for SHOP_REDACT")
            if request.email:
                v.check(is_valid_email(request.email), "email", "is not an email address")
            v.idempotency_key("idempotency_key", request.idempotency_key)
        assert kind is not None  # the validator rejected the request otherwise
        if kind is RequestType.SHOP_REDACT and not current_principal().has(SHOP_REDACT):
            # Erasing a whole merchant is for platform admins (Shopify's own shop/redact comes
            # as a webhook): a merchant's admin holding admin_core:gdpr may not.
            raise PermissionDenied(f"a shop redaction needs the {SHOP_REDACT!r} permission")

        def pii(fingerprinted: Message) -> list[tuple[Message, str, str]]:
            return [(fingerprinted, "customer_id", "customer"), (fingerprinted, "email", "email")]

        key = self._vault.idempotency_key("HandleGDPRRequest", request, merchant_id, pii)
        emails = (normalize_email(request.email),) if request.email else ()
        filed = await self._store.file(
            merchant_id,
            NewRequest(kind, request.customer_id or None, Source.ADMIN, emails),
            key=key,
        )
        return admin_core_pb2.HandleGDPRRequestResponse(request=request_proto(filed, utc_now()))

    async def GetGDPRRequest(
        self, request: admin_core_pb2.GetGDPRRequestRequest, context: Context
    ) -> admin_core_pb2.GetGDPRRequestResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.uuid("request_id", request.request_id)
        found = await self._store.get(merchant_id, request.request_id)
        return admin_core_pb2.GetGDPRRequestResponse(request=request_proto(found, utc_now()))

    async def ListGDPRRequests(
        self, request: admin_core_pb2.ListGDPRRequestsRequest, context: Context
    ) -> admin_core_pb2.ListGDPRRequestsResponse:
        merchant_id = tenancy.merchant_id()
        size = pagination.page_size(request.page_size)
        scope = f"gdpr:{merchant_id}:{request.overdue_only}"
        offset = pagination.decode_page_token(request.page_token, scope) or 0
        found = await self._store.list(
            merchant_id, overdue_only=request.overdue_only, limit=size + 1, offset=offset
        )
        now = utc_now()
        response = admin_core_pb2.ListGDPRRequestsResponse(
            requests=[request_proto(r, now) for r in found[:size]]
        )
        if len(found) > size:
            response.next_page_token = pagination.encode_page_token(scope, offset + size)
        return response

    async def GetGDPRExport(
        self, request: admin_core_pb2.GetGDPRExportRequest, context: Context
    ) -> admin_core_pb2.GetGDPRExportResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.uuid("request_id", request.request_id)
        return export_proto(await self._store.export(merchant_id, request.request_id, utc_now()))

    async def GetAuditLogs(
        self, request: admin_core_pb2.GetAuditLogsRequest, context: Context
    ) -> admin_core_pb2.GetAuditLogsResponse:
        where = audit_filter(request.filter, merchant_required=False)
        start = (
            request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time") else None
        )
        end = request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else None
        with Validator() as v:
            v.check(
                start is None or end is None or start < end, "end_time", "must be after start_time"
            )

        async def fetch(
            limit: int, before: int | None
        ) -> list[tuple[int, admin_core_pb2.AuditLog]]:
            return await self._audit_log.query(
                where, start=start, end=end, limit=limit, before=before
            )

        page, token = await pagination.keyset_page(
            page_size_requested=request.page_size,
            page_token=request.page_token,
            scope=where.scope(start, end),
            fetch=fetch,
            position=lambda row: row[0],
        )
        return admin_core_pb2.GetAuditLogsResponse(
            logs=[entry for _, entry in page], next_page_token=token
        )

    async def TailAuditLogs(
        self, request: admin_core_pb2.TailAuditLogsRequest, context: Context
    ) -> AsyncIterator[admin_core_pb2.TailAuditLogsResponse]:
        where = audit_filter(request.filter, merchant_required=True)
        assert where.merchant_id is not None  # required above, or the token's
        tail = self._audit_log.tail(where.merchant_id, where, after=request.after.strip())
        async for position, entry in tail:
            yield admin_core_pb2.TailAuditLogsResponse(log=entry, position=position)

"""Carrying out GDPR requests across the mesh (the domain sub-area of AdminCore).

The worker leases a due request and calls every personal-data holder's
`PersonalDataService` (loyalnest.platform.personal_data) that still has a pending step, with
AdminCore's own service token bound to the request's merchant:

- data request: every holder's `ExportCustomer`; the sections form the export package, stored
  (sealed) with every step completed at once, so a package is never partial;
- customer redaction: first every holder's export, only for the identifiers each knows of the
  customer (Core knows the email and the Users account, Users then finds its rows by them);
  they are kept sealed on the request, so a retry after some services already erased still
  finds the rest; then `EraseCustomer` at each holder, each step completed as it answers,
  all with the request's one erasure key (kept sealed with the identifiers, forgotten with
  them when the request completes), from which every service derives the customer's
  anonymous ids alike; the edge, which owns the customer pseudonyms on Kafka
  (platform/events/pseudonyms.py), last, once every other holder has erased. Before any of
  them, the edge's `BeginErasure`: the customer's pseudonym names their anonymous id from
  then on, so a record published before and consumed after a holder's erasure does not
  bring the person back into that holder;
- shop redaction: `EraseMerchant` at each holder.

A failed call leaves its step pending with the error, and the request is taken again after a
backoff: erasures are idempotent, so redoing a step that did complete changes nothing. The
request completes when every step has (store.finish).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta

import grpc
from google.protobuf import json_format
from prometheus_client import Counter, Gauge

from loyalnest.gen.platform.v1 import (
    customer_pseudonyms_pb2,
    customer_pseudonyms_pb2_grpc,
    personal_data_pb2,
    personal_data_pb2_grpc,
)
from loyalnest.platform.auth.context import acting_for
from loyalnest.platform.events import pseudonyms
from loyalnest.platform.observability import get_logger
from loyalnest.platform.personal_data import CustomerRef
from loyalnest.services.admin_core.domain import RequestType
from loyalnest.services.admin_core.store import GdprStore, Work

log = get_logger(__name__)

STEPS = Counter(
    "loyalnest_gdpr_steps_total",
    "Personal-data calls AdminCore made for GDPR requests, by service and outcome.",
    ["service", "type", "outcome"],
)
OVERDUE = Gauge(
    "loyalnest_gdpr_requests_overdue",
    "GDPR requests still open after Shopify's 30 days (every merchant's).",
)
COMPLETED = Counter(
    "loyalnest_gdpr_requests_completed_total", "GDPR requests completed, by type.", ["type"]
)

Holders = Mapping[str, personal_data_pb2_grpc.PersonalDataServiceStub]


class GdprWorker:
    def __init__(
        self,
        store: GdprStore,
        holders: Holders,
        *,
        pseudonym_owner: customer_pseudonyms_pb2_grpc.CustomerPseudonymServiceStub | None = None,
        interval_seconds: float,
        lease: timedelta = timedelta(minutes=5),
        max_backoff: timedelta = timedelta(hours=1),
    ) -> None:
        self._store = store
        self._holders = dict(holders)
        self._pseudonym_owner = pseudonym_owner
        self._interval = interval_seconds
        self._lease = lease
        self._max_backoff = max_backoff

    async def run(self) -> None:
        """Works through due requests; idles `interval_seconds` when there are none."""
        while True:
            try:
                OVERDUE.set(await self._store.overdue_count())
                await self._store.purge_expired_exports()
                while await self.work_once():
                    pass
            except Exception:
                log.exception("GDPR worker pass failed; retrying")
            await asyncio.sleep(self._interval)

    async def work_once(self) -> bool:
        """One due request worked on; False when none was due."""
        work = await self._store.claim_due(self._lease)
        if work is None:
            return False
        with acting_for(work.merchant_id):
            failed = await self._carry_out(work)
        if failed is None and await self._store.finish(work):
            COMPLETED.labels(work.type.value).inc()
            log.info("GDPR request completed", request_id=work.request_id, type=work.type.value)
            return True
        backoff = min(self._max_backoff, timedelta(seconds=2 ** min(work.attempts, 12)))
        await self._store.retry_later(
            work.request_id, failed or "waiting for the request's event to be published", backoff
        )
        return True

    async def _carry_out(self, work: Work) -> str | None:
        """None when every pending step succeeded, else the first error."""
        if work.type is RequestType.SHOP_REDACT:
            return await self._each(
                work,
                lambda stub: stub.EraseMerchant(personal_data_pb2.EraseMerchantRequest()),
            )
        assert work.customer_id is not None  # customer requests name one
        ref = CustomerRef(work.customer_id)  # a new erasure key, kept with the identifiers
        if work.identifiers is not None:  # the kept identifiers and their erasure key
            ref = work.identifiers.merged(ref)
        sections: dict[str, object] = {}
        records: dict[str, int] = {}
        errors: list[str] = []
        # Redactions ask every holder (a completed one too) for identifiers, until kept.
        services = (
            work.pending
            if work.type is RequestType.DATA_REQUEST
            else tuple(self._holders)
            if work.identifiers is None
            else ()
        )
        # Until no service reports an identifier the others were not asked with (Core names
        # the Users account that Users then finds): at most a few passes.
        for _ in range(3):
            asked_with, errors = ref, []
            for service in services:
                try:
                    response = await self._holders[service].ExportCustomer(
                        personal_data_pb2.ExportCustomerRequest(customer=asked_with.to_proto())
                    )
                except grpc.aio.AioRpcError as error:
                    message = self._failed(work, service, error)
                    await self._store.step_failed(work.request_id, service, message)
                    errors.append(message)
                    continue
                section = json_format.MessageToDict(response.data)
                sections[service] = section
                records[service] = _count(section)
                ref = ref.merged(CustomerRef.from_proto(response.found))
            if ref == asked_with:
                break
        if work.type is RequestType.DATA_REQUEST:
            if errors:
                for service in records:
                    STEPS.labels(service, work.type.value, "ok").inc()
                return errors[0]
            await self._store.save_export(work, sections, records)
            for service in records:
                STEPS.labels(service, work.type.value, "ok").inc()
            return None
        if work.identifiers is None:
            if errors:
                return errors[0]
            await self._store.save_identifiers(work, ref)
        # One erasure key for every service and every attempt: the customer becomes the same
        # anonymous ids everywhere (CustomerRef.anonymous_id).
        failed = await self._begin_erasure(work, ref)
        if failed is not None:
            return failed
        request = personal_data_pb2.EraseCustomerRequest(
            customer=ref.to_proto(), erasure_key=ref.erasure_key
        )
        return await self._each(work, lambda stub: stub.EraseCustomer(request))

    async def _begin_erasure(self, work: Work, ref: CustomerRef) -> str | None:
        """Before any holder erases: the customer's pseudonym resolves to their anonymous id
        from now on, so a record published before the erasure and consumed after a holder's
        erasure recreates no one there (it names the anonymous customer the erasure made).
        Until the owner has answered, nobody erases (the error; the request is retried)."""
        if self._pseudonym_owner is None or pseudonyms.OWNER not in work.pending:
            return None  # no owner to ask, or it erased already (its tombstone is made)
        request = customer_pseudonyms_pb2.BeginErasureRequest(
            customer=customer_pseudonyms_pb2.MerchantCustomer(
                merchant_id=work.merchant_id, value=ref.shopify_customer_id
            ),
            erasure_key=ref.erasure_key,
        )
        try:
            await self._pseudonym_owner.BeginErasure(request)
        except grpc.aio.AioRpcError as error:
            message = self._failed(work, pseudonyms.OWNER, error)
            await self._store.step_failed(work.request_id, pseudonyms.OWNER, message)
            return message
        return None

    async def _each(self, work: Work, call: object) -> str | None:
        first_error: str | None = None
        # The pseudonyms' owner goes last, and only once every other holder has erased: until
        # then another service's relay may still publish the customer, and asking the owner
        # for a pseudonym after its erasure would record the Shopify id there again.
        others = [service for service in work.pending if service != pseudonyms.OWNER]
        owner = [service for service in work.pending if service == pseudonyms.OWNER]
        for service in others + owner:
            if service == pseudonyms.OWNER and first_error is not None:
                break
            try:
                response = await call(self._holders[service])  # type: ignore[operator]
            except grpc.aio.AioRpcError as error:
                message = self._failed(work, service, error)
                await self._store.step_failed(work.request_id, service, message)
                first_error = first_error or message
                continue
            STEPS.labels(service, work.type.value, "ok").inc()
            await self._store.step_done(work.request_id, service, int(response.records))
        return first_error

    @staticmethod
    def _failed(work: Work, service: str, error: grpc.aio.AioRpcError) -> str:
        STEPS.labels(service, work.type.value, "failed").inc()
        message = f"{service}: {error.code().name}: {error.details()}"
        log.warning("GDPR step failed", request_id=work.request_id, error=message)
        return message


def _count(section: Mapping[str, object]) -> int:
    """Records in a service's section: list items, or 1 per object."""
    total = 0
    for value in section.values():
        total += len(value) if isinstance(value, list) else 1
    return total

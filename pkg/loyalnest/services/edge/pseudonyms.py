"""CustomerPseudonymService: the edge owns the mesh's customer pseudonyms (issue 18).

A customer's pseudonym is `cust_` + their customer key's id (store/customer_keys.py): random,
one per (merchant, Shopify customer), gone with the key when the customer is erased (a
tombstone then maps it to the erasure's anonymous id; AdminCore makes the tombstone when the
erasure begins, `BeginErasure`, so it resolves so while the other holders erase). The
platform's outbox relays and consumers call this (loyalnest.platform.events.pseudonyms); the
edge's own use the store.
"""

from __future__ import annotations

from collections.abc import Sequence

from loyalnest.gen.platform.v1 import customer_pseudonyms_pb2 as pb
from loyalnest.gen.platform.v1 import customer_pseudonyms_pb2_grpc
from loyalnest.platform.auth.context import current_principal
from loyalnest.platform.errors import PermissionDenied
from loyalnest.platform.events.pseudonyms import (
    MAX_BATCH,
    MerchantValue,
    is_pseudonym,
)
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.personal_data import CustomerRef, checked_erasure_key
from loyalnest.platform.validation import Validator
from loyalnest.services.edge.store.customer_keys import CustomerKeys

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CustomerPseudonymService"].full_name
# A customer id as the mesh passes it: Shopify's numeric ids, or an id a merchant's
# integration chose (services accept up to 128 characters); bounded with room.
_MAX_ID_LENGTH = 256


def _entries(
    field: str, entries: Sequence[pb.MerchantCustomer], *, pseudonyms: bool
) -> list[MerchantValue]:
    with Validator() as v:
        v.check(0 < len(entries) <= MAX_BATCH, field, f"must hold 1 to {MAX_BATCH} entries")
        for index, entry in enumerate(entries):
            where = f"{field}[{index}]"
            v.check(
                0 < len(entry.merchant_id) <= _MAX_ID_LENGTH and entry.merchant_id.isprintable(),
                f"{where}.merchant_id",
                f"must be a merchant id (1 to {_MAX_ID_LENGTH} printable characters)",
            )
            if pseudonyms:
                v.check(
                    is_pseudonym(entry.value), f"{where}.value", "must be cust_ + 32 hex digits"
                )
            else:
                v.check(
                    0 < len(entry.value) <= _MAX_ID_LENGTH
                    and entry.value.isprintable()
                    and not entry.value.startswith("erased:")
                    and not is_pseudonym(entry.value),
                    f"{where}.value",
                    f"must be a customer id (1 to {_MAX_ID_LENGTH} printable characters),"
                    " not a pseudonym or an erased id",
                )
    return [(entry.merchant_id, entry.value) for entry in entries]


def _within_merchant(entries: Sequence[MerchantValue]) -> list[MerchantValue]:
    # The access policy already asked for a service token with "edge:pseudonyms" (the
    # services that relay or consume customer events). A relay's batch spans merchants, so
    # its token names none; a token acting for one merchant is held to that merchant.
    merchant_id = current_principal().merchant_id
    if merchant_id is not None and any(merchant != merchant_id for merchant, _ in entries):
        raise PermissionDenied(
            "a token acting for a merchant may name only that merchant's customers"
        )
    return list(entries)


class CustomerPseudonymServicer(customer_pseudonyms_pb2_grpc.CustomerPseudonymServiceServicer):
    def __init__(self, keys: CustomerKeys) -> None:
        self._keys = keys

    async def Pseudonymize(  # noqa: N802 (gRPC method name)
        self, request: pb.PseudonymizeRequest, context: Context
    ) -> pb.PseudonymizeResponse:
        customers = _within_merchant(_entries("customers", request.customers, pseudonyms=False))
        return pb.PseudonymizeResponse(pseudonyms=await self._keys.pseudonymize(customers))

    async def Resolve(  # noqa: N802 (gRPC method name)
        self, request: pb.ResolveRequest, context: Context
    ) -> pb.ResolveResponse:
        asked = _within_merchant(_entries("pseudonyms", request.pseudonyms, pseudonyms=True))
        resolved = await self._keys.resolve(asked)
        return pb.ResolveResponse(
            customers=[pb.Resolved(customer_id=r.customer_id, erased=r.erased) for r in resolved]
        )

    async def BeginErasure(  # noqa: N802 (gRPC method name)
        self, request: pb.BeginErasureRequest, context: Context
    ) -> pb.BeginErasureResponse:
        ((merchant_id, customer_id),) = _within_merchant(
            _entries("customer", [request.customer], pseudonyms=False)
        )
        customer = CustomerRef(customer_id, erasure_key=checked_erasure_key(request.erasure_key))
        return pb.BeginErasureResponse(begun=await self._keys.begin_erasure(merchant_id, customer))

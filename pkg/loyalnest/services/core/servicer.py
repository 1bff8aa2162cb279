"""gRPC surface of the Core service: validation and tenancy; mapping is in wire.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf.message import Message

from loyalnest.gen.core.v1 import core_pb2, core_pb2_grpc
from loyalnest.platform import tenancy
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.idempotency import KEY_FIELD, REQUEST, IdempotencyKey
from loyalnest.platform.pii import PiiVault
from loyalnest.platform.validation import (
    EMAIL_RULE,
    Validator,
    is_uuid,
    is_valid_email,
    normalize_email,
)
from loyalnest.services.core import domain
from loyalnest.services.core.billing import ShopifyBilling
from loyalnest.services.core.domain import ImportItem, NewCustomer, ProgramSettings
from loyalnest.services.core.store.billing import BillingStore
from loyalnest.services.core.store.customers import CustomerStore
from loyalnest.services.core.store.program import ProgramStore
from loyalnest.services.core.store.usage import UsageStore
from loyalnest.services.core.wire import (
    customer_proto,
    import_response,
    plan_change_response,
    usage_metric_proto,
)

MAX_IMPORT_BATCH = 500
# ImportCustomers' batch ids are keys of their own field: kept apart from idempotency_key values.
IMPORT_NAMESPACE = "import"
_NAME_RULE = f"must be at most {domain.MAX_NAME_LENGTH} printable characters"
_WithCustomers = TypeVar(
    "_WithCustomers", core_pb2.CreateCustomerRequest, core_pb2.ImportCustomersRequest
)


def _printable(name: str) -> bool:
    return len(name) <= domain.MAX_NAME_LENGTH and name.isprintable()


def new_customer(v: Validator, prefix: str, customer: core_pb2.Customer) -> NewCustomer | None:
    """The customer a request describes, or None with its violations added to `v`."""
    before = len(v.violations)
    email = normalize_email(customer.email)
    v.check(
        bool(domain.SHOPIFY_ID_RE.match(customer.shopify_customer_id)),
        f"{prefix}shopify_customer_id",
        f"is required and {domain.SHOPIFY_ID_RULE}",
    )
    v.check(not customer.user_id or is_uuid(customer.user_id), f"{prefix}user_id", "must be a UUID")
    v.check(not email or is_valid_email(email), f"{prefix}email", EMAIL_RULE)
    v.check(_printable(customer.first_name), f"{prefix}first_name", _NAME_RULE)
    v.check(_printable(customer.last_name), f"{prefix}last_name", _NAME_RULE)
    if len(v.violations) > before:
        return None
    return NewCustomer(
        shopify_customer_id=customer.shopify_customer_id,
        user_id=customer.user_id or None,
        email=email or None,
        first_name=customer.first_name.strip() or None,
        last_name=customer.last_name.strip() or None,
    )


class CoreServicer(core_pb2_grpc.CoreServiceServicer):
    def __init__(
        self,
        programs: ProgramStore,
        usage: UsageStore,
        customers: CustomerStore,
        vault: PiiVault,
        billing_store: BillingStore,
        billing: ShopifyBilling,
    ) -> None:
        self._programs = programs
        self._billing_store = billing_store
        self._billing = billing
        self._usage = usage
        self._customers = customers
        self._vault = vault

    # --- the program ------------------------------------------------------------------------

    async def GetProgramSettings(
        self, request: core_pb2.GetProgramSettingsRequest, context: Context
    ) -> core_pb2.GetProgramSettingsResponse:
        settings = await self._programs.get(tenancy.merchant_id())
        return core_pb2.GetProgramSettingsResponse(settings=settings)

    async def UpdateProgramSettings(
        self, request: core_pb2.UpdateProgramSettingsRequest, context: Context
    ) -> core_pb2.UpdateProgramSettingsResponse:
        merchant_id = tenancy.merchant_id()
        paths = list(dict.fromkeys(request.update_mask.paths))
        with Validator() as v:
            if v.check(request.HasField("settings"), "settings", "is required"):
                v.violations += domain.validate_program_update(request.settings, paths)
            v.check(request.expected_version >= 0, "expected_version", "must not be negative")
            v.idempotency_key("idempotency_key", request.idempotency_key)

        def update(current: ProgramSettings) -> ProgramSettings:
            return domain.check_applied(domain.apply_update(current, request.settings, paths))

        settings = await self._programs.change(
            merchant_id,
            update,
            key=IdempotencyKey.of("UpdateProgramSettings", request),
            expected_version=request.expected_version,
        )
        return core_pb2.UpdateProgramSettingsResponse(settings=settings)

    # --- plans and usage --------------------------------------------------------------------

    async def GetPlan(
        self, request: core_pb2.GetPlanRequest, context: Context
    ) -> core_pb2.GetPlanResponse:
        settings = await self._programs.get(tenancy.merchant_id())
        return core_pb2.GetPlanResponse(
            plan=settings.plan, available_plans=self._programs.plans.all()
        )

    async def ChangePlan(
        self, request: core_pb2.ChangePlanRequest, context: Context
    ) -> core_pb2.ChangePlanResponse:
        merchant_id = tenancy.merchant_id()
        plan = self._programs.plans.get(request.plan)
        with Validator() as v:
            v.check(
                plan is not None,
                "plan",
                f"must be one of {', '.join(self._programs.plans.names())}",
            )
            v.idempotency_key("idempotency_key", request.idempotency_key)
        assert plan is not None  # the validator rejected the request otherwise
        key = IdempotencyKey.of("ChangePlan", request)
        price = self._programs.plans.price(request.plan)
        if price is None:
            # Free: at once, and the subscription paying for the current plan is cancelled.
            change = await self._billing_store.change_to_free_plan(
                merchant_id,
                plan,
                key=key,
                cancel=lambda subscription_id: self._billing.cancel(merchant_id, subscription_id),
            )
        else:
            # Paid: only once the merchant approves the charge at Shopify (the webhook).
            change = await self._billing_store.request_paid_plan(
                merchant_id,
                request.plan,
                key=key,
                subscribe=lambda: self._billing.subscribe(merchant_id, request.plan, price),
            )
        return plan_change_response(change)

    async def GetUsage(
        self, request: core_pb2.GetUsageRequest, context: Context
    ) -> core_pb2.GetUsageResponse:
        plan, metrics = await self._usage.usage(tenancy.merchant_id(), datetime.now(UTC))
        return core_pb2.GetUsageResponse(
            plan=plan.plan,
            metrics=[usage_metric_proto(m) for m in metrics],
        )

    # --- customers --------------------------------------------------------------------------

    def _idempotency_key(
        self,
        method: str,
        request: _WithCustomers,
        merchant_id: str,
        *,
        key_field: str = KEY_FIELD,
        namespace: str = REQUEST,
    ) -> IdempotencyKey:
        # Emails and names stay out of the fingerprint (see PiiVault.idempotency_key).
        def pii(
            fingerprinted: core_pb2.CreateCustomerRequest | core_pb2.ImportCustomersRequest,
        ) -> list[tuple[Message, str, str]]:
            customers = (
                [fingerprinted.customer]
                if isinstance(fingerprinted, core_pb2.CreateCustomerRequest)
                else list(fingerprinted.customers)
            )
            return [
                (customer, column, column)
                for customer in customers
                for column in ("email", "first_name", "last_name")
            ]

        return self._vault.idempotency_key(
            method, request, merchant_id, pii, key_field=key_field, namespace=namespace
        )

    async def CreateCustomer(
        self, request: core_pb2.CreateCustomerRequest, context: Context
    ) -> core_pb2.CreateCustomerResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            if v.check(request.HasField("customer"), "customer", "is required"):
                new = new_customer(v, "customer.", request.customer)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        assert new is not None  # the validator rejected the request otherwise
        customer = await self._customers.create(
            merchant_id,
            new,
            key=self._idempotency_key("CreateCustomer", request, merchant_id),
        )
        return core_pb2.CreateCustomerResponse(customer=customer_proto(customer))

    async def GetCustomer(
        self, request: core_pb2.GetCustomerRequest, context: Context
    ) -> core_pb2.GetCustomerResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.uuid("customer_id", request.customer_id)
        customer = await self._customers.get(merchant_id, request.customer_id)
        return core_pb2.GetCustomerResponse(customer=customer_proto(customer))

    async def ImportCustomers(
        self, request: core_pb2.ImportCustomersRequest, context: Context
    ) -> core_pb2.ImportCustomersResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.identifier("batch_id", request.batch_id)
            v.check(
                0 < len(request.customers) <= MAX_IMPORT_BATCH,
                "customers",
                f"must hold 1 to {MAX_IMPORT_BATCH} customers",
            )
        items = []
        for customer in request.customers:
            # Each item on its own: an invalid one is reported in its result, not refused.
            item_validator = Validator()
            new = new_customer(item_validator, "", customer)
            error = "; ".join(f"{f.field}: {f.description}" for f in item_validator.violations)
            items.append(ImportItem(customer.shopify_customer_id, new, error))
        result = await self._customers.import_batch(
            merchant_id,
            request.batch_id,
            items,
            key=self._idempotency_key(
                "ImportCustomers",
                request,
                merchant_id,
                key_field="batch_id",
                namespace=IMPORT_NAMESPACE,
            ),
        )
        return import_response(result)

"""Core's API messages (loyalnest.core.v1) <-> domain values. The program needs no mapping:
the domain holds it as the event message the API returns (see domain.py)."""

from __future__ import annotations

from loyalnest.gen.core.v1 import core_pb2
from loyalnest.platform.protos import timestamp
from loyalnest.services.core.domain import (
    Customer,
    ImportOutcome,
    ImportResult,
    MetricUsage,
    PlanChange,
    PlanChangeStatus,
)

IMPORT_OUTCOMES = {
    ImportOutcome.CREATED: core_pb2.IMPORT_OUTCOME_CREATED,
    ImportOutcome.ALREADY_EXISTS: core_pb2.IMPORT_OUTCOME_ALREADY_EXISTS,
    ImportOutcome.INVALID: core_pb2.IMPORT_OUTCOME_INVALID,
    ImportOutcome.LIMIT_REACHED: core_pb2.IMPORT_OUTCOME_LIMIT_REACHED,
}

PLAN_CHANGE_STATUSES = {
    PlanChangeStatus.APPLIED: core_pb2.PLAN_CHANGE_STATUS_APPLIED,
    PlanChangeStatus.PENDING_APPROVAL: core_pb2.PLAN_CHANGE_STATUS_PENDING_APPROVAL,
}


def plan_change_response(change: PlanChange) -> core_pb2.ChangePlanResponse:
    return core_pb2.ChangePlanResponse(
        settings=change.settings,
        status=PLAN_CHANGE_STATUSES[change.status],
        confirmation_url=change.confirmation_url,
        subscription_id=change.subscription_id,
    )


def customer_proto(customer: Customer) -> core_pb2.Customer:
    message = core_pb2.Customer(
        customer_id=customer.customer_id,
        shopify_customer_id=customer.shopify_customer_id,
        user_id=customer.user_id or "",
        email=customer.email or "",
        first_name=customer.first_name or "",
        last_name=customer.last_name or "",
        account_linked=customer.account_linked,
        rfm_segment=customer.rfm_segment,  # type: ignore[arg-type]
        create_time=timestamp(customer.created_at),
    )
    if customer.rfm_score is not None:
        message.rfm_score.CopyFrom(customer.rfm_score)
    if customer.redacted_at is not None:
        message.redact_time.CopyFrom(timestamp(customer.redacted_at))
    return message


def usage_metric_proto(usage: MetricUsage) -> core_pb2.UsageMetric:
    return core_pb2.UsageMetric(
        metric=usage.metric, used=usage.used, limit=usage.limit, period=usage.period
    )


def import_response(result: ImportResult) -> core_pb2.ImportCustomersResponse:
    return core_pb2.ImportCustomersResponse(
        import_id=result.import_id,
        status=result.status,
        results=[
            core_pb2.ImportItemResult(
                index=item["index"],
                shopify_customer_id=item["shopify_customer_id"],
                outcome=IMPORT_OUTCOMES[item["outcome"]],
                customer_id=item["customer_id"],
                error=item["error"],
            )
            for item in result.items
        ],
    )

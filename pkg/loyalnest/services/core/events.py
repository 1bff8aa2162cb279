"""What Core tells the mesh: program_settings.updated, plan_limit_warning, customer.*."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import field_mask_pb2

from loyalnest.gen.events.v1 import core_pb2 as core_events
from loyalnest.services.core.domain import Customer, PlanLimits, ProgramSettings

# The consumer group of every Core process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.core"


def program_settings_updated(settings: ProgramSettings) -> core_events.ProgramSettingsUpdated:
    # The whole state, not a diff: a consumer keeps the highest version and needs no other.
    return core_events.ProgramSettingsUpdated(settings=settings)


def plan_limit_warning(
    plan: PlanLimits, metric: str, used: int, limit: int
) -> core_events.PlanLimitWarning:
    return core_events.PlanLimitWarning(plan=plan.plan, metric=metric, used=used, limit=limit)


def customer_created(customer: Customer) -> core_events.CustomerCreated:
    # No email or names: events fan out to every service and to topic retention.
    return core_events.CustomerCreated(
        customer_id=customer.customer_id,
        shopify_customer_id=customer.shopify_customer_id,
        user_id=customer.user_id or "",
    )


def customer_updated(customer_id: str, changed: Iterable[str]) -> core_events.CustomerUpdated:
    return core_events.CustomerUpdated(
        customer_id=customer_id, update_mask=field_mask_pb2.FieldMask(paths=sorted(changed))
    )

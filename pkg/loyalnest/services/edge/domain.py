"""The edge's values: what became of a webhook delivery, rate-limit tiers and decisions. No
gRPC, PostgreSQL or Redis. Deliveries and their signatures are the sub-module webhooks.py."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pydantic import BaseModel, Field


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"


class PlanRateLimit(BaseModel):
    """One plan's token bucket, per merchant and endpoint."""

    model_config = {"frozen": True}

    # Requests an endpoint may take at once after a quiet spell (the bucket's size).
    burst: int = Field(gt=0)
    # Sustained rate: tokens added back per second.
    requests_per_second: float = Field(gt=0)


DEFAULT_PLAN_LIMITS = {
    "free": PlanRateLimit(burst=60, requests_per_second=10),
    "plus": PlanRateLimit(burst=600, requests_per_second=100),
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: PlanRateLimit
    remaining: int
    retry_after_seconds: float
    reset_seconds: float

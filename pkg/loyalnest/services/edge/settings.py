"""Configuration of the edge service (`LOYALNEST_*`)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from loyalnest.platform.config import ServiceSettings


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


class EdgeSettings(ServiceSettings):
    # The Shopify app's client secret: X-Shopify-Hmac-SHA256 is signed with it. After a
    # rotation Shopify may sign with the old secret for up to an hour: list it in
    # `shopify_api_previous_secrets` (JSON list) meanwhile.
    shopify_api_secret: SecretStr
    shopify_api_previous_secrets: list[SecretStr] = []
    # Deliveries older than this (X-Shopify-Triggered-At) are still accepted (Shopify retries
    # for 4 hours) but logged as stale.
    webhook_stale_after_seconds: float = Field(3600.0, gt=0)
    # The Redis fast path of deduplication remembers an event id this long; the PostgreSQL
    # record (webhook_idempotency_keys) is the authority either way.
    webhook_seen_ttl_seconds: int = Field(48 * 3600, gt=0)
    # How long a process remembers Auth's ValidateMerchant answer for a shop's merchant
    # (deliveries for unknown or uninstalled merchants are acknowledged and skipped): an
    # uninstall takes effect within it. Needs LOYALNEST_AUTH_TARGET and
    # LOYALNEST_SERVICE_CREDENTIAL (the edge's); without them nothing is skipped.
    webhook_merchant_cache_seconds: float = Field(30.0, ge=0)

    # Per-plan token buckets (JSON: {"free": {"burst": 60, "requests_per_second": 10}, ...}).
    rate_limit_plans: dict[str, PlanRateLimit] = dict(DEFAULT_PLAN_LIMITS)
    # The plan of a merchant whose program_settings.updated has not been seen.
    rate_limit_default_plan: str = "free"
    # Redis unreachable: let requests through (counted) rather than refuse every merchant.
    rate_limit_fail_open: bool = True
    # How long a process keeps a merchant's plan before reading it again.
    rate_limit_plan_cache_seconds: float = Field(30.0, gt=0)

"""A merchant's loyalty program before it saves its own: one definition for Core, which
serves it, and for every service that keeps a copy of Core's `program_settings.updated` and
must assume the same program for a merchant it has not heard about yet."""

from __future__ import annotations

from datetime import timedelta

from google.protobuf import duration_pb2

from loyalnest.gen.events.v1 import core_pb2

# A typical return window: points of an order become spendable once it has passed.
DEFAULT_PENDING_PERIOD = timedelta(days=14)


def default_program(plan: core_pb2.PlanLimits | None = None) -> core_pb2.ProgramSettings:
    """Version 0: never saved. Without `plan` the plan is unknown and unlimited."""
    pending = duration_pb2.Duration()
    pending.FromTimedelta(DEFAULT_PENDING_PERIOD)
    return core_pb2.ProgramSettings(
        version=0,
        program_enabled=True,
        points_per_currency_unit="1",
        rounding=core_pb2.POINTS_ROUNDING_DOWN,
        signup_bonus_points=0,
        points_expiry_days=0,
        pending_period=pending,
        plan=plan,
    )

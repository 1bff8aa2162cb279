"""The shape of a cross-merchant isolation table (tests/integration/test_tenant_isolation.py).

Apart from the test module so that a service's own tests can define its table
(`ISOLATION`, as `loyalnest new-service` scaffolds it) without importing the test module that
imports them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

Metadata = tuple[tuple[str, str], ...]
# A case's call as merchant A: (channel, A's metadata, what B arranged) -> response.
Attack = Callable[[grpc.aio.Channel, Metadata, dict[str, Any]], Awaitable[Message]]
DENIED = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED})


@dataclass(frozen=True)
class Case:
    attack: Attack
    # A list, or a create in A's own namespace: A's call may succeed, showing none of B's ids.
    may_succeed: bool = False
    # Further refusals that are right for this case (e.g. B's page token: INVALID_ARGUMENT).
    also_denied: frozenset[grpc.StatusCode] = frozenset()


@dataclass(frozen=True)
class Table:
    # B's data: returns what the cases need; its "secrets" are ids A must never see.
    arrange: Callable[[grpc.aio.Channel, Metadata], Awaitable[dict[str, Any]]]
    # B's view of everything it arranged; compared before and after A's calls.
    snapshot: Callable[[grpc.aio.Channel, Metadata, dict[str, Any]], Awaitable[Any]]
    # Method name -> cases.
    cases: Mapping[str, list[Case]] = field(default_factory=dict)
    # B's data no RPC can create (e.g. what arrives by event): written to the service's
    # database directly, (database_url, B's merchant id) -> more of what the cases need.
    seed: Callable[[str, str], Awaitable[dict[str, Any]]] | None = None
    # An internal gRPC service (`internal`: no user token passes): A and B call it as this
    # LoyalNest service, with a service token acting for their merchant.
    internal_caller: str | None = None

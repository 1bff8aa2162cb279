"""Whom a service calls, declared once, and the channels to them.

    CALLS = Calls(auth=auth_pb2_grpc.AuthServiceStub, roles=roles_pb2_grpc.RolesServiceStub)
    SPEC = ServiceSpec(name="auth", ..., calls=CALLS)

    async def build(settings):
        downstream = CALLS.connect(settings, caller="auth")  # one channel per callee
        roles = downstream.stub(roles_pb2_grpc.RolesServiceStub)
        ...
        components.cleanup.append(downstream.close)

The declaration is the one source of the service's outgoing edges: the chart derives each
component's callee targets and NetworkPolicy egress from it (`python -m loyalnest.deploy`),
the local stack gives each service the addresses of exactly the services it declares.

Targets (`CallSettings`), per callee: LOYALNEST_CALL_TARGETS (JSON, callee -> gRPC target),
else LOYALNEST_CALL_TARGET_TEMPLATE with `{service}` replaced; a declared callee with neither
stops the service at start-up. Each channel's deadlines and retries are derived from the
callee's proto (loyalnest.platform.client).

Tokens: inside an RPC a call forwards the caller's token; with LOYALNEST_SERVICE_CREDENTIAL set,
`connect` also fetches the service's own tokens from Auth (which the service must then declare),
sent alongside the caller's or, with no caller (a consumer, a job, inside
`auth.context.acting_for(merchant)`), alone.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from loyalnest.gen.platform.v1 import personal_data_pb2_grpc
from loyalnest.platform.auth.service_tokens import ServiceTokenSource
from loyalnest.platform.client import ServiceTokens, open_channel
from loyalnest.platform.config import SERVICE_PLACEHOLDER, CallSettings

StubT = TypeVar("StubT")

# Platform contracts that many services serve (loyalnest.platform.personal_data): one stub type
# may be declared under several callee names, each reached on `Downstream.channel(name)`.
SHARED_CONTRACTS: frozenset[type[Any]] = frozenset({personal_data_pb2_grpc.PersonalDataServiceStub})

# The service that issues service tokens (`IssueServiceToken`).
AUTH = "auth"
TARGETS_ENV = "LOYALNEST_CALL_TARGETS"
TEMPLATE_ENV = "LOYALNEST_CALL_TARGET_TEMPLATE"
CREDENTIAL_ENV = "LOYALNEST_SERVICE_CREDENTIAL"


class CallConfigError(ValueError):
    """The calls a service declares cannot be made with its configuration."""


def service_descriptor(stub_type: type[Any]) -> ServiceDescriptor:
    """The descriptor of the gRPC service a generated stub class calls
    (`x_pb2_grpc.FooServiceStub` -> `x_pb2.DESCRIPTOR.services_by_name["FooService"]`)."""
    module, name = stub_type.__module__, stub_type.__name__
    if not (module.endswith("_pb2_grpc") and name.endswith("Stub")):
        raise TypeError(f"{module}.{name} is not a generated gRPC stub (x_pb2_grpc.FooStub)")
    messages = importlib.import_module(module.removesuffix("_grpc"))
    try:
        descriptor: ServiceDescriptor = messages.DESCRIPTOR.services_by_name[
            name.removesuffix("Stub")
        ]
    except KeyError:
        raise TypeError(f"{module}.{name}: no such service in {messages.__name__}") from None
    return descriptor


def dns_name(service: str) -> str:
    """The callee's name as a DNS label (Kubernetes objects): `_` is not allowed there."""
    return service.replace("_", "-")


def resolve_target(settings: CallSettings, callee: str, *, caller: str) -> str:
    """Where `callee` answers: LOYALNEST_CALL_TARGETS, else the template."""
    target = settings.call_targets.get(callee)
    if target:
        return target
    if settings.call_target_template:
        return settings.call_target_template.replace(SERVICE_PLACEHOLDER, dns_name(callee))
    example = json.dumps({callee: f"dns:///{dns_name(callee)}.loyalnest.svc.cluster.local:50051"})
    raise CallConfigError(
        f"{caller} calls {callee}, but no target is configured for it: set {TARGETS_ENV} "
        f"(JSON, e.g. '{example}') or {TEMPLATE_ENV} "
        f"(e.g. dns:///{SERVICE_PLACEHOLDER}.loyalnest.svc.cluster.local:50051)"
    )


class Calls:
    """The services a service calls: component name -> generated stub class."""

    def __init__(self, **stubs: type[Any]) -> None:
        self._stubs = dict(sorted(stubs.items()))
        # Resolved now: a stub that is not a generated one fails at import, not at the call.
        self._descriptors = {name: service_descriptor(stub) for name, stub in self._stubs.items()}
        owners: dict[type[Any], str] = {}
        for name, stub in self._stubs.items():
            if stub in SHARED_CONTRACTS:
                continue  # reached on Downstream.channel(name)
            if stub in owners:
                raise ValueError(f"{stub.__name__} is declared for {owners[stub]} and {name}")
            owners[stub] = name
        self._owners = owners

    @property
    def services(self) -> tuple[str, ...]:
        """The callees' component names, sorted."""
        return tuple(self._stubs)

    @property
    def stubs(self) -> Mapping[str, type[Any]]:
        return dict(self._stubs)

    def __repr__(self) -> str:
        return f"Calls({', '.join(f'{n}={s.__name__}' for n, s in self._stubs.items())})"

    def connect(
        self, settings: CallSettings, *, caller: str, tokens: ServiceTokens | None = None
    ) -> Downstream:
        """Channels to every callee, from `settings` (see the module doc). `tokens` replaces
        the ServiceTokenSource built from LOYALNEST_SERVICE_CREDENTIAL (Auth itself, which
        mints its own)."""
        targets = {name: resolve_target(settings, name, caller=caller) for name in self._stubs}
        owned: ServiceTokenSource | None = None
        # With customer pseudonyms on, the credential may be only the event loops' (for the
        # edge's CustomerPseudonymService, platform/events/pseudonym_client.py).
        for_calls = AUTH in targets or not getattr(settings, "customer_pseudonyms", False)
        if tokens is None and settings.service_credential is not None and for_calls:
            if AUTH not in targets:
                raise CallConfigError(
                    f"{caller} has {CREDENTIAL_ENV} but does not declare {AUTH} among its calls: "
                    f"service tokens come from {AUTH} (declare it, e.g. Calls({AUTH}=...))"
                )
            owned = ServiceTokenSource(
                caller, settings.service_credential.get_secret_value(), targets[AUTH]
            )
            tokens = owned
        channels = {
            name: open_channel(
                targets[name],
                services=(self._descriptors[name],),
                timeout_seconds=settings.call_timeout_seconds,
                max_attempts=settings.call_max_attempts,
                service_tokens=tokens,
            )
            for name in self._stubs
        }
        return Downstream(caller, self._owners, channels, targets, owned)


class Downstream:
    """Open channels to a service's callees; `close()` on shutdown."""

    def __init__(
        self,
        caller: str,
        owners: Mapping[type[Any], str],
        channels: Mapping[str, grpc.aio.Channel],
        targets: Mapping[str, str],
        tokens: ServiceTokenSource | None,
    ) -> None:
        self.caller = caller
        self.targets = dict(targets)
        self._owners = dict(owners)
        self._channels = dict(channels)
        self._tokens = tokens
        self._stubs: dict[type[Any], Any] = {}

    def stub(self, stub_type: type[StubT]) -> StubT:
        """The stub of a declared callee, on its channel (one instance per type)."""
        stub = self._stubs.get(stub_type)
        if stub is None:
            name = self._owners.get(stub_type)
            if name is None:
                declared = ", ".join(f"{n}={t.__name__}" for t, n in self._owners.items())
                raise LookupError(
                    f"{self.caller} does not declare a call to {stub_type.__name__} "
                    f"(its Calls: {declared or 'none'})"
                )
            stub = self._stubs[stub_type] = stub_type(self._channels[name])  # type: ignore[call-arg]
        result: StubT = stub
        return result

    def channel(self, service: str) -> grpc.aio.Channel:
        return self._channels[service]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        if self._tokens is not None:
            await self._tokens.close()

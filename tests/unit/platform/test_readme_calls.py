"""The README's "Call another service" snippet runs as written against the real API."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from loyalnest.gen.auth.v1.auth_pb2_grpc import AuthServiceStub
from loyalnest.gen.roles.v1 import roles_pb2_grpc
from loyalnest.gen.users.v1.users_pb2 import GetUserRequest
from loyalnest.gen.users.v1.users_pb2_grpc import UsersServiceStub
from loyalnest.platform.auth.context import acting_for
from loyalnest.platform.calls import CallConfigError, Calls
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.server import ServiceComponents, ServiceSpec

README = Path(__file__).resolve().parents[3] / "README.md"


def _python_blocks(heading: str) -> list[str]:
    section = README.read_text().split(f"### {heading}\n", 1)[1].split("\n#", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _namespace() -> dict[str, Any]:
    return {
        "Calls": Calls,
        "roles_pb2_grpc": roles_pb2_grpc,
        "ServiceSettings": ServiceSettings,
        "ServiceComponents": ServiceComponents,
        "ServiceSpec": ServiceSpec,
    }


async def test_the_call_another_service_snippet_declares_connects_and_closes() -> None:
    (snippet,) = _python_blocks("Call another service")
    assert len(snippet.strip().splitlines()) <= 10
    namespace = _namespace()
    exec(snippet, namespace)  # the snippet as documented
    spec: ServiceSpec[Any] = namespace["SPEC"]
    assert spec.calls.services == ("roles",)
    settings = ServiceSettings(call_target_template="dns:///{service}.loyalnest.svc:50051")
    components = await spec.build(settings)
    (close,) = components.cleanup
    await close()
    # Without a target, the build (so the service's start) fails naming the variables.
    with pytest.raises(CallConfigError, match="LOYALNEST_CALL_TARGETS"):
        await spec.build(ServiceSettings())


def test_the_service_identity_snippet_uses_the_real_api() -> None:
    (snippet,) = _python_blocks("Service identity")
    code = compile(snippet, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    available = {
        "Calls": Calls,
        "AuthServiceStub": AuthServiceStub,
        "UsersServiceStub": UsersServiceStub,
        "GetUserRequest": GetUserRequest,
        "acting_for": acting_for,
    }
    # Every free name is the real API or a value the reader has (settings, ids).
    free = {n.id for n in ast.walk(ast.parse(snippet)) if isinstance(n, ast.Name)}
    assert free - {"downstream"} <= set(available) | {"settings", "merchant_id", "user_id"}
    assert {"connect", "stub", "GetUser"} <= set(code.co_names)
    users = GetUserRequest.DESCRIPTOR.file.services_by_name["UsersService"]
    assert "GetUser" in users.methods_by_name

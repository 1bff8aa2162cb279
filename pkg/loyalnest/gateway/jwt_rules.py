"""The gateway's `jwt_authn` filter, derived from the RPCs' declared access policies.

Placed after the transcoder, it sees `/pkg.Service/Method` for REST, gRPC and gRPC-Web alike,
so one rule per public RPC covers every protocol, and a final catch-all requires a token for
everything else (a rule written for REST paths would match nothing there and leave the API
open). Audience, token type and revocation are left to the services: Envoy would answer a wrong
audience with 403, while a token that is not for us is an authentication failure (401).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loyalnest.gateway.descriptors import load_descriptor_set
from loyalnest.gen.options.v1 import access_pb2

PROVIDER = "loyalnest"
# Where the verified claims are kept for later filters (the rate limiter's merchant).
PAYLOAD_METADATA_KEY = "jwt_payload"
# Infrastructure that orchestrators and grpcurl reach without a token.
PUBLIC_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def public_methods(descriptor_set_path: Path) -> list[str]:
    """gRPC paths of every RPC declared `(loyalnest.options.v1.access) = {public: true}`."""
    paths = []
    for file in load_descriptor_set(descriptor_set_path).file:
        for service in file.service:
            for method in service.method:
                options: Any = method.options
                if (
                    options.HasExtension(access_pb2.access)
                    and options.Extensions[access_pb2.access].public
                ):
                    paths.append(f"/{file.package}.{service.name}/{method.name}")
    return sorted(paths)


def jwt_authn_filter(descriptor_set_path: Path, jwks_path: Path, issuer: str) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [{"match": {"prefix": p}} for p in PUBLIC_PREFIXES]
    rules += [{"match": {"path": p}} for p in public_methods(descriptor_set_path)]
    rules.append({"match": {"prefix": "/"}, "requires": {"provider_name": PROVIDER}})
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3"
            ".JwtAuthentication",
            "providers": {
                PROVIDER: {
                    "issuer": issuer,
                    "local_jwks": {"filename": str(jwks_path)},
                    # Explicit: the default would also read `?access_token=` from URLs.
                    "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                    # Services verify the token again (defence in depth).
                    "forward": True,
                    "payload_in_metadata": PAYLOAD_METADATA_KEY,
                }
            },
            "rules": rules,
        },
    }

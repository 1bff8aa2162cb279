"""The gateway's `jwt_authn` filter, derived from the RPCs' declared access policies.

Placed after the transcoder, it sees `/pkg.Service/Method` for REST, gRPC and gRPC-Web alike,
so one rule per public RPC covers every protocol, and a final catch-all requires a token for
everything else (a rule written for REST paths would match nothing there and leave the API
open). Audience, token type and revocation are left to the services: Envoy would answer a wrong
audience with 403, while a token that is not for us is an authentication failure (401).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loyalnest.gateway.descriptors import load_descriptor_set
from loyalnest.gateway.openapi import OPENAPI_PATH
from loyalnest.gen.options.v1 import access_pb2

PROVIDER = "loyalnest"
# Where the verified claims are kept for later filters (the rate limiter's merchant).
PAYLOAD_METADATA_KEY = "jwt_payload"
# Auth's JWKS over REST (AuthService.GetJwks, public), fetched by Envoy through its own listener.
JWKS_HTTP_PATH = "/v1/api/auth/jwks"
JWKS_GRPC_PATH = "/loyalnest.auth.v1.AuthService/GetJwks"
JWKS_CLUSTER = "loyalnest_jwks"
JWKS_CACHE_SECONDS = 30


@dataclass(frozen=True)
class GatewayJwks:
    """The JWKS as Auth publishes it, fetched by Envoy from its own listener on `port`
    (127.0.0.1), so a rotated key reaches the gateway without a restart: Envoy refetches in the
    background every `cache_seconds` (`async_fetch`), and retries a failed fetch after a second
    (Auth may start after the gateway). Publish a new key at least `cache_seconds` before
    signing with it: Envoy does not refetch on an unknown `kid`."""

    port: int
    cache_seconds: int = JWKS_CACHE_SECONDS

    def provider_jwks(self) -> dict[str, Any]:
        return {
            "remote_jwks": {
                "http_uri": {
                    "uri": f"http://127.0.0.1:{self.port}{JWKS_HTTP_PATH}",
                    "cluster": JWKS_CLUSTER,
                    "timeout": "2s",
                },
                "cache_duration": f"{self.cache_seconds}s",
                # Fetched on the main thread at start and on expiry; the listener does not
                # wait for the first fetch (it goes through this very listener).
                "async_fetch": {"fast_listener": True, "failed_refetch_duration": "1s"},
            }
        }

    def cluster(self) -> dict[str, Any]:
        address = {"socket_address": {"address": "127.0.0.1", "port_value": self.port}}
        return {
            "name": JWKS_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": JWKS_CLUSTER,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
            },
        }


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


# Verified tokens an Envoy worker remembers (least recently used go first); each holds the
# token and its parsed claims, ~2 KiB.
JWT_CACHE_SIZE = 4096


def jwt_authn_filter(
    descriptor_set_path: Path, jwks: Path | GatewayJwks, issuer: str
) -> dict[str, Any]:
    """The filter; with a `Path`, Envoy reads that JWKS file once, at start (`local_jwks`);
    with `GatewayJwks` it follows Auth's published keys (add `jwks.cluster()` to the
    bootstrap's clusters)."""
    rules: list[dict[str, Any]] = [{"match": {"prefix": p}} for p in PUBLIC_PREFIXES]
    rules += [{"match": {"path": p}} for p in public_methods(descriptor_set_path)]
    # The API's description, answered by Envoy itself (not an RPC: matched on its REST path).
    rules.append({"match": {"path": OPENAPI_PATH}})
    rules.append({"match": {"prefix": "/"}, "requires": {"provider_name": PROVIDER}})
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3"
            ".JwtAuthentication",
            "providers": {
                PROVIDER: {
                    "issuer": issuer,
                    **(
                        jwks.provider_jwks()
                        if isinstance(jwks, GatewayJwks)
                        else {"local_jwks": {"filename": str(jwks)}}
                    ),
                    # Explicit: the default would also read `?access_token=` from URLs.
                    "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                    # Services verify the token again (defence in depth).
                    "forward": True,
                    "payload_in_metadata": PAYLOAD_METADATA_KEY,
                    # A client sends one token for many calls: verified once, it is taken
                    # from this cache (still checked against its exp and nbf) instead of
                    # verifying the signature and parsing the claims again.
                    "jwt_cache_config": {"jwt_cache_size": JWT_CACHE_SIZE},
                }
            },
            "rules": rules,
        },
    }

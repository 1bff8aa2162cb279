"""`helm test` for a release: the gateway as a client sees it, from inside the cluster.

    python -m loyalnest.gateway.smoke --gateway gateway.NS.svc:8080 --ops gateway-ops.NS.svc:9902 \\
        --keyset /etc/loyalnest/signing-keys/signing-keys.json

1. Envoy is ready (GET /ready on the ops listener).
2. Server reflection through the gateway lists the API (what `grpcurl list` does).
3. A REST call without a token is refused (401); with a short-lived token minted from the
   release's signing keys for a test merchant, a read (GET a balance) reaches Points (200, or
   its NOT_FOUND for a customer without a ledger).

Read-only: nothing is written for the test merchant. Exits 0 when all pass, 1 naming the first
failure. Retries for a while: Envoy fetches Auth's JWKS in the background after it starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

TEST_MERCHANT = "helm-test"
TEST_CUSTOMER = "helm-test-customer"


class SmokeFailure(RuntimeError):
    pass


def _http(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def check_ready(ops: str) -> str:
    status, body = _http(f"http://{ops}/ready")
    if status != 200:
        raise SmokeFailure(f"GET {ops}/ready: {status} {body[:200]}")
    return f"envoy ready: {body.strip()}"


def list_services(gateway: str, timeout: float = 5.0) -> list[str]:
    """The services server reflection lists through the gateway (grpcurl's `list`)."""
    with grpc.insecure_channel(gateway) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        try:
            responses = stub.ServerReflectionInfo(iter([request]), timeout=timeout)
            names = [s.name for r in responses for s in r.list_services_response.service]
        except grpc.RpcError as exc:
            failure = f"reflection through {gateway}: {exc.code()} {exc.details()}"
            raise SmokeFailure(failure) from exc
    return sorted(names)


def check_reflection(gateway: str) -> str:
    names = list_services(gateway)
    api = [n for n in names if n.startswith("loyalnest.")]
    if not api:
        raise SmokeFailure(f"reflection through {gateway} lists no loyalnest service: {names}")
    return f"reflection lists {len(api)} API services"


def mint_token(keyset: Path, issuer: str, audience: str) -> str:
    from loyalnest.platform.auth.keys import load_keyset
    from loyalnest.platform.auth.tokens import TokenIssuer

    minted = TokenIssuer(load_keyset(keyset), issuer=issuer, audience=audience)
    return minted.mint(
        subject="helm-test",
        merchant_id=TEST_MERCHANT,
        permissions=["points:read"],
        ttl_seconds=300,
    )


def check_rest(gateway: str, token: str) -> str:
    url = f"http://{gateway}/v1/api/points/balance/{TEST_CUSTOMER}"
    status, body = _http(url)
    if status != 401:
        raise SmokeFailure(f"GET {url} without a token: {status}, expected 401")
    status, body = _http(url, token)
    # The service's answer, transcoded: a balance, or NOT_FOUND (a ledger that keeps no row
    # for a customer without movements) as google.rpc.Status JSON. Either proves the token was
    # accepted and the call reached Points; Envoy's own 404 (no route) has no such body.
    answered = status == 200 or (status == 404 and _grpc_code(body) == grpc.StatusCode.NOT_FOUND)
    if not answered:
        raise SmokeFailure(f"GET {url} with a token: {status} {body[:300]}")
    return f"REST with a token: {status} from Points"


def _grpc_code(body: str) -> grpc.StatusCode | None:
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        return None
    return next((c for c in grpc.StatusCode if c.value[0] == code), None)


def _retrying(check: Callable[[], str], patience: float) -> str:
    deadline = time.monotonic() + patience
    while True:
        try:
            return check()
        except SmokeFailure:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True, help="host:port of the gateway's API")
    parser.add_argument("--ops", required=True, help="host:port of the gateway's ops listener")
    parser.add_argument("--keyset", type=Path, help="the release's signing keys (REST check)")
    parser.add_argument("--issuer", default="loyalnest-auth")
    parser.add_argument("--audience", default="loyalnest")
    parser.add_argument("--patience", type=float, default=60.0, help="seconds of retries")
    args = parser.parse_args(argv)
    checks: list[Callable[[], str]] = [
        lambda: check_ready(args.ops),
        lambda: check_reflection(args.gateway),
    ]
    if args.keyset is not None:
        token = mint_token(args.keyset, args.issuer, args.audience)
        checks.append(lambda: check_rest(args.gateway, token))
    try:
        for check in checks:
            print(_retrying(check, args.patience), flush=True)
    except SmokeFailure as exc:
        print(f"FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

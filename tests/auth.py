"""Access tokens for tests, signed by a keyset whose public JWKS every service under test
trusts (LOYALNEST_JWT_JWKS_PATH, set in tests/conftest.py before any service starts)."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from loyalnest.platform.auth.keys import KeySet
from loyalnest.platform.auth.tokens import SERVICE, TokenIssuer
from loyalnest.platform.config import ServiceSettings

KEYSET = KeySet.generate(local=True)
_DIR = Path(tempfile.mkdtemp(prefix="loyalnest-test-keys-"))
_DIR.chmod(0o755)
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
JWKS_PATH = _DIR / "jwks.json"
JWKS_PATH.write_text(json.dumps(KEYSET.public_jwks()))
KEYSET_PATH = _DIR / "signing-keys.json"
KEYSET_PATH.write_text(KEYSET.to_json())

_defaults = ServiceSettings()
ISSUER = TokenIssuer(KEYSET, issuer=_defaults.jwt_issuer, audience=_defaults.jwt_audience)
ALL_POINTS = ("points:read", "points:write", "points:adjust")


def token(merchant_id: str | None, permissions: Iterable[str] = ALL_POINTS, **kw: object) -> str:
    return ISSUER.mint(
        subject="test-user",
        merchant_id=merchant_id,
        permissions=permissions,
        **kw,  # type: ignore[arg-type]
    )


def merchant_metadata(
    merchant_id: str, permissions: Iterable[str] = ALL_POINTS
) -> tuple[tuple[str, str], ...]:
    """gRPC call metadata acting for `merchant_id`."""
    return (("authorization", f"Bearer {token(merchant_id, permissions)}"),)


def merchant_headers(merchant_id: str, permissions: Iterable[str] = ALL_POINTS) -> dict[str, str]:
    """HTTP headers acting for `merchant_id` (REST through the gateway)."""
    return {"authorization": f"Bearer {token(merchant_id, permissions)}"}


def service_metadata(
    service: str, merchant_id: str | None, permissions: Iterable[str], callee: str
) -> tuple[tuple[str, str], ...]:
    """gRPC call metadata of LoyalNest service `service` calling `callee` (its audience),
    acting for `merchant_id` (None: for no merchant, as a relay does)."""
    signed = ISSUER.mint(
        subject=f"service:{service}",
        merchant_id=merchant_id,
        permissions=permissions,
        token_type=SERVICE,
        audience=[f"loyalnest/{callee}"],
    )
    return (("authorization", f"Bearer {signed}"),)

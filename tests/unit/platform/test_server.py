"""The server factory's refusals (pkg/loyalnest/platform/server.py). Async tests: a grpc.aio
server is made inside a running event loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from loyalnest.platform import pagination
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.server import build_server
from tests.auth import JWKS_PATH


async def test_a_cluster_without_a_page_token_key_is_refused(tmp_path: Path) -> None:
    """Only the public JWKS mounted (a cluster): the public development page-token key would
    let a client forge a token that pages past its filter, so the server does not start."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    with pytest.raises(ValueError, match="LOYALNEST_PAGE_TOKEN_KEY is required"):
        build_server(ServiceSettings(jwt_jwks_path=jwks), "points")


async def test_a_given_page_token_key_signs_the_tokens(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    try:
        build_server(ServiceSettings(jwt_jwks_path=jwks, page_token_key="k" * 32), "points")
        signed_with_given = pagination.encode_page_token("scope", 1)
        build_server(ServiceSettings(jwt_jwks_path=JWKS_PATH), "points")  # a developer machine
        assert pagination.encode_page_token("scope", 1) != signed_with_given
    finally:
        pagination.set_signing_key(None)

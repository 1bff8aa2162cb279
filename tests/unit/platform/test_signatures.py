"""platform/signatures.py: Shopify's webhook HMAC (the edge) and integrations' signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from loyalnest.platform.signatures import MalformedSignature, hmac_sha256_base64, matches_any
from loyalnest.services.edge.webhooks import BadSignature, signature, verify_signature


def test_the_signature_is_base64_hmac_sha256() -> None:
    expected = base64.b64encode(hmac.new(b"s", b"body", hashlib.sha256).digest()).decode()
    assert hmac_sha256_base64(b"s", b"body") == expected
    assert signature(b"body", "s") == expected  # the edge's, lifted here


def test_any_accepted_secret_matches() -> None:
    header = hmac_sha256_base64(b"new", b"m")
    assert matches_any(b"m", header, [b"old", b"new"])
    assert not matches_any(b"m", header, [b"old"])
    assert not matches_any(b"m2", header, [b"new"])
    assert not matches_any(b"m", header, [])
    with pytest.raises(MalformedSignature):
        matches_any(b"m", "%%%", [b"new"])


def test_the_edge_still_refuses_as_before() -> None:
    with pytest.raises(BadSignature, match="is not base64"):
        verify_signature(b"b", "%%%", ["s"])
    with pytest.raises(BadSignature, match="does not match"):
        verify_signature(b"b", signature(b"b", "t"), ["s"])
    with pytest.raises(BadSignature, match="missing"):
        verify_signature(b"b", None, ["s"])
    verify_signature(b"b", signature(b"b", "s"), ["t", "s"])

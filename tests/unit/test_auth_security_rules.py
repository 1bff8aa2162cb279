"""Issue 14, Auth's pure rules: where a client's address comes from, what a TOTP code is,
which shop domains pass (fullmatch everywhere), and the fixed answer to a malformed token."""

from __future__ import annotations

import argparse
from ipaddress import ip_network

import pytest

from loyalnest.cli import _shop_domain
from loyalnest.platform.auth.tokens import TokenVerifier
from loyalnest.platform.errors import Unauthenticated
from loyalnest.services.auth.credentials import accepted_totp_step, totp_code
from loyalnest.services.auth.domain import peer_address, source_address
from loyalnest.services.auth.shopify import valid_shop
from loyalnest.services.edge.webhooks import SHOP_DOMAIN_RE
from tests.auth import KEYSET

LOOPBACK = [ip_network("127.0.0.0/8"), ip_network("::1/128")]


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("ipv4:10.0.0.7:5501", "10.0.0.7"),
        ("ipv6:[::1]:5501", "::1"),
        ("ipv6:[2001:db8::2]:443", "2001:db8::2"),
        ("unix:/run/auth.sock", "unix:/run/auth.sock"),
    ],
)
def test_peer_address(peer: str, expected: str) -> None:
    assert peer_address(peer) == expected


def test_source_address_trusts_only_the_gateways_own_entry() -> None:
    gateway = "ipv4:127.0.0.1:40000"
    # The gateway appends the address it saw last; what the client sent before it is ignored.
    assert source_address(gateway, ["6.6.6.6, 203.0.113.7"], LOOPBACK) == "203.0.113.7"
    assert source_address(gateway, ["6.6.6.6", "203.0.113.7"], LOOPBACK) == "203.0.113.7"
    assert source_address(gateway, [], LOOPBACK) == "127.0.0.1"
    assert source_address(gateway, ["not-an-ip"], LOOPBACK) == "127.0.0.1"
    # A peer that is not a trusted proxy is the client, whatever header it sends.
    assert source_address("ipv4:198.51.100.4:1", ["203.0.113.7"], LOOPBACK) == "198.51.100.4"
    assert source_address(gateway, ["203.0.113.7"], []) == "127.0.0.1"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("123456", "123456"),
        (" 123 456 ", "123456"),
        ("١٢٣٤٥٦", None),  # Arabic-Indic digits: str.isdigit() says yes
        ("\uff11\uff12\uff13\uff14\uff15\uff16", None),  # fullwidth
        ("12345", None),
        ("1234567", None),
        ("12345a", None),
        ("", None),
    ],
)
def test_totp_code_is_six_ascii_digits(code: str, expected: str | None) -> None:
    assert totp_code(code) == expected


def test_a_non_ascii_code_is_no_type_error() -> None:
    # Before: hmac.compare_digest("123456", "١٢٣٤٥٦") raised TypeError (INTERNAL).
    assert accepted_totp_step("JBSWY3DPEHPK3PXP", "١٢٣٤٥٦", last_step=None) is None


@pytest.mark.parametrize(
    "shop",
    [
        "shop.myshopify.com\n",
        "shop.myshopify.com\nx",
        " shop.myshopify.com",
        "shop.myshopify.com.evil.com",
        "-shop.myshopify.com",
    ],
)
def test_shop_domains_must_match_whole(shop: str) -> None:
    assert not valid_shop(shop)
    assert not SHOP_DOMAIN_RE.fullmatch(shop)
    with pytest.raises(argparse.ArgumentTypeError):
        _shop_domain(shop)


def test_a_shop_domain_passes() -> None:
    assert valid_shop("snow-devil_2.myshopify.com")
    assert _shop_domain("snow-devil_2.myshopify.com") == "snow-devil_2.myshopify.com"


@pytest.mark.parametrize("token", ["abc", "a.b.c", "eyJhbGciOiJFZERTQSJ9..", "x.y"])
def test_a_malformed_token_gets_a_fixed_message(token: str) -> None:
    verifier = TokenVerifier(KEYSET.public_jwks(), issuer="loyalnest-auth", audience="loyalnest")
    with pytest.raises(Unauthenticated) as caught:
        verifier.verify(token)
    assert caught.value.message in {"invalid token", "token signed by an unknown key"}

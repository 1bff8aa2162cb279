"""The Auth service's building blocks without servers: Shopify signatures, field encryption,
passwords and TOTP codes."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from loyalnest.platform.crypto import BlindIndex, FieldCipher, InvalidCiphertext, decode_key
from loyalnest.platform.errors import Unauthenticated, Unavailable
from loyalnest.services.auth import credentials, shopify

SECRET = "hush"
# Shopify's documented example: these parameters signed with "hush".
DOC_PARAMS = {
    "code": "0907a61c0c8d55e99db179b68161bc00",
    "shop": "some-shop.myshopify.com",
    "state": "0.6784241404160823",
    "timestamp": "1337178173",
}
DOC_HMAC = "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf"
DOC_TIME = datetime.fromtimestamp(1337178173, UTC)


def test_hmac_matches_shopifys_documented_example() -> None:
    assert shopify.query_hmac(DOC_PARAMS, SECRET) == DOC_HMAC
    # hmac itself is not signed, and parameter order does not matter.
    reordered = dict(reversed(list({**DOC_PARAMS, "hmac": "x"}.items())))
    assert shopify.query_hmac(reordered, SECRET) == DOC_HMAC


def test_verify_query_accepts_only_shopifys_fresh_signature() -> None:
    signed = {**DOC_PARAMS, "hmac": DOC_HMAC}
    shopify.verify_query(signed, [SECRET], now=DOC_TIME, max_age_seconds=600)
    shopify.verify_query(  # upper-case hex, and a second (rotated) secret
        {**signed, "hmac": DOC_HMAC.upper()}, ["old", SECRET], now=DOC_TIME, max_age_seconds=600
    )
    bad = [
        ({**signed, "hmac": DOC_HMAC[:-1] + "0"}, DOC_TIME),
        ({**signed, "shop": "other.myshopify.com"}, DOC_TIME),
        ({k: v for k, v in signed.items() if k != "hmac"}, DOC_TIME),
        (signed, DOC_TIME + timedelta(seconds=601)),  # stale
        (signed, DOC_TIME - timedelta(seconds=120)),  # from the future
    ]
    for params, now in bad:
        with pytest.raises(Unauthenticated):
            shopify.verify_query(params, [SECRET], now=now, max_age_seconds=600)
    with pytest.raises(Unauthenticated):
        shopify.verify_query(signed, [""], now=DOC_TIME, max_age_seconds=600)


@pytest.mark.parametrize(
    ("shop", "valid"),
    [
        ("snowdevil.myshopify.com", True),
        ("snow-devil_2.myshopify.com", True),
        ("-snow.myshopify.com", False),
        ("snow.myshopify.com.evil.com", False),
        ("snow.myshopify.com/admin", False),
        ("evil.com", False),
        ("", False),
    ],
)
def test_shop_domain(shop: str, valid: bool) -> None:
    assert shopify.valid_shop(shop) is valid


def test_authorize_url_and_token_response() -> None:
    url = shopify.authorize_url(
        base_url="https://{shop}",
        shop="snowdevil.myshopify.com",
        api_key="key",
        scopes=["read_orders", "write_discounts"],
        redirect_uri="https://app.example/cb",
        state="nonce",
    )
    assert url == (
        "https://snowdevil.myshopify.com/admin/oauth/authorize?client_id=key"
        "&scope=read_orders%2Cwrite_discounts&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"
        "&state=nonce"
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    tokens = shopify.parse_token_response(
        {"access_token": "a", "scope": "x,y", "expires_in": 3600, "refresh_token": "r"}, now
    )
    assert tokens.scopes == ("x", "y") and tokens.refresh_token == "r"
    assert tokens.expires_at == now + timedelta(hours=1)
    legacy = shopify.parse_token_response({"access_token": "a", "scope": "x"}, now)
    assert legacy.expires_at is None and legacy.refresh_token is None
    with pytest.raises(Unavailable):
        shopify.parse_token_response({"scope": "x"}, now)


def test_field_cipher_binds_context_and_rotates_keys() -> None:
    old, new = os.urandom(32), os.urandom(32)
    blob = FieldCipher(old).encrypt("shpat_secret", context="merchants.access_token:m1")
    assert b"shpat_secret" not in blob
    with pytest.raises(InvalidCiphertext):  # copied to another row
        FieldCipher(old).decrypt(blob, context="merchants.access_token:m2")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(InvalidCiphertext):
        FieldCipher(old).decrypt(tampered, context="merchants.access_token:m1")
    with pytest.raises(InvalidCiphertext):  # the old key is no longer configured
        FieldCipher(new).decrypt(blob, context="merchants.access_token:m1")
    rotated = FieldCipher(new, previous=[old])
    assert rotated.decrypt_text(blob, context="merchants.access_token:m1") == "shpat_secret"
    assert rotated.needs_reencryption(blob)
    fresh = rotated.encrypt("shpat_secret", context="c")
    assert not rotated.needs_reencryption(fresh) and fresh != rotated.encrypt(
        "shpat_secret", context="c"
    )


def test_keys_must_be_base64_of_32_bytes() -> None:
    assert len(decode_key(base64.b64encode(os.urandom(32)).decode())) == 32
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match="key"):
            decode_key(bad)


def test_blind_index_is_deterministic_and_keyed() -> None:
    key = os.urandom(32)
    index = BlindIndex(key)
    assert index.digest("a@b.c", context="x") == BlindIndex(key).digest("a@b.c", context="x")
    assert index.digest("a@b.c", context="x") != index.digest("a@b.c", context="y")
    assert index.digest("a@b.c", context="x") != BlindIndex(os.urandom(32)).digest(
        "a@b.c", context="x"
    )


def test_password_hashes() -> None:
    encoded = credentials.hash_password("correct horse battery")
    assert encoded.startswith("scrypt$") and "correct" not in encoded
    assert credentials.verify_password("correct horse battery", encoded)
    assert not credentials.verify_password("correct horse batterz", encoded)
    assert not credentials.verify_password("x", "garbage")


def test_totp_codes_work_once_within_the_drift_window() -> None:
    secret = credentials.new_totp_secret()
    totp = pyotp.TOTP(secret)
    now = 1_800_000_000.0
    step = int(now // 30)
    assert credentials.accepted_totp_step(secret, totp.at(now), last_step=None, now=now) == step
    assert (
        credentials.accepted_totp_step(secret, totp.at(now - 30), last_step=None, now=now)
        == step - 1
    )
    assert (
        credentials.accepted_totp_step(secret, totp.at(now - 90), last_step=None, now=now) is None
    )
    # Used already (or an older one after a newer one).
    assert credentials.accepted_totp_step(secret, totp.at(now), last_step=step, now=now) is None
    assert (
        credentials.accepted_totp_step(secret, totp.at(now - 30), last_step=step - 1, now=now)
        is None
    )
    for junk in ("", "12345", "abcdef", "1234567"):
        assert credentials.accepted_totp_step(secret, junk, last_step=None, now=now) is None

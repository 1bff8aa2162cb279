from __future__ import annotations

import base64
import json

import pytest

from loyalnest.platform import pagination
from loyalnest.platform.errors import InvalidArgument
from loyalnest.platform.validation import Validator


def test_collects_all_violations_before_raising():
    v = Validator()
    v.identifier("customer_id", "")
    v.check(False, "points", "must be positive")
    v.idempotency_key("idempotency_key", "x" * 300)
    with pytest.raises(InvalidArgument) as caught:
        v.raise_if_invalid()
    assert [x.field for x in caught.value.violations] == [
        "customer_id",
        "points",
        "idempotency_key",
    ]


def test_valid_input_passes():
    with Validator() as v:
        v.identifier("customer_id", "gid:shopify-Customer.42@shop")
        v.text("reason", "order #1001", required=True)


@pytest.mark.parametrize("value", ["-leading", "has space", "x" * 129, "semi;colon"])
def test_rejected_identifiers(value):
    with pytest.raises(InvalidArgument), Validator() as v:
        v.identifier("customer_id", value)


def test_page_size_defaults_and_caps():
    assert pagination.page_size(0) == pagination.DEFAULT_PAGE_SIZE
    assert pagination.page_size(10_000) == pagination.MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument):
        pagination.page_size(-1)


def test_page_tokens_round_trip_and_bind_to_their_query():
    token = pagination.encode_page_token("m/c1", 42)
    assert pagination.decode_page_token(token, "m/c1") == 42
    assert pagination.decode_page_token("", "m/c1") is None
    with pytest.raises(InvalidArgument):
        pagination.decode_page_token(token, "m/c2")
    with pytest.raises(InvalidArgument):
        pagination.decode_page_token("!!not-base64", "m/c1")


def test_uuid_fields():
    with Validator() as v:
        v.uuid("user_id", "6f1c2f53-2b0c-4a53-9f55-5c3d8e3b7a10")
    for value, description in (("", "is required"), ("not-a-uuid", "must be a UUID")):
        with pytest.raises(InvalidArgument) as caught, Validator() as v:
            v.uuid("user_id", value)
        assert [(x.field, x.description) for x in caught.value.violations] == [
            ("user_id", description)
        ]


def _unsigned(scope: str, position: object) -> str:
    """A token as they were before signing: base64 of the JSON, which anyone can write."""
    raw = json.dumps({"s": scope, "p": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("position", [-1, 2**63, 10**30, True, 1.5, "3"])
def test_page_tokens_refuse_positions_out_of_range_even_when_signed(position):
    forged = _unsigned("m/c1", position)
    with pytest.raises(InvalidArgument):
        pagination.decode_page_token(forged, "m/c1")
    payload = base64.urlsafe_b64decode(forged + "=" * (-len(forged) % 4))
    signed = forged + "." + base64.urlsafe_b64encode(pagination._mac(payload)).decode()
    with pytest.raises(InvalidArgument):
        pagination.decode_page_token(signed, "m/c1")


def test_page_tokens_are_signed_with_the_configured_key():
    token = pagination.encode_page_token("m/c1", 42)
    payload, _, mac = token.partition(".")
    assert mac  # a signature follows the payload
    with pytest.raises(InvalidArgument):  # unsigned: refused though well-formed
        pagination.decode_page_token(payload, "m/c1")
    tampered = pagination.encode_page_token("m/c1", 43).split(".")[0] + "." + mac
    with pytest.raises(InvalidArgument):
        pagination.decode_page_token(tampered, "m/c1")
    try:
        pagination.set_signing_key(b"another replica's key")
        with pytest.raises(InvalidArgument):
            pagination.decode_page_token(token, "m/c1")
    finally:
        pagination.set_signing_key(None)
    assert pagination.decode_page_token(token, "m/c1") == 42

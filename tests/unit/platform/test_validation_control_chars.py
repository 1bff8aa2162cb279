"""Control characters in text that reaches PostgreSQL: refused as invalid input, never an
INTERNAL (PostgreSQL text cannot hold NUL; the REST fuzzer found it as a 500 on CreateUser)."""

from __future__ import annotations

import pytest

from loyalnest.platform.errors import InvalidArgument
from loyalnest.platform.validation import Validator, is_valid_email


@pytest.mark.parametrize("key", ["k\x00", "\x00", "a\nb", "k\x1b"])
def test_idempotency_key_with_control_characters_is_invalid(key: str) -> None:
    with pytest.raises(InvalidArgument) as refused, Validator() as v:
        v.idempotency_key("idempotency_key", key)
    assert [x.field for x in refused.value.violations] == ["idempotency_key"]


def test_printable_idempotency_keys_pass() -> None:
    with Validator() as v:
        v.idempotency_key("idempotency_key", "order:1001 é ✓")


def test_text_with_nul_is_invalid() -> None:
    with pytest.raises(InvalidArgument), Validator() as v:
        v.text("note", "a\x00b")


def test_email_with_nul_is_invalid() -> None:
    assert not is_valid_email("a\x00@b.co")
    assert is_valid_email("a@b.co")

"""HMAC-SHA256 request signatures, base64 in a header: Shopify's webhook scheme (DESIGN §7),
which LoyalNest also uses for what merchant integrations send (Points' signed activities).

    header = hmac_sha256_base64(secret, message)
    if not matches_any(message, header, secrets): ...   # refuse

`message` is the exact bytes received (the transcoder hands a `google.api.HttpBody` over
untouched), optionally prefixed by what else the sender signs (a timestamp). Verification
compares in constant time and tries every accepted secret, matched or not, so a secret
rotation loses no request and the time taken tells nothing of which secret matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable


class MalformedSignature(ValueError):
    """The header is not base64."""


def hmac_sha256_base64(secret: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(secret, message, hashlib.sha256).digest()).decode()


def matches_any(message: bytes, header: str, secrets: Iterable[bytes]) -> bool:
    """Whether `header` is the signature of `message` under one of `secrets`;
    MalformedSignature when it is not base64."""
    try:
        claimed = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedSignature("not base64") from None
    matched = False
    for secret in secrets:
        expected = hmac.new(secret, message, hashlib.sha256).digest()
        matched |= hmac.compare_digest(expected, claimed)
    return matched

"""Secrets and PII at rest: AES-256-GCM field encryption and keyed blind indexes.

    cipher = FieldCipher.from_base64(settings.x_encryption_key)
    blob = cipher.encrypt("shpat_...", context=f"merchants.access_token:{merchant_id}")
    cipher.decrypt_text(blob, context=...)      # InvalidCiphertext if anything was altered

A ciphertext is `version (1) | key id (4) | nonce (12) | ciphertext + tag`. The key id (a hash
of the key) lets a reader pick the right key, so the key can rotate: configure the new key as
current and keep the old ones as `previous` until every row was rewritten. `context` is bound
as associated data: a ciphertext copied to another row or column does not decrypt.

A blind index is an HMAC-SHA256 of a normalised value under its own key: equality lookups
("find the admin with this email") without storing the value in clear. Its key must stay
fixed for as long as the index exists (rotating it means recomputing the column).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
_VERSION = b"\x01"
_KEY_ID_BYTES = 4
_NONCE_BYTES = 12
_HEADER = len(_VERSION) + _KEY_ID_BYTES + _NONCE_BYTES


class InvalidCiphertext(ValueError):
    """The value was not produced by a configured key for this context, or was altered."""


def decode_key(encoded: str, *, name: str = "key") -> bytes:
    """A 256-bit key from its base64 text (as kept in a Secret); ValueError otherwise."""
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{name} must be base64") from exc
    if len(key) != KEY_BYTES:
        raise ValueError(f"{name} must be {KEY_BYTES} bytes (base64), got {len(key)}")
    return key


def derive_key(key: bytes, purpose: str) -> bytes:
    """A subkey for another purpose (HKDF-SHA256), so one configured secret never serves two."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode())
    return hkdf.derive(key)


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"loyalnest-key-id\0" + key).digest()[:_KEY_ID_BYTES]


class FieldCipher:
    def __init__(self, key: bytes, previous: Iterable[bytes] = ()) -> None:
        keys = [key, *previous]
        if any(len(k) != KEY_BYTES for k in keys):
            raise ValueError(f"AES-256-GCM keys are {KEY_BYTES} bytes")
        self._current_id = _key_id(key)
        self._current = AESGCM(key)
        self._by_id = {_key_id(k): AESGCM(k) for k in reversed(keys)}

    @classmethod
    def from_base64(cls, key: str, previous: Iterable[str] = ()) -> FieldCipher:
        return cls(decode_key(key), [decode_key(p, name="previous key") for p in previous])

    def encrypt(self, plaintext: str | bytes, *, context: str) -> bytes:
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        nonce = os.urandom(_NONCE_BYTES)
        header = _VERSION + self._current_id + nonce
        return header + self._current.encrypt(nonce, data, header + context.encode())

    def decrypt(self, blob: bytes, *, context: str) -> bytes:
        blob = bytes(blob)
        if len(blob) < _HEADER or blob[:1] != _VERSION:
            raise InvalidCiphertext("not a LoyalNest ciphertext")
        key = self._by_id.get(blob[1 : 1 + _KEY_ID_BYTES])
        if key is None:
            raise InvalidCiphertext("encrypted with a key that is not configured")
        header = blob[:_HEADER]
        try:
            return key.decrypt(
                blob[1 + _KEY_ID_BYTES : _HEADER], blob[_HEADER:], header + context.encode()
            )
        except InvalidTag as exc:
            raise InvalidCiphertext("ciphertext or context does not match") from exc

    def decrypt_text(self, blob: bytes, *, context: str) -> str:
        return self.decrypt(blob, context=context).decode()

    def needs_reencryption(self, blob: bytes) -> bool:
        """True for a value written under a previous key."""
        return bytes(blob[1 : 1 + _KEY_ID_BYTES]) != self._current_id


class BlindIndex:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"blind index keys are {KEY_BYTES} bytes")
        self._key = key

    def digest(self, value: str, *, context: str) -> bytes:
        message = context.encode() + b"\0" + value.encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

"""PII columns of a service: AES-256-GCM ciphertexts bound to their row, plus blind indexes.

Each service has its own keys, LOYALNEST_<SERVICE>_ENCRYPTION_KEY and
LOYALNEST_<SERVICE>_BLIND_INDEX_KEY (base64 of 32 random bytes, `openssl rand -base64 32`),
and LOYALNEST_<SERVICE>_ENCRYPTION_PREVIOUS_KEYS (JSON list) to keep old keys readable while
rows are re-encrypted after a rotation. Unset keys are accepted only on a developer's
machine, recognised as Auth does it (the local stack's signing keyset, marked local, beside
JWT_JWKS_PATH): fixed, public development keys derived from the service's name are used then.

    vault = PiiVault.from_keys(
        settings, service="users", namespace="users.email",
        encryption_key=settings.users_encryption_key,
        previous_keys=settings.users_encryption_previous_keys,
        blind_index_key=settings.users_blind_index_key,
    )
    blob = vault.seal(merchant_id, user_id, email)   # bound to (merchant, row)
    vault.index(merchant_id, email)                  # equality lookups, per merchant
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Self, TypeVar

from google.protobuf.message import Message
from pydantic import SecretStr

from loyalnest.platform.auth.keys import local_keyset_beside
from loyalnest.platform.config import TokenSettings
from loyalnest.platform.crypto import BlindIndex, FieldCipher, decode_key
from loyalnest.platform.idempotency import KEY_FIELD, REQUEST, IdempotencyKey
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

RequestT = TypeVar("RequestT", bound=Message)
# Where a request holds PII: (message, field, the vault's column for it).
PiiFields = Callable[[RequestT], Iterable[tuple[Message, str, str]]]


def _as_is(value: str) -> str:
    return value


def on_a_developer_machine(settings: TokenSettings) -> bool:
    """True beside the local stack's token signing keyset, which is marked local.

    Production mounts only the public JWKS: no private keyset, let alone a local one.
    """
    return local_keyset_beside(settings.jwt_jwks_path) is not None


def development_key(service: str, purpose: str) -> bytes:
    """Public on purpose: used only on a developer's machine (see the module docstring)."""
    return hashlib.sha256(f"loyalnest local development {service} {purpose} key".encode()).digest()


class PiiVault:
    def __init__(self, cipher: FieldCipher, index: BlindIndex, *, namespace: str) -> None:
        self._cipher = cipher
        self._index = index
        self._namespace = namespace

    @classmethod
    def from_keys(
        cls,
        settings: TokenSettings,
        *,
        service: str,
        namespace: str,
        encryption_key: SecretStr | None,
        previous_keys: Sequence[SecretStr],
        blind_index_key: SecretStr | None,
    ) -> Self:
        env = f"LOYALNEST_{service.upper()}"
        if encryption_key is None or blind_index_key is None:
            if not on_a_developer_machine(settings):
                raise ValueError(
                    f"{env}_ENCRYPTION_KEY and {env}_BLIND_INDEX_KEY are required (base64 of "
                    "32 random bytes each, `openssl rand -base64 32`)"
                )
            log.warning(f"{service} PII keys unset: using the public development keys")
        previous = [
            decode_key(key.get_secret_value(), name=f"{env}_ENCRYPTION_PREVIOUS_KEYS")
            for key in previous_keys
        ]
        cipher = FieldCipher(
            decode_key(encryption_key.get_secret_value(), name=f"{env}_ENCRYPTION_KEY")
            if encryption_key is not None
            else development_key(service, "encryption"),
            previous,
        )
        index = BlindIndex(
            decode_key(blind_index_key.get_secret_value(), name=f"{env}_BLIND_INDEX_KEY")
            if blind_index_key is not None
            else development_key(service, "blind index")
        )
        return cls(cipher, index, namespace=namespace)

    def _scope(self, column: str) -> str:
        return f"{self._namespace}.{column}" if column else self._namespace

    def _context(self, merchant_id: str, row_id: str, column: str) -> str:
        # Bound as associated data: a ciphertext copied to another row, column or merchant
        # does not decrypt.
        return f"{self._scope(column)}:{merchant_id}:{row_id}"

    def seal(self, merchant_id: str, row_id: str, value: str, *, column: str = "") -> bytes:
        return self._cipher.encrypt(value, context=self._context(merchant_id, row_id, column))

    def open(self, merchant_id: str, row_id: str, ciphertext: bytes, *, column: str = "") -> str:
        return self._cipher.decrypt_text(
            ciphertext, context=self._context(merchant_id, row_id, column)
        )

    def index(self, merchant_id: str, value: str, *, column: str = "") -> bytes:
        """The lookup key of a normalised value; per merchant, so tenants are not linkable."""
        return self._index.digest(value, context=f"{self._scope(column)}:{merchant_id}")

    def idempotency_key(
        self,
        method: str,
        request: RequestT,
        merchant_id: str,
        pii: PiiFields[RequestT],
        *,
        normalize: Callable[[str], str] = _as_is,
        key_field: str = KEY_FIELD,
        namespace: str = REQUEST,
    ) -> IdempotencyKey:
        """The request's idempotency key (IdempotencyKey.of), its PII replaced by blind indexes.

        The key's fingerprint is an unkeyed SHA-256 of the request, kept in the database: with
        PII in it, guessing values and hashing them would reveal it. The blind index stands in
        for each value: equal for equal (normalised) values, useless without the key.
        """
        fingerprinted = type(request)()
        fingerprinted.CopyFrom(request)
        for message, field, column in pii(fingerprinted):
            value = normalize(getattr(message, field))
            blinded = self.index(merchant_id, value, column=column).hex() if value else ""
            setattr(message, field, blinded)
        return IdempotencyKey.of(method, fingerprinted, key_field=key_field, namespace=namespace)

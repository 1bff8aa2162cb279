"""How Users keeps emails: AES-256-GCM ciphertexts bound to their row, plus a blind index.

Keys (LOYALNEST_*): USERS_ENCRYPTION_KEY and USERS_BLIND_INDEX_KEY, base64 of 32 random bytes
each (`openssl rand -base64 32`); USERS_ENCRYPTION_PREVIOUS_KEYS (JSON list) keeps old keys
readable while rows are re-encrypted after a rotation. Unset keys are accepted only on a
developer's machine, recognised as Auth does it (the local stack's signing keyset, marked
local, beside JWT_JWKS_PATH): fixed, public development keys are used then.
"""

from __future__ import annotations

import hashlib

from pydantic import SecretStr

from loyalnest.platform.auth.keys import local_keyset_beside
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.crypto import BlindIndex, FieldCipher, decode_key
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)

# Public on purpose: used only on a developer's machine (see the module docstring).
DEV_ENCRYPTION_KEY = hashlib.sha256(b"loyalnest local development users encryption key").digest()
DEV_BLIND_INDEX_KEY = hashlib.sha256(b"loyalnest local development users blind index key").digest()


class PiiSettings(ServiceSettings):
    # base64 of 32 random bytes (`openssl rand -base64 32`). Required outside a developer's
    # machine: a built-in key would encrypt production data under a published key.
    users_encryption_key: SecretStr | None = None
    # Keys that still decrypt (rotation: the old key goes here until every row was
    # re-encrypted under the new one). JSON list in the environment.
    users_encryption_previous_keys: list[SecretStr] = []
    # base64 of 32 random bytes; fixed for the life of the data (changing it means
    # recomputing every index). Never the encryption key: one secret, one purpose.
    users_blind_index_key: SecretStr | None = None


def on_a_developer_machine(settings: ServiceSettings) -> bool:
    """True beside the local stack's token signing keyset, which is marked local.

    Production mounts only the public JWKS: no private keyset, let alone a local one.
    """
    return local_keyset_beside(settings.jwt_jwks_path) is not None


class EmailVault:
    def __init__(self, cipher: FieldCipher, index: BlindIndex) -> None:
        self._cipher = cipher
        self._index = index

    @classmethod
    def from_settings(cls, settings: PiiSettings) -> EmailVault:
        encryption_key, index_key = settings.users_encryption_key, settings.users_blind_index_key
        if encryption_key is None or index_key is None:
            if not on_a_developer_machine(settings):
                raise ValueError(
                    "LOYALNEST_USERS_ENCRYPTION_KEY and LOYALNEST_USERS_BLIND_INDEX_KEY are "
                    "required (base64 of 32 random bytes each, `openssl rand -base64 32`)"
                )
            log.warning("users PII keys unset: using the public development keys")
        previous = [
            decode_key(key.get_secret_value(), name="LOYALNEST_USERS_ENCRYPTION_PREVIOUS_KEYS")
            for key in settings.users_encryption_previous_keys
        ]
        cipher = FieldCipher(
            decode_key(encryption_key.get_secret_value(), name="LOYALNEST_USERS_ENCRYPTION_KEY")
            if encryption_key is not None
            else DEV_ENCRYPTION_KEY,
            previous,
        )
        index = BlindIndex(
            decode_key(index_key.get_secret_value(), name="LOYALNEST_USERS_BLIND_INDEX_KEY")
            if index_key is not None
            else DEV_BLIND_INDEX_KEY
        )
        return cls(cipher, index)

    @staticmethod
    def _context(merchant_id: str, user_id: str) -> str:
        # Bound as associated data: a ciphertext copied to another user or merchant fails.
        return f"users.email:{merchant_id}:{user_id}"

    def seal(self, merchant_id: str, user_id: str, email: str) -> bytes:
        return self._cipher.encrypt(email, context=self._context(merchant_id, user_id))

    def open(self, merchant_id: str, user_id: str, ciphertext: bytes) -> str:
        return self._cipher.decrypt_text(ciphertext, context=self._context(merchant_id, user_id))

    def index(self, merchant_id: str, email: str) -> bytes:
        """The lookup key of a normalised email; per merchant, so tenants are not linkable."""
        return self._index.digest(email, context=f"users.email:{merchant_id}")

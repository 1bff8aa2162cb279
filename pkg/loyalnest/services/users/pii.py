"""How Users keeps emails: a platform PII vault (AES-256-GCM bound to the row, blind index).

Keys (LOYALNEST_*): USERS_ENCRYPTION_KEY and USERS_BLIND_INDEX_KEY, base64 of 32 random bytes
each (`openssl rand -base64 32`); USERS_ENCRYPTION_PREVIOUS_KEYS (JSON list) keeps old keys
readable while rows are re-encrypted after a rotation. See loyalnest.platform.pii for the
development keys used on a developer's machine.
"""

from __future__ import annotations

from pydantic import SecretStr

from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.pii import PiiVault


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


class EmailVault(PiiVault):
    @classmethod
    def from_settings(cls, settings: PiiSettings) -> EmailVault:
        return cls.from_keys(
            settings,
            service="users",
            # The contexts Users has always used: "users.email:{merchant}:{user}".
            namespace="users.email",
            encryption_key=settings.users_encryption_key,
            previous_keys=settings.users_encryption_previous_keys,
            blind_index_key=settings.users_blind_index_key,
        )

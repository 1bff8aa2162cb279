"""Wires the Auth service into the platform runtime.

Configuration (LOYALNEST_*, on top of ServiceSettings):

- AUTH_SIGNING_KEYS_PATH: the private keyset (a JSON file, `loyalnest.platform.auth.keys`:
  every key still valid + `active_kid`). Unset: the local stack's `signing-keys.json` beside
  JWT_JWKS_PATH, accepted only if it is marked local. JWT_JWKS_PATH must be the published
  public JWKS of the same keyset (Auth refuses to sign with a key that is not in it).
- AUTH_ENCRYPTION_KEY: base64 of 32 random bytes (`openssl rand -base64 32`), the AES-256-GCM
  key of Shopify tokens, admin emails and TOTP secrets; AUTH_ENCRYPTION_PREVIOUS_KEYS (JSON
  list) keeps old keys readable during a rotation. AUTH_BLIND_INDEX_KEY (same format) keys
  the admin email index; unset, it is derived from the encryption key, so set it explicitly
  before ever rotating that key. Unset AUTH_ENCRYPTION_KEY is allowed only with a local
  signing keyset (a developer's machine): a fixed, public development key is used then.
- SHOPIFY_API_KEY, SHOPIFY_API_SECRET (the app's client id and secret; the secret also signs
  webhooks), SHOPIFY_SCOPES, SHOPIFY_REDIRECT_URL (the page Shopify sends the merchant back
  to: the frontend's callback route, which forwards the query string to
  GET /v1/api/auth/callback), SHOPIFY_BASE_URL (`https://{shop}`; tests point it at a stand-in).
- REDIS_URL: the revocation list (`revoked_jti:{jti}`), shared with every service; also
  where service-token request nonces are spent (no Redis: no service tokens).
- AUTH_SERVICE_CREDENTIAL_KEY: base64 of 32 random bytes, the master key of the services'
  credentials (`loyalnest service-credential NAME` derives one for a service's Secret);
  AUTH_SERVICE_TOKEN_TTL_SECONDS (300). See loyalnest.platform.auth.service_identity.
- CALL_TARGETS / CALL_TARGET_TEMPLATE (loyalnest.platform.calls): where RolesService answers
  (staff sessions read their permissions from it, with Auth's self-signed service token).
- AUTH_SHOP_TOKEN_REFRESH_AHEAD_SECONDS: an expiring shop token with less than this left is
  refreshed with Shopify before GetShopAccessToken hands it out (shop_tokens.py).
- AUTH_TRUSTED_PROXY_CIDRS (JSON list): peers whose last X-Forwarded-For entry is taken as
  the client's address (the gateway; loopback by default, as in the local stack). In a
  cluster, the gateway pods' range: otherwise every client behind the gateway shares its
  address and one client's failures lock the address for all (domain.source_address).
- AUTH_{PASSWORD,TOTP}_ATTEMPTS_PER_{ACCOUNT,SOURCE}, AUTH_LOCKOUT_BASE_SECONDS,
  AUTH_LOCKOUT_MAX_SECONDS: admin sign-in lockout (domain.Throttle).
- AUTH_LOGIN_PER_SOURCE / AUTH_LOGIN_PER_SHOP per AUTH_LOGIN_WINDOW_SECONDS: how many
  unauthenticated Logins (each stores an OAuth state) are served before RESOURCE_EXHAUSTED.

Signing-key rotation without downtime (access tokens live 15 minutes, impersonation tokens at
most an hour; refresh tokens are opaque and unaffected):

1. Add a key without activating it: `keyset.with_new_key(activate=False)`, written to the
   keyset file (Secret). The old key keeps signing.
2. Publish the new public JWKS (`keyset.public_jwks()`) where the services read it
   (LOYALNEST_JWT_JWKS_PATH ConfigMap; they re-read it within 10 s of the file changing).
   GET /v1/api/auth/jwks lists both keys from now on, and the gateway refetches it every 30 s
   (loyalnest.gateway.jwt_rules.GatewayJwks). Wait until every reader has it: Envoy does not
   refetch on an unknown kid.
3. Activate the new key: the same keyset with `active_kid` = the new kid (e.g.
   `dataclasses.replace(keyset, active_kid=kid)`). Auth re-reads the file within
   AUTH_SIGNING_KEYS_RELOAD_SECONDS, no restart; if the kid is not in its JWKS_PATH file yet
   it keeps the old key and logs an error. Tokens of both keys verify everywhere.
4. After the longest token lifetime (1 h), remove the old key from the keyset, then from the
   published JWKS.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from pydantic import Field, SecretStr

from loyalnest.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from loyalnest.gen.roles.v1 import roles_pb2_grpc
from loyalnest.platform import audit
from loyalnest.platform.auth.keys import local_keyset_beside
from loyalnest.platform.auth.permissions import MERCHANT_OWNER_PERMISSIONS
from loyalnest.platform.auth.revocation import RevocationList
from loyalnest.platform.auth.service_identity import SERVICE_TOKEN_TTL_SECONDS
from loyalnest.platform.calls import Calls
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.crypto import BlindIndex, FieldCipher, decode_key, derive_key
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.observability import get_logger
from loyalnest.platform.personal_data import PersonalData
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.services.auth import consumers, events
from loyalnest.services.auth.domain import Factor, Scope, Throttle
from loyalnest.services.auth.keys import SigningKeys
from loyalnest.services.auth.role_permissions import RolePermissions, SelfIssuedServiceTokens
from loyalnest.services.auth.servicer import AuthServicer
from loyalnest.services.auth.sessions import SessionTokens
from loyalnest.services.auth.shop_tokens import ShopTokens
from loyalnest.services.auth.shopify import ShopifyOAuthClient
from loyalnest.services.auth.staff_sessions import StaffSessions
from loyalnest.services.auth.store import AuthStore

# The audit trigger function must exist before auth_0001 attaches it.
DATABASE = DatabaseSpec(
    schema="auth", migration_dirs=(audit.MIGRATIONS, Path(__file__).parent / "migrations")
)
SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
# Roles: the permissions of a staff member's role (role_permissions.py).
CALLS = Calls(roles=roles_pb2_grpc.RolesServiceStub)
log = get_logger(__name__)

# Public on purpose: used only when the signing keyset is a local development one.
DEV_ENCRYPTION_KEY = hashlib.sha256(b"loyalnest local development encryption key").digest()

# What the owner of an installed shop may do in LoyalNest: every merchant-scoped domain. Also
# the ceiling of a staff member's permissions (role_permissions.py).
DEFAULT_OWNER_PERMISSIONS = MERCHANT_OWNER_PERMISSIONS


class AuthSettings(ServiceSettings):
    auth_signing_keys_path: Path | None = None
    auth_signing_keys_reload_seconds: float = Field(10.0, gt=0)
    auth_encryption_key: SecretStr | None = None
    auth_encryption_previous_keys: list[SecretStr] = []
    auth_blind_index_key: SecretStr | None = None

    # Token lifetimes. Access tokens: 15 minutes (seed §2).
    auth_access_token_ttl_seconds: int = Field(15 * 60, ge=60, le=3600)
    # A refresh token unused this long expires; a session never outlives its max age.
    auth_refresh_token_ttl_seconds: int = Field(14 * 24 * 3600, ge=60)
    auth_session_max_age_seconds: int = Field(90 * 24 * 3600, ge=60)
    auth_admin_session_max_age_seconds: int = Field(12 * 3600, ge=60)
    # Between the password and the TOTP code.
    auth_mfa_token_ttl_seconds: int = Field(300, ge=30, le=900)
    auth_mfa_issuer_name: str = "LoyalNest"
    auth_owner_permissions: list[str] = list(DEFAULT_OWNER_PERMISSIONS)
    # Service identities (loyalnest.platform.auth.service_identity): base64 of 32 random bytes,
    # the master key every service's credential derives from. Unset: no service tokens.
    auth_service_credential_key: SecretStr | None = None
    auth_service_token_ttl_seconds: int = Field(SERVICE_TOKEN_TTL_SECONDS, ge=5, le=900)
    # Expiring shop tokens (1 h) are refreshed when less than this is left.
    auth_shop_token_refresh_ahead_seconds: float = Field(300.0, ge=0, le=3000)
    # A new admin's MFA enrolment token (CreateAdminUser -> EnrollMfa).
    auth_mfa_enrollment_token_ttl_seconds: int = Field(7 * 24 * 3600, ge=60)

    # Where the client's address comes from (domain.source_address).
    auth_trusted_proxy_cidrs: list[IPv4Network | IPv6Network] = [
        IPv4Network("127.0.0.0/8"),
        IPv6Network("::1/128"),
    ]
    # Admin sign-in lockout (domain.Throttle): attempts before a lock, per factor and scope.
    # A source gets more (several admins behind one NAT) but also covers guesses spread over
    # many accounts.
    auth_password_attempts_per_account: int = Field(5, ge=1)
    auth_password_attempts_per_source: int = Field(20, ge=1)
    auth_totp_attempts_per_account: int = Field(5, ge=1)
    auth_totp_attempts_per_source: int = Field(20, ge=1)
    # The first lock; each further one in a row lasts twice as long, up to the max.
    auth_lockout_base_seconds: float = Field(300.0, gt=0)
    auth_lockout_max_seconds: float = Field(6 * 3600.0, gt=0)
    # Unauthenticated Login calls (each stores an OAuth state): per client address and per
    # shop in a fixed window. Shopify's own launches come from merchants' browsers.
    auth_login_per_source: int = Field(30, ge=1)
    auth_login_per_shop: int = Field(10, ge=1)
    auth_login_window_seconds: float = Field(60.0, gt=0)

    def throttles(self) -> dict[tuple[Factor, Scope], Throttle]:
        base = timedelta(seconds=self.auth_lockout_base_seconds)
        ceiling = max(base, timedelta(seconds=self.auth_lockout_max_seconds))
        limits = {
            (Factor.PASSWORD, Scope.ACCOUNT): self.auth_password_attempts_per_account,
            (Factor.PASSWORD, Scope.SOURCE): self.auth_password_attempts_per_source,
            (Factor.TOTP, Scope.ACCOUNT): self.auth_totp_attempts_per_account,
            (Factor.TOTP, Scope.SOURCE): self.auth_totp_attempts_per_source,
        }
        return {key: Throttle(limit, base, ceiling) for key, limit in limits.items()}

    shopify_api_key: str = ""
    shopify_api_secret: SecretStr = SecretStr("")
    # Comma-separated, as Shopify writes them.
    shopify_scopes: str = "read_customers,read_orders,write_discounts"
    shopify_redirect_url: str = "http://localhost:5173/auth/callback"
    # {shop} is replaced by the shop's domain.
    shopify_base_url: str = "https://{shop}"
    shopify_timeout_seconds: float = Field(10.0, gt=0)
    # How old Shopify's signed `timestamp` may be, and how long a login's state lives.
    shopify_request_max_age_seconds: int = Field(600, ge=30)
    shopify_state_ttl_seconds: int = Field(600, ge=30)


def signing_keys_path(settings: AuthSettings) -> Path:
    if settings.auth_signing_keys_path is not None:
        return settings.auth_signing_keys_path
    local = local_keyset_beside(settings.jwt_jwks_path)
    if local is not None:
        return local
    raise ValueError(
        "LOYALNEST_AUTH_SIGNING_KEYS_PATH is required: the private keyset that signs tokens"
    )


def field_encryption(settings: AuthSettings, *, local: bool) -> tuple[FieldCipher, BlindIndex]:
    if settings.auth_encryption_key is not None:
        key = decode_key(settings.auth_encryption_key.get_secret_value(), name="encryption key")
    elif local:
        log.warning("LOYALNEST_AUTH_ENCRYPTION_KEY unset: using the public development key")
        key = DEV_ENCRYPTION_KEY
    else:
        raise ValueError(
            "LOYALNEST_AUTH_ENCRYPTION_KEY is required (base64 of 32 random bytes): Shopify "
            "tokens and admin secrets are encrypted with it"
        )
    previous = [
        decode_key(p.get_secret_value(), name="previous encryption key")
        for p in settings.auth_encryption_previous_keys
    ]
    if settings.auth_blind_index_key is not None:
        index_key = decode_key(settings.auth_blind_index_key.get_secret_value(), name="index key")
    else:
        index_key = derive_key(key, "loyalnest auth blind index")
    return FieldCipher(key, previous), BlindIndex(index_key)


async def build(settings: AuthSettings) -> ServiceComponents:
    keys = SigningKeys(
        signing_keys_path(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        published_jwks=settings.jwt_jwks_path,
        reload_seconds=settings.auth_signing_keys_reload_seconds,
    )
    cipher, email_index = field_encryption(settings, local=keys.current().keyset.local)
    database = Database(settings, DATABASE)
    await database.open()
    store = AuthStore(database, cipher, email_index)
    revocations = RevocationList.from_url(settings.redis_url) if settings.redis_url else None
    if revocations is None:
        log.warning("LOYALNEST_REDIS_URL unset: tokens cannot be revoked")
    sessions = SessionTokens(
        database,
        keys,
        revocations,
        access_ttl_seconds=settings.auth_access_token_ttl_seconds,
        refresh_ttl_seconds=settings.auth_refresh_token_ttl_seconds,
    )
    shopify = ShopifyOAuthClient(
        base_url=settings.shopify_base_url,
        api_key=settings.shopify_api_key,
        api_secret=settings.shopify_api_secret.get_secret_value(),
        timeout_seconds=settings.shopify_timeout_seconds,
    )
    cleanup = [revocations.close] if revocations is not None else []
    # Auth holds no credential of its own: it signs its service tokens itself.
    own_tokens = SelfIssuedServiceTokens(keys, audience=settings.jwt_audience)
    downstream = CALLS.connect(settings, caller="auth", tokens=own_tokens)
    cleanup.append(downstream.close)
    role_permissions = RolePermissions(
        downstream.stub(roles_pb2_grpc.RolesServiceStub), ceiling=settings.auth_owner_permissions
    )
    staff = StaffSessions(
        store, sessions, role_permissions, max_age_seconds=settings.auth_session_max_age_seconds
    )
    shop_tokens = ShopTokens(
        store, shopify, refresh_ahead_seconds=settings.auth_shop_token_refresh_ahead_seconds
    )
    servicer = AuthServicer(
        settings,
        store,
        keys,
        sessions,
        revocations,
        shopify,
        staff=staff,
        staff_grants=role_permissions.of,
        shop_tokens=shop_tokens,
    )
    components = postgres_service(
        settings,
        database,
        service="auth",
        # Publishes merchant.created and auth.revoked; consumes role changes (staff tokens)
        # and app/uninstalled webhooks (consumers.py).
        group=events.CONSUMER_GROUP,
        handlers=consumers.handlers(database, store, sessions),
        # Customer pseudonyms (the edge's) with Auth's own tokens: it holds no credential.
        service_tokens=own_tokens,
        registrations=[
            Registration(SERVICE_NAME, auth_pb2_grpc.add_AuthServiceServicer_to_server, servicer)
        ],
        cleanup=cleanup,
    )
    components.personal_data = store
    return components


SPEC = ServiceSpec(
    name="auth",
    settings_type=AuthSettings,
    build=build,
    database=DATABASE,
    calls=CALLS,
    # The merchant's staff accounts (no Shopify customer's data): erased by shop/redact.
    personal_data=PersonalData(tables=("admin_users",)),
)

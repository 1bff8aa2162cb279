"""gRPC surface of the Auth service: validation, the order of checks, proto mapping."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import jwt
from pydantic import SecretStr

from loyalnest.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from loyalnest.platform.auth import service_identity
from loyalnest.platform.auth.context import current_principal
from loyalnest.platform.auth.revocation import RevocationList
from loyalnest.platform.auth.tokens import ACCESS, SERVICE, SERVICE_SUBJECT_PREFIX, Principal
from loyalnest.platform.crypto import decode_key
from loyalnest.platform.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from loyalnest.platform.events import outbox
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.observability import get_logger
from loyalnest.platform.protos import epoch_timestamp, timestamp
from loyalnest.platform.validation import Validator, is_uuid
from loyalnest.services.auth import credentials, events, shopify
from loyalnest.services.auth.domain import (
    LOCKED_MESSAGE,
    AdminUserRecord,
    Factor,
    IpNetwork,
    Scope,
    Throttle,
    source_address,
)
from loyalnest.services.auth.keys import SigningKeys
from loyalnest.services.auth.sessions import Minted, SessionTokens, StaffGrants
from loyalnest.services.auth.shop_tokens import ShopTokens
from loyalnest.services.auth.staff_sessions import StaffSessions
from loyalnest.services.auth.store import AuthStore
from loyalnest.services.auth.wire import (
    admin_user_proto,
    impersonation_proto,
    merchant_proto,
    shop_token_proto,
    token_pair,
)

log = get_logger(__name__)

MFA = "mfa"
MAX_IMPERSONATION_SECONDS = 3600
DEFAULT_IMPERSONATION_SECONDS = 900
# The longest lifetime of any token Auth signs: how long a revocation by bare jti is kept.
MAX_TOKEN_LIFETIME_SECONDS = MAX_IMPERSONATION_SECONDS
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s.]{2,63}$")
PERMISSION_RE = re.compile(r"^[a-z][a-z0-9_-]*:(\*|[a-z][a-z0-9_:-]*)$")


def _check_permissions_and_merchant(
    v: Validator, permissions: Iterable[str], merchant_id: str
) -> None:
    for index, permission in enumerate(permissions):
        v.check(
            bool(PERMISSION_RE.match(permission)),
            f"permissions[{index}]",
            "must look like 'domain:action' (e.g. users:read, admin:analytics)",
        )
    if merchant_id:
        v.uuid("merchant_id", merchant_id)


def _present(**params: str) -> dict[str, str]:
    """The query parameters Shopify sent (the transcoder leaves absent ones empty)."""
    return {k: v for k, v in params.items() if v}


class ServicerSettings(Protocol):
    """What the servicer reads of AuthSettings (service.py, which builds the servicer)."""

    @property
    def jwt_audience(self) -> str: ...
    @property
    def auth_owner_permissions(self) -> list[str]: ...
    @property
    def auth_session_max_age_seconds(self) -> int: ...
    @property
    def auth_admin_session_max_age_seconds(self) -> int: ...
    @property
    def auth_mfa_token_ttl_seconds(self) -> int: ...
    @property
    def auth_mfa_issuer_name(self) -> str: ...
    @property
    def auth_service_credential_key(self) -> SecretStr | None: ...
    @property
    def auth_service_token_ttl_seconds(self) -> int: ...
    @property
    def shopify_api_key(self) -> str: ...
    @property
    def shopify_api_secret(self) -> SecretStr: ...
    @property
    def shopify_scopes(self) -> str: ...
    @property
    def shopify_redirect_url(self) -> str: ...
    @property
    def shopify_base_url(self) -> str: ...
    @property
    def shopify_request_max_age_seconds(self) -> int: ...
    @property
    def shopify_state_ttl_seconds(self) -> int: ...
    @property
    def auth_mfa_enrollment_token_ttl_seconds(self) -> int: ...
    @property
    def auth_trusted_proxy_cidrs(self) -> Sequence[IpNetwork]: ...
    @property
    def auth_login_per_source(self) -> int: ...
    @property
    def auth_login_per_shop(self) -> int: ...
    @property
    def auth_login_window_seconds(self) -> float: ...
    def throttles(self) -> Mapping[tuple[Factor, Scope], Throttle]: ...


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        settings: ServicerSettings,
        store: AuthStore,
        keys: SigningKeys,
        sessions: SessionTokens,
        revocations: RevocationList | None,
        shopify_client: shopify.ShopifyOAuthClient,
        *,
        staff: StaffSessions,
        staff_grants: StaffGrants,
        shop_tokens: ShopTokens,
    ) -> None:
        self._settings = settings
        self._store = store
        self._keys = keys
        self._sessions = sessions
        self._revocations = revocations
        self._shopify = shopify_client
        self._staff = staff
        self._staff_grants = staff_grants
        self._shop_tokens = shop_tokens
        self._throttles = settings.throttles()

    # ---- helpers ------------------------------------------------------------------------

    def _source(self, context: Context) -> str:
        """The client's address (domain.source_address: the gateway's word, when the peer is
        the gateway)."""
        forwarded = [
            value if isinstance(value, str) else value.decode("latin-1")
            for key, value in context.invocation_metadata() or ()
            if key == "x-forwarded-for"
        ]
        return source_address(context.peer(), forwarded, self._settings.auth_trusted_proxy_cidrs)

    async def _claim(self, factor: Factor, *, account: str, source: str) -> None:
        """Counts the attempt at the source, then at the account, before any secret is
        checked; UNAUTHENTICATED (one message whoever the account is) under a lock. The
        source goes first: a locked source spends none of an account's attempts."""
        for scope, subject in ((Scope.SOURCE, source), (Scope.ACCOUNT, account)):
            throttle = self._throttles[(factor, scope)]
            if not await self._store.claim_attempt(factor, scope, subject, throttle):
                log.warning("sign-in attempt refused: locked", factor=factor, scope=scope)
                raise Unauthenticated(LOCKED_MESSAGE)

    async def _limit_login(self, source: str, shop: str) -> None:
        window = timedelta(seconds=self._settings.auth_login_window_seconds)
        for scope, subject, limit in (
            ("login-source", source, self._settings.auth_login_per_source),
            ("login-shop", shop, self._settings.auth_login_per_shop),
        ):
            retry_after = await self._store.hit_rate(scope, subject, limit=limit, window=window)
            if retry_after is not None:
                log.warning("login refused: rate limit", scope=scope, shop=shop)
                raise ResourceExhausted(
                    "too many sign-in requests; try again later",
                    retry_after_seconds=max(1.0, retry_after),
                )

    def _shopify_secrets(self) -> list[str]:
        secret = self._settings.shopify_api_secret.get_secret_value()
        if not (self._settings.shopify_api_key and secret):
            raise FailedPrecondition(
                "the Shopify app is not configured (LOYALNEST_SHOPIFY_API_KEY/_SECRET)",
                violation_type="CONFIGURATION",
                subject="shopify",
            )
        return [secret]

    def _verify_shopify(self, params: Mapping[str, str]) -> None:
        shopify.verify_query(
            params,
            self._shopify_secrets(),
            now=datetime.now(UTC),
            max_age_seconds=self._settings.shopify_request_max_age_seconds,
        )

    async def _verified(self, token: str, *, token_type: str) -> tuple[Principal, dict[str, Any]]:
        """Signature, issuer, audience, expiry, type and revocation; then every claim."""
        principal = self._keys.current().verifier.verify(token, token_type=token_type)
        if self._revocations and await self._revocations.is_revoked(principal.token_id):
            raise Unauthenticated("token revoked")
        # Verified just above: reading the claims back needs no second check.
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        claims["kid"] = jwt.get_unverified_header(token).get("kid", "")
        return principal, claims

    async def _revoke_jti(self, token_id: str, expires_at: int) -> None:
        if self._revocations is None:
            raise Unavailable("revocation needs the revocation list (LOYALNEST_REDIS_URL)")
        await self._revocations.revoke(token_id, expires_at)

    # ---- Shopify OAuth ------------------------------------------------------------------

    async def Login(
        self, request: auth_pb2.LoginRequest, context: Context
    ) -> auth_pb2.LoginResponse:
        with Validator() as v:
            v.check(shopify.valid_shop(request.shop), "shop", "must be <name>.myshopify.com")
        self._shopify_secrets()  # configured, or FAILED_PRECONDITION
        if request.hmac:  # Shopify sent the merchant here: the request is signed.
            self._verify_shopify(
                _present(
                    shop=request.shop,
                    timestamp=request.timestamp,
                    hmac=request.hmac,
                    host=request.host,
                    embedded=request.embedded,
                    locale=request.locale,
                    session=request.session,
                    id_token=request.id_token,
                )
            )
        shop = request.shop.lower()
        # Unauthenticated, and each call stores a state: bounded per client and per shop.
        await self._limit_login(self._source(context), shop)
        state = credentials.new_opaque_token()
        expires_at = datetime.now(UTC) + timedelta(seconds=self._settings.shopify_state_ttl_seconds)
        await self._store.save_state(state, shop, expires_at)
        url = shopify.authorize_url(
            base_url=self._settings.shopify_base_url,
            shop=shop,
            api_key=self._settings.shopify_api_key,
            scopes=[s.strip() for s in self._settings.shopify_scopes.split(",") if s.strip()],
            redirect_uri=self._settings.shopify_redirect_url,
            state=state,
        )
        return auth_pb2.LoginResponse(
            authorize_url=url, state=state, state_expire_time=timestamp(expires_at)
        )

    async def CompleteLogin(
        self, request: auth_pb2.CompleteLoginRequest, context: Context
    ) -> auth_pb2.CompleteLoginResponse:
        with Validator() as v:
            v.check(shopify.valid_shop(request.shop), "shop", "must be <name>.myshopify.com")
            for field in ("code", "hmac", "state", "timestamp"):
                v.check(bool(getattr(request, field)), field, "is required")
        # Order matters: nothing is touched (not even the state) before Shopify's signature
        # checks out, and the state is spent before the code is used.
        self._verify_shopify(
            _present(
                code=request.code,
                hmac=request.hmac,
                host=request.host,
                shop=request.shop,
                state=request.state,
                timestamp=request.timestamp,
            )
        )
        shop = request.shop.lower()
        if not await self._store.consume_state(request.state, shop):
            raise Unauthenticated("unknown, expired or already used state; start the login again")
        tokens = await self._shopify.exchange_code(shop, request.code)
        async with self._store.pool.connection() as conn, conn.transaction():
            merchant, created = await self._store.install(conn, shop, tokens)
            issued = await self._sessions.open(
                conn,
                kind="merchant",
                subject=f"owner:{merchant.merchant_id}",
                merchant_id=merchant.merchant_id,
                permissions=self._settings.auth_owner_permissions,
                max_age_seconds=self._settings.auth_session_max_age_seconds,
            )
        log.info("shop installed" if created else "shop signed in", shop=shop)
        return auth_pb2.CompleteLoginResponse(
            merchant=merchant_proto(merchant), tokens=token_pair(issued), created=created
        )

    # ---- tokens -------------------------------------------------------------------------

    async def RefreshToken(
        self, request: auth_pb2.RefreshTokenRequest, context: Context
    ) -> auth_pb2.RefreshTokenResponse:
        with Validator() as v:
            v.check(bool(request.refresh_token), "refresh_token", "is required")
        # A staff session's permissions are read from Roles again (role_permissions.py).
        issued = await self._sessions.refresh(
            request.refresh_token, staff_grants=self._staff_grants
        )
        return auth_pb2.RefreshTokenResponse(tokens=token_pair(issued))

    async def IssueStaffSession(
        self, request: auth_pb2.IssueStaffSessionRequest, context: Context
    ) -> auth_pb2.IssueStaffSessionResponse:
        issued, role_id, permissions = await self._staff.issue(request)  # staff_sessions.py
        return auth_pb2.IssueStaffSessionResponse(
            tokens=token_pair(issued), role_id=role_id, permissions=list(permissions)
        )

    async def GetShopAccessToken(
        self, request: auth_pb2.GetShopAccessTokenRequest, context: Context
    ) -> auth_pb2.GetShopAccessTokenResponse:
        record = await self._shop_tokens.get(request.merchant_id)  # shop_tokens.py
        return shop_token_proto(record)

    async def RevokeToken(
        self, request: auth_pb2.RevokeTokenRequest, context: Context
    ) -> auth_pb2.RevokeTokenResponse:
        caller = current_principal()
        with Validator() as v:
            v.check(
                bool(request.token) != bool(request.token_id),
                "token",
                "give either token or token_id",
            )
            if request.token_id:
                v.identifier("token_id", request.token_id)
            v.text("reason", request.reason)
        reason = request.reason.strip() or "revoked by an administrator"
        session_id = ""
        merchant_id: str | None = None
        subject = ""
        if request.token:
            try:
                principal, claims = await self._verified(request.token, token_type=ACCESS)
            except Unauthenticated as exc:  # the caller is fine; the token is not
                raise InvalidArgument.for_field("token", exc.message) from exc
            if caller.merchant_id and principal.merchant_id != caller.merchant_id:
                raise PermissionDenied("the token belongs to another merchant")
            token_id, expires_at = principal.token_id, principal.expires_at
            merchant_id, subject = _merchant_of_record(principal.merchant_id), principal.subject
            session_id = str(claims.get("sid", ""))
        else:
            if caller.merchant_id:
                raise PermissionDenied("revoking by token_id needs a platform admin; pass token")
            token_id = request.token_id
            expires_at = int(datetime.now(UTC).timestamp()) + MAX_TOKEN_LIFETIME_SECONDS
        await self._revoke_jti(token_id, expires_at)
        if session_id:
            await self._sessions.revoke(session_id, reason)
        log.info("token revoked", token_id=token_id, by=caller.subject, session_id=session_id)
        async with self._store.pool.connection() as conn, conn.transaction():
            # Audited (with no merchant for a revocation by token id alone).
            await self._store.record_revocation(
                conn,
                token_id=token_id,
                merchant_id=merchant_id,
                subject=subject or None,
                session_id=session_id or None,
                reason=reason,
                revoked_by=caller.subject,
                expires_at=datetime.fromtimestamp(expires_at, UTC),
            )
            if merchant_id:
                event = events.auth_revoked(
                    token_id=token_id, user_id=subject, expires_at=expires_at, reason=reason
                )
                await outbox.enqueue(conn, merchant_id, event)
        return auth_pb2.RevokeTokenResponse(
            token_id=token_id, expire_time=epoch_timestamp(expires_at), session_id=session_id
        )

    async def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: Context
    ) -> auth_pb2.GetJwksResponse:
        jwks = self._keys.current().public_jwks()
        fields = ("kty", "crv", "x", "kid", "use", "alg")
        return auth_pb2.GetJwksResponse(
            keys=[
                auth_pb2.JsonWebKey(**{f: str(k.get(f, "")) for f in fields}) for k in jwks["keys"]
            ]
        )

    async def ValidateToken(
        self, request: auth_pb2.ValidateTokenRequest, context: Context
    ) -> auth_pb2.ValidateTokenResponse:
        with Validator() as v:
            v.check(bool(request.token), "token", "is required")
        principal, claims = await self._verified(request.token, token_type=ACCESS)
        session_id = str(claims.get("sid", ""))
        if session_id and not await self._sessions.is_active(session_id):
            raise Unauthenticated("the token's session was revoked or has ended")
        impersonation = str(claims.get("imp", ""))
        if impersonation:
            try:
                record = await self._store.get_impersonation(impersonation)
            except NotFound as exc:
                raise Unauthenticated("unknown impersonation session") from exc
            if not record.active:
                raise Unauthenticated("the impersonation session has ended")
        actor = claims.get("act")
        return auth_pb2.ValidateTokenResponse(
            claims=auth_pb2.TokenClaims(
                subject=principal.subject,
                merchant_id=principal.merchant_id or "",
                user_id=str(claims.get("user_id", "")),
                permissions=sorted(principal.permissions),
                token_id=principal.token_id,
                token_type=str(claims.get("typ", "")),
                session_id=session_id or impersonation,
                actor_id=str(actor.get("sub", "")) if isinstance(actor, dict) else "",
                issuer=str(claims.get("iss", "")),
                audience=str(claims.get("aud", "")),
                key_id=str(claims.get("kid", "")),
                issue_time=epoch_timestamp(int(claims.get("iat", 0))),
                expire_time=epoch_timestamp(principal.expires_at),
            )
        )

    async def IssueServiceToken(
        self, request: auth_pb2.IssueServiceTokenRequest, context: Context
    ) -> auth_pb2.IssueServiceTokenResponse:
        with Validator() as v:
            v.identifier("service", request.service)
            v.check(
                len(request.nonce) >= service_identity.MIN_NONCE_LENGTH,
                "nonce",
                f"must be at least {service_identity.MIN_NONCE_LENGTH} characters",
            )
            v.identifier("nonce", request.nonce)
            v.check(bool(request.signature), "signature", "is required")
            v.check(request.timestamp > 0, "timestamp", "is required (unix seconds)")
            _check_permissions_and_merchant(v, request.permissions, request.merchant_id)
        master = self._settings.auth_service_credential_key
        if master is None:
            raise FailedPrecondition(
                "service identities are not configured (LOYALNEST_AUTH_SERVICE_CREDENTIAL_KEY)",
                violation_type="CONFIGURATION",
                subject="service-identity",
            )
        if self._revocations is None:
            raise Unavailable("service tokens need Redis to refuse replays (LOYALNEST_REDIS_URL)")
        credential = service_identity.service_credential(
            decode_key(master.get_secret_value(), name="service credential key"), request.service
        )
        expected = service_identity.request_signature(
            credential,
            service=request.service,
            merchant_id=request.merchant_id,
            permissions=request.permissions,
            timestamp=request.timestamp,
            nonce=request.nonce,
        )
        known = request.service in service_identity.SERVICE_GRANTS
        if not (service_identity.signature_matches(expected, request.signature) and known):
            raise Unauthenticated("unknown service or wrong credential")
        now = int(time.time())
        if abs(now - request.timestamp) > service_identity.MAX_REQUEST_SKEW_SECONDS:
            raise Unauthenticated("the request's timestamp is too far from Auth's clock")
        spent_until = now + 2 * service_identity.MAX_REQUEST_SKEW_SECONDS
        if not await self._revocations.spend(
            f"service-request:{request.service}:{request.nonce}", spent_until
        ):
            raise Unauthenticated("nonce already used")
        denied = service_identity.not_granted(request.service, request.permissions)
        if denied:
            raise PermissionDenied(f"service {request.service!r} is not granted {denied}")
        permissions = sorted(
            request.permissions or service_identity.SERVICE_GRANTS[request.service]
        )
        if request.merchant_id:
            await self._store.get_merchant(request.merchant_id)  # NOT_FOUND if unknown
        audiences = service_identity.token_audiences(self._settings.jwt_audience, permissions)
        ttl = self._settings.auth_service_token_ttl_seconds
        token = self._keys.current().issuer.mint(
            subject=SERVICE_SUBJECT_PREFIX + request.service,
            merchant_id=request.merchant_id or None,
            permissions=permissions,
            ttl_seconds=ttl,
            token_type=SERVICE,
            audience=audiences,
        )
        log.info(
            "service token issued",
            service=request.service,
            merchant_id=request.merchant_id,
            permissions=permissions,
        )
        return auth_pb2.IssueServiceTokenResponse(
            token_type="Bearer",
            access_token=token,
            expire_time=epoch_timestamp(now + ttl),
            permissions=permissions,
            audiences=audiences,
        )

    async def ValidateMerchant(
        self, request: auth_pb2.ValidateMerchantRequest, context: Context
    ) -> auth_pb2.ValidateMerchantResponse:
        caller = current_principal()
        merchant_id = request.merchant_id or caller.merchant_id or ""
        # Tenancy first: another merchant's id is refused whatever it looks like.
        if merchant_id != caller.merchant_id and not caller.has("auth:validate"):
            raise PermissionDenied(
                "validating another merchant needs the 'auth:validate' permission"
            )
        with Validator() as v:
            v.uuid("merchant_id", merchant_id)
        merchant = await self._store.get_merchant(merchant_id)
        if merchant.status != "active":
            raise FailedPrecondition(
                "the merchant uninstalled the app",
                violation_type="MERCHANT_INACTIVE",
                subject=f"merchants/{merchant_id}",
            )
        return auth_pb2.ValidateMerchantResponse(merchant=merchant_proto(merchant))

    # ---- admin users and MFA ------------------------------------------------------------

    async def CreateAdminUser(
        self, request: auth_pb2.CreateAdminUserRequest, context: Context
    ) -> auth_pb2.CreateAdminUserResponse:
        caller = current_principal()
        merchant_id = request.merchant_id or None
        if caller.merchant_id and merchant_id != caller.merchant_id:
            raise PermissionDenied("a merchant's admin can only create admins of that merchant")
        with Validator() as v:
            v.check(
                bool(EMAIL_RE.match(request.email.strip())), "email", "must be an email address"
            )
            v.check(
                credentials.MIN_PASSWORD_LENGTH
                <= len(request.password)
                <= credentials.MAX_PASSWORD_LENGTH,
                "password",
                f"must be {credentials.MIN_PASSWORD_LENGTH}-{credentials.MAX_PASSWORD_LENGTH}"
                " characters",
            )
            _check_permissions_and_merchant(v, request.permissions, request.merchant_id)
        ungrantable = sorted(p for p in request.permissions if not caller.has(p))
        if ungrantable:
            raise PermissionDenied(f"cannot grant permissions the caller lacks: {ungrantable}")
        if merchant_id:
            await self._store.get_merchant(merchant_id)
        password_hash = await asyncio.to_thread(credentials.hash_password, request.password)
        user = await self._store.create_admin(
            email=request.email,
            password_hash=password_hash,
            permissions=list(request.permissions),
            merchant_id=merchant_id,
            actor=caller.subject,
        )
        if user is None:
            raise AlreadyExists("an admin user with this email exists")
        enrollment = credentials.new_opaque_token()
        enrollment_expires_at = datetime.now(UTC) + timedelta(
            seconds=self._settings.auth_mfa_enrollment_token_ttl_seconds
        )
        await self._store.create_enrollment_token(
            user.user_id, enrollment, expires_at=enrollment_expires_at, actor=caller.subject
        )
        return auth_pb2.CreateAdminUserResponse(
            user=admin_user_proto(user),
            enrollment_token=enrollment,
            enrollment_token_expire_time=timestamp(enrollment_expires_at),
        )

    async def AdminLogin(
        self, request: auth_pb2.AdminLoginRequest, context: Context
    ) -> auth_pb2.AdminLoginResponse:
        with Validator() as v:
            v.check(bool(request.email.strip()), "email", "is required")
            v.check(bool(request.password), "password", "is required")
            v.check(
                len(request.password) <= credentials.MAX_PASSWORD_LENGTH,
                "password",
                "is too long",
            )
        # Counted before the lookup, by the email's blind index: an unknown email is counted
        # and locked like a known one, with the same answers, and neither lookup nor scrypt
        # runs under a lock, so its timing is the same too.
        account = self._store.email_account(request.email)
        source = self._source(context)
        await self._claim(Factor.PASSWORD, account=account, source=source)
        user = await self._store.admin_by_email(request.email)
        if user is None:
            await asyncio.to_thread(
                credentials.verify_password, request.password, credentials.DUMMY_PASSWORD_HASH
            )
            raise Unauthenticated("wrong email or password")
        if not await asyncio.to_thread(
            credentials.verify_password, request.password, user.password_hash
        ):
            raise Unauthenticated("wrong email or password")  # the attempt stays counted
        # The password's counters only: wrong TOTP codes stay counted (Factor.TOTP).
        await self._store.attempt_succeeded(Factor.PASSWORD, account=account, source=source)
        mfa = self._sessions.mint_access(
            subject=user.user_id,
            merchant_id=None,
            permissions=(),
            ttl_seconds=self._settings.auth_mfa_token_ttl_seconds,
            token_type=MFA,
        )
        return auth_pb2.AdminLoginResponse(
            mfa_token=mfa.token,
            mfa_token_expire_time=timestamp(mfa.expires_at),
            mfa_enrolled=user.mfa_enabled,
        )

    async def _mfa_user(self, mfa_token: str) -> tuple[Principal, AdminUserRecord]:
        with Validator() as v:
            v.check(bool(mfa_token), "mfa_token", "is required")
        principal, _ = await self._verified(mfa_token, token_type=MFA)
        try:
            user = await self._store.admin_by_id(principal.subject)
        except NotFound as exc:
            raise Unauthenticated("the admin user no longer exists") from exc
        return principal, user

    async def EnrollMfa(
        self, request: auth_pb2.EnrollMfaRequest, context: Context
    ) -> auth_pb2.EnrollMfaResponse:
        with Validator() as v:
            v.check(bool(request.enrollment_token), "enrollment_token", "is required")
        _, user = await self._mfa_user(request.mfa_token)
        already = FailedPrecondition(
            "MFA is already enabled for this admin",
            violation_type="MFA_ENROLLED",
            subject=f"admin_users/{user.user_id}",
        )
        if user.mfa_enabled:
            raise already
        # The password alone must not enrol (whoever knows it would own the second factor
        # of an admin who has none yet): the enrolment token, given out of band, is spent.
        if not await self._store.spend_enrollment_token(user.user_id, request.enrollment_token):
            raise PermissionDenied("unknown, expired or already used enrolment token")
        secret = credentials.new_totp_secret()
        if not await self._store.set_totp_secret(user.user_id, secret):
            raise already
        return auth_pb2.EnrollMfaResponse(
            secret=secret,
            provisioning_uri=credentials.totp_provisioning_uri(
                secret, account=user.email, issuer=self._settings.auth_mfa_issuer_name
            ),
        )

    async def VerifyMfa(
        self, request: auth_pb2.VerifyMfaRequest, context: Context
    ) -> auth_pb2.VerifyMfaResponse:
        code = credentials.totp_code(request.code)
        if code is None:  # e.g. "١٢٣٤٥٦": digits to str.isdigit(), never a TOTP code
            raise InvalidArgument.for_field(
                "code", "must be the 6 digits (0-9) of the current code"
            )
        mfa, user = await self._mfa_user(request.mfa_token)
        if user.totp_secret is None:
            raise FailedPrecondition(
                "no TOTP secret yet: call EnrollMfa first",
                violation_type="MFA_NOT_ENROLLED",
                subject=f"admin_users/{user.user_id}",
            )
        source = self._source(context)
        # Counted before the code is checked (parallel guesses included): at most the limit
        # of codes is ever checked between two locks, whatever the password did meanwhile.
        await self._claim(Factor.TOTP, account=user.user_id, source=source)
        step = credentials.accepted_totp_step(user.totp_secret, code, last_step=user.totp_last_step)
        if step is None:
            raise Unauthenticated("wrong or already used code")
        async with self._store.pool.connection() as conn, conn.transaction():
            if not await self._store.accept_totp_step(conn, user.user_id, step):
                raise Unauthenticated("wrong or already used code")
            issued = await self._sessions.open(
                conn,
                kind="admin",
                subject=user.user_id,
                merchant_id=user.merchant_id,
                permissions=user.permissions,
                max_age_seconds=self._settings.auth_admin_session_max_age_seconds,
            )
        await self._store.attempt_succeeded(Factor.TOTP, account=user.user_id, source=source)
        if self._revocations is not None:  # the MFA token is spent
            await self._revocations.revoke(mfa.token_id, mfa.expires_at)
        return auth_pb2.VerifyMfaResponse(
            tokens=token_pair(issued), user=admin_user_proto(replace(user, mfa_enabled=True))
        )

    # ---- impersonation ------------------------------------------------------------------

    async def StartImpersonation(
        self, request: auth_pb2.StartImpersonationRequest, context: Context
    ) -> auth_pb2.StartImpersonationResponse:
        caller = current_principal()
        # Merchant-bound callers (merchant admins, impersonation tokens) never impersonate.
        if caller.merchant_id:
            raise PermissionDenied("only platform admins (no merchant) impersonate merchants")
        with Validator() as v:
            v.uuid("merchant_id", request.merchant_id)
            v.text("reason", request.reason, required=True)
            v.check(
                0 <= request.ttl_seconds <= MAX_IMPERSONATION_SECONDS,
                "ttl_seconds",
                f"must be at most {MAX_IMPERSONATION_SECONDS}",
            )
        admin = await self._admin_caller(caller)
        merchant = await self._store.get_merchant(request.merchant_id)
        if merchant.status != "active":
            raise FailedPrecondition(
                "the merchant uninstalled the app",
                violation_type="MERCHANT_INACTIVE",
                subject=f"merchants/{merchant.merchant_id}",
            )
        session_id = str(uuid.uuid4())
        token: Minted = self._sessions.mint_access(
            subject=admin.user_id,
            merchant_id=merchant.merchant_id,
            permissions=self._settings.auth_owner_permissions,
            ttl_seconds=request.ttl_seconds or DEFAULT_IMPERSONATION_SECONDS,
            extra={"imp": session_id, "act": {"sub": admin.user_id}},
        )
        async with self._store.pool.connection() as conn, conn.transaction():
            record = await self._store.start_impersonation(
                conn,
                session_id=session_id,
                admin_id=admin.user_id,
                merchant_id=merchant.merchant_id,
                reason=request.reason.strip(),
                token_id=token.token_id,
                created_at=token.issued_at,
                expires_at=token.expires_at,
            )
        log.info(
            "impersonation started",
            admin_id=admin.user_id,
            merchant_id=merchant.merchant_id,
            session_id=session_id,
        )
        return auth_pb2.StartImpersonationResponse(
            session=impersonation_proto(record), access_token=token.token
        )

    async def _admin_caller(self, caller: Principal) -> AdminUserRecord:
        """The admin user behind the caller's token, who must have signed in with MFA."""
        if not is_uuid(caller.subject):
            raise PermissionDenied("this call needs an admin user's session")
        try:
            admin = await self._store.admin_by_id(caller.subject)
        except NotFound as exc:
            raise PermissionDenied("this call needs an admin user's session") from exc
        if not admin.mfa_enabled:
            raise PermissionDenied("this call needs an admin who signed in with MFA")
        return admin

    async def EndImpersonation(
        self, request: auth_pb2.EndImpersonationRequest, context: Context
    ) -> auth_pb2.EndImpersonationResponse:
        caller = current_principal()
        if caller.merchant_id:
            raise PermissionDenied("only platform admins (no merchant) handle impersonations")
        with Validator() as v:
            v.uuid("session_id", request.session_id)
        record = await self._store.get_impersonation(request.session_id)
        if record.admin_id != caller.subject and not caller.has("admin:full"):
            raise PermissionDenied("only the admin who started it (or admin:full) can end it")
        record = await self._store.end_impersonation(request.session_id, caller.subject)
        if self._revocations is not None and record.expires_at > datetime.now(UTC):
            await self._revocations.revoke(record.token_id, int(record.expires_at.timestamp()))
        return auth_pb2.EndImpersonationResponse(session=impersonation_proto(record))


def _merchant_of_record(merchant_id: str | None) -> str | None:
    """The merchant a revocation is recorded under: Auth's merchants are UUIDs, so a token
    naming another id (minted for development with `loyalnest token --merchant NAME`) is
    revoked like any other and recorded under no merchant instead of failing."""
    return merchant_id if merchant_id is not None and is_uuid(merchant_id) else None

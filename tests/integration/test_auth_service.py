"""The Auth service over real gRPC: real PostgreSQL, a real Valkey for the revocation list, a
local Shopify stand-in for OAuth, and a real Points service that must honour revocations."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
import psycopg
import pyotp
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from loyalnest.gen.auth.v1 import auth_pb2, auth_pb2_grpc
from loyalnest.gen.events.v1 import auth_pb2 as auth_events
from loyalnest.gen.events.v1 import envelope_pb2
from loyalnest.gen.points.v1 import points_pb2, points_pb2_grpc
from loyalnest.platform.auth.keys import KeySet
from loyalnest.platform.auth.policy import access_policy
from loyalnest.platform.auth.tokens import SERVICE, TokenVerifier
from loyalnest.platform.crypto import FieldCipher
from loyalnest.platform.server import RunningService
from loyalnest.services.auth.service import SPEC, AuthSettings
from loyalnest.services.points.service import SPEC as POINTS_SPEC
from tests.auth import ISSUER, JWKS_PATH, KEYSET, KEYSET_PATH, token
from tests.integration.conftest import (
    points_settings,
    serve_for_test,
    service_settings_for_tests,
    serving,
    stub_for,
)
from tests.integration.shopify_standin import API_KEY, API_SECRET, ShopifyStandIn

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
Metadata = tuple[tuple[str, str], ...]
ENCRYPTION_KEY = base64.b64encode(os.urandom(32)).decode()
SHOP = "snowdevil.myshopify.com"
pb = auth_pb2


# ---- servers ----------------------------------------------------------------------------


def auth_settings(
    database_url: str, redis_url: str, shopify: ShopifyStandIn, **overrides: Any
) -> AuthSettings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        # The keyset whose public half every service under test trusts (tests/auth.py).
        "auth_signing_keys_path": KEYSET_PATH,
        "jwt_jwks_path": JWKS_PATH,
        "auth_encryption_key": ENCRYPTION_KEY,
        "shopify_api_key": API_KEY,
        "shopify_api_secret": API_SECRET,
        "shopify_base_url": shopify.base_url,
        "shopify_redirect_url": "http://localhost:5173/auth/callback",
    }
    return service_settings_for_tests(AuthSettings, database_url, **(values | overrides))


@pytest.fixture
async def auth(
    database_url: str, redis_url: str, shopify: ShopifyStandIn
) -> AsyncIterator[RunningService]:
    async with serving(SPEC, auth_settings(database_url, redis_url, shopify)) as service:
        yield service


@pytest.fixture
async def stub(auth: RunningService) -> AsyncIterator[auth_pb2_grpc.AuthServiceStub]:
    async with stub_for(auth, auth_pb2_grpc.AuthServiceStub) as stub:
        yield stub


@pytest.fixture
async def points(
    database_url: str, redis_url: str
) -> AsyncIterator[points_pb2_grpc.PointsServiceStub]:
    settings = points_settings(database_url).model_copy(update={"redis_url": redis_url})
    async with serve_for_test(POINTS_SPEC, settings, points_pb2_grpc.PointsServiceStub) as (
        _,
        stub,
    ):
        yield stub


# ---- helpers ----------------------------------------------------------------------------


def bearer(access_token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {access_token}"),)


def admin() -> tuple[tuple[str, str], ...]:
    """A platform admin's call metadata, minted per call: a module-level token would expire
    (15 minutes) before a long suite reaches its tests."""
    return bearer(token(None, ["admin:full"]))


async def status_of(call: Awaitable[Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value.code()


async def query(database_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall()


async def start_login(stub: auth_pb2_grpc.AuthServiceStub, shop: str = SHOP) -> pb.LoginResponse:
    return await stub.Login(pb.LoginRequest(shop=shop))


async def install(
    stub: auth_pb2_grpc.AuthServiceStub, shopify: ShopifyStandIn, shop: str = SHOP
) -> pb.CompleteLoginResponse:
    login = await start_login(stub, shop)
    return await stub.CompleteLogin(pb.CompleteLoginRequest(**shopify.approve(login.authorize_url)))


async def balance_status(
    points: points_pb2_grpc.PointsServiceStub, access_token: str
) -> grpc.StatusCode:
    """OK, or the status Points answered a read with this token."""
    try:
        await points.EarnPoints(
            points_pb2.EarnPointsRequest(
                customer_id="c-1", points=1, idempotency_key=os.urandom(8).hex()
            ),
            metadata=bearer(access_token),
        )
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


# ---- Shopify OAuth ----------------------------------------------------------------------


async def test_oauth_install_issues_a_merchant_session(stub, shopify, points, database_url) -> None:
    login = await start_login(stub)
    assert login.authorize_url.startswith(shopify.base_url.format(shop=SHOP))
    assert f"state={login.state}" in login.authorize_url and len(login.state) >= 32
    assert login.state_expire_time.seconds > time.time()

    done = await stub.CompleteLogin(pb.CompleteLoginRequest(**shopify.approve(login.authorize_url)))
    assert done.created
    assert done.merchant.shop_domain == SHOP
    assert done.merchant.status == pb.MERCHANT_STATUS_ACTIVE
    assert list(done.merchant.scopes) == ["read_customers", "read_orders", "write_discounts"]
    # Expiring offline token requested from Shopify, code exchanged once.
    assert [(e.shop, e.form["expiring"], e.status) for e in shopify.exchanges] == [(SHOP, "1", 200)]

    tokens = done.tokens
    assert tokens.token_type == "Bearer" and tokens.refresh_token and tokens.session_id
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert claims["typ"] == "access" and claims["iss"] == "loyalnest-auth"
    assert claims["aud"] == "loyalnest" and claims["jti"]
    assert claims["merchant_id"] == done.merchant.merchant_id
    assert claims["user_id"] == claims["sub"] and claims["sid"] == tokens.session_id

    # The token works on another service, and Auth validates it.
    assert await balance_status(points, tokens.access_token) == grpc.StatusCode.OK
    validated = await stub.ValidateToken(pb.ValidateTokenRequest(token=tokens.access_token))
    assert validated.claims.merchant_id == done.merchant.merchant_id
    assert validated.claims.session_id == tokens.session_id
    assert validated.claims.key_id == KEYSET.active_kid
    assert "points:*" in validated.claims.permissions
    merchant = await stub.ValidateMerchant(
        pb.ValidateMerchantRequest(), metadata=bearer(tokens.access_token)
    )
    assert merchant.merchant.shop_domain == SHOP

    # merchant.created went to the outbox with the install, once.
    rows = await query(database_url, "SELECT event_type, envelope FROM auth.outbox")
    assert [r[0] for r in rows] == ["merchant.created"]
    envelope = envelope_pb2.Envelope.FromString(rows[0][1])
    payload = auth_events.MerchantCreated()
    assert envelope.payload.Unpack(payload) and payload.shop_domain == SHOP
    assert envelope.merchant_id == done.merchant.merchant_id

    # The install is audited without the Shopify tokens.
    audit = await query(
        database_url,
        "SELECT actor, action, entity_id, details FROM auth.audit_logs"
        " WHERE entity_type = 'merchants'",
    )
    assert [(a[0], a[1], a[2]) for a in audit] == [
        (f"shop:{SHOP}", "create", done.merchant.merchant_id)
    ]
    assert "access_token" not in audit[0][3]["new"]
    assert "access_token" in audit[0][3]["changed"]

    # A second install of the same shop signs in again: same merchant, no new event.
    again = await install(stub, shopify)
    assert not again.created and again.merchant.merchant_id == done.merchant.merchant_id
    assert len(await query(database_url, "SELECT 1 FROM auth.outbox")) == 1


async def test_no_plaintext_shopify_token_in_the_database(stub, shopify, database_url) -> None:
    done = await install(stub, shopify)
    access_token, refresh_token = shopify.issued_tokens
    rows = await query(
        database_url,
        "SELECT m::text, access_token, refresh_token FROM auth.merchants m",
    )
    assert len(rows) == 1
    row_text, access_blob, refresh_blob = rows[0]
    for secret in (access_token, refresh_token):
        assert secret not in row_text
        assert secret.encode() not in bytes(access_blob) + bytes(refresh_blob)
    # It is the token, encrypted with the configured key and bound to this merchant's row.
    cipher = FieldCipher.from_base64(ENCRYPTION_KEY)
    merchant_id = done.merchant.merchant_id
    context = f"auth.merchants.access_token:{merchant_id}"
    assert cipher.decrypt_text(access_blob, context=context) == access_token
    # Nowhere else in the schema either (sessions, refresh tokens, outbox, audit log).
    dump = await query(
        database_url,
        "SELECT string_agg(t::text, ' ') FROM ("
        " SELECT row_to_json(s)::text AS t FROM auth.sessions s"
        " UNION ALL SELECT row_to_json(r)::text FROM auth.refresh_tokens r"
        " UNION ALL SELECT row_to_json(a)::text FROM auth.audit_logs a"
        " UNION ALL SELECT encode(envelope, 'escape') FROM auth.outbox) x",
    )
    assert access_token not in dump[0][0] and done.tokens.refresh_token not in dump[0][0]


async def test_bad_hmac_is_rejected_and_nothing_is_stored(stub, shopify, database_url) -> None:
    login = await start_login(stub)
    params = shopify.approve(login.authorize_url)
    forged = [
        params | {"hmac": "0" * 64},
        params
        | {"hmac": shopify.sign({k: v for k, v in params.items() if k != "hmac"}, "x")["hmac"]},
        params | {"shop": "attacker.myshopify.com"},  # signed for another shop
        params | {"code": "another-code"},
        {k: v for k, v in params.items() if k != "host"},  # a signed parameter dropped
    ]
    for query_params in forged:
        code = await status_of(stub.CompleteLogin(pb.CompleteLoginRequest(**query_params)))
        assert code == grpc.StatusCode.UNAUTHENTICATED, query_params
    assert await query(database_url, "SELECT 1 FROM auth.merchants") == []
    assert await query(database_url, "SELECT 1 FROM auth.outbox") == []
    assert shopify.exchanges == []  # the code was never used
    # The genuine redirect still works: the forgeries did not spend the state.
    done = await stub.CompleteLogin(pb.CompleteLoginRequest(**params))
    assert done.created


async def test_state_is_single_use_and_must_be_ours(stub, shopify, database_url) -> None:
    login = await start_login(stub)
    params = shopify.approve(login.authorize_url)
    await stub.CompleteLogin(pb.CompleteLoginRequest(**params))
    # The same redirect again (a replay): the state is spent.
    replay = await status_of(stub.CompleteLogin(pb.CompleteLoginRequest(**params)))
    assert replay == grpc.StatusCode.UNAUTHENTICATED
    # A state we never issued, correctly signed by Shopify.
    unknown = shopify.sign(
        {k: v for k, v in params.items() if k != "hmac"} | {"state": "not-issued-by-us"}
    )
    assert await status_of(stub.CompleteLogin(pb.CompleteLoginRequest(**unknown))) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    # A state issued for another shop.
    other = await start_login(stub, "other-shop.myshopify.com")
    mixed = shopify.approve(login.authorize_url.replace(login.state, other.state))
    assert await status_of(stub.CompleteLogin(pb.CompleteLoginRequest(**mixed))) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    # A stale (but signed) redirect.
    fresh = await start_login(stub)
    stale = shopify.approve(fresh.authorize_url, timestamp=int(time.time()) - 3600)
    assert await status_of(stub.CompleteLogin(pb.CompleteLoginRequest(**stale))) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert len(await query(database_url, "SELECT 1 FROM auth.merchants")) == 1


async def test_login_input_and_shopify_code_errors(stub, shopify) -> None:
    for shop in ("", "evil.com", "-x.myshopify.com", "shop.myshopify.com.evil.com"):
        assert await status_of(stub.Login(pb.LoginRequest(shop=shop))) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
    # Shopify's own signed install request is verified when it carries an hmac.
    signed = shopify.sign(
        {"shop": SHOP, "timestamp": str(int(time.time())), "host": "aGk", "locale": "en"}
    )
    assert (await stub.Login(pb.LoginRequest(**signed))).authorize_url
    assert await status_of(stub.Login(pb.LoginRequest(**(signed | {"hmac": "00"})))) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    # A code Shopify does not know (400 from the token endpoint) → INVALID_ARGUMENT.
    login = await start_login(stub)
    params = shopify.approve(login.authorize_url)
    shopify.auth_codes.clear()
    assert await status_of(stub.CompleteLogin(pb.CompleteLoginRequest(**params))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert [e.status for e in shopify.exchanges] == [400]


async def test_validate_merchant_is_tenant_scoped(stub, shopify) -> None:
    a = await install(stub, shopify, "shop-a.myshopify.com")
    b = await install(stub, shopify, "shop-b.myshopify.com")
    as_a = bearer(a.tokens.access_token)
    own = await stub.ValidateMerchant(pb.ValidateMerchantRequest(), metadata=as_a)
    assert own.merchant.merchant_id == a.merchant.merchant_id
    other = pb.ValidateMerchantRequest(merchant_id=b.merchant.merchant_id)
    assert await status_of(stub.ValidateMerchant(other, metadata=as_a)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    service = bearer(token(None, ["auth:validate"]))
    found = await stub.ValidateMerchant(other, metadata=service)
    assert found.merchant.shop_domain == "shop-b.myshopify.com"
    unknown = pb.ValidateMerchantRequest(merchant_id="00000000-0000-4000-8000-000000000000")
    assert await status_of(stub.ValidateMerchant(unknown, metadata=service)) == (
        grpc.StatusCode.NOT_FOUND
    )
    bad = pb.ValidateMerchantRequest(merchant_id="not-a-uuid")
    assert await status_of(stub.ValidateMerchant(bad, metadata=service)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert await status_of(stub.ValidateMerchant(pb.ValidateMerchantRequest())) == (
        grpc.StatusCode.UNAUTHENTICATED
    )


# ---- refresh tokens and revocation ------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_family(stub, shopify, points) -> None:
    first = (await install(stub, shopify)).tokens
    second = (
        await stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=first.refresh_token))
    ).tokens
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert second.session_id == first.session_id
    assert await balance_status(points, second.access_token) == grpc.StatusCode.OK

    # The spent token comes back: the whole session is revoked.
    reuse = stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=first.refresh_token))
    assert await status_of(reuse) == grpc.StatusCode.UNAUTHENTICATED
    newest = stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=second.refresh_token))
    assert await status_of(newest) == grpc.StatusCode.UNAUTHENTICATED
    # Its live access tokens too, on every service (revocation list in Redis).
    for access in (first.access_token, second.access_token):
        assert await balance_status(points, access) == grpc.StatusCode.UNAUTHENTICATED
        validate = stub.ValidateToken(pb.ValidateTokenRequest(token=access))
        assert await status_of(validate) == grpc.StatusCode.UNAUTHENTICATED
    # Another sign-in is another family, unaffected.
    other = (await install(stub, shopify)).tokens
    assert await stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=other.refresh_token))
    unknown = stub.RefreshToken(pb.RefreshTokenRequest(refresh_token="made-up"))
    assert await status_of(unknown) == grpc.StatusCode.UNAUTHENTICATED


async def test_revoked_token_is_rejected_by_points(stub, shopify, points, database_url) -> None:
    tokens = (await install(stub, shopify)).tokens
    assert await balance_status(points, tokens.access_token) == grpc.StatusCode.OK
    # Revoking needs the permission.
    merchant_caller = bearer(tokens.access_token)
    denied = stub.RevokeToken(
        pb.RevokeTokenRequest(token=tokens.access_token), metadata=merchant_caller
    )
    assert await status_of(denied) == grpc.StatusCode.PERMISSION_DENIED

    revoked = await stub.RevokeToken(
        pb.RevokeTokenRequest(token=tokens.access_token, reason="laptop stolen"), metadata=admin()
    )
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    assert revoked.token_id == claims["jti"] and revoked.expire_time.seconds == claims["exp"]
    assert revoked.session_id == tokens.session_id
    assert await balance_status(points, tokens.access_token) == grpc.StatusCode.UNAUTHENTICATED
    refresh = stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=tokens.refresh_token))
    assert await status_of(refresh) == grpc.StatusCode.UNAUTHENTICATED
    events = await query(database_url, "SELECT event_type FROM auth.outbox ORDER BY id")
    assert [e[0] for e in events] == ["merchant.created", "auth.revoked"]

    # By jti alone (e.g. from an access log), for a token of another session.
    other = (await install(stub, shopify)).tokens
    jti = jwt.decode(other.access_token, options={"verify_signature": False})["jti"]
    await stub.RevokeToken(pb.RevokeTokenRequest(token_id=jti), metadata=admin())
    assert await balance_status(points, other.access_token) == grpc.StatusCode.UNAUTHENTICATED
    # A development token naming no merchant Auth could have (`loyalnest token --merchant
    # demo-shop`): revoked, recorded under no merchant, not an internal error.
    dev_token = token("demo-shop", ["points:read"])
    await stub.RevokeToken(pb.RevokeTokenRequest(token=dev_token), metadata=admin())
    assert await balance_status(points, dev_token) == grpc.StatusCode.UNAUTHENTICATED
    # Either token or token_id.
    neither = stub.RevokeToken(pb.RevokeTokenRequest(), metadata=admin())
    assert await status_of(neither) == grpc.StatusCode.INVALID_ARGUMENT

    # Both revocations are audited; the one by jti alone concerns no merchant.
    audit = await query(
        database_url,
        "SELECT merchant_id, actor, details->'new'->>'token_id', details->'new'->>'reason'"
        " FROM auth.audit_logs WHERE entity_type = 'token_revocations'"
        " ORDER BY created_at, log_id",
    )
    dev_jti = jwt.decode(dev_token, options={"verify_signature": False})["jti"]
    assert audit == [
        (claims["merchant_id"], "test-user", claims["jti"], "laptop stolen"),
        (None, "test-user", jti, "revoked by an administrator"),
        (None, "test-user", dev_jti, "revoked by an administrator"),
    ]


# ---- keys -------------------------------------------------------------------------------


def _write_keys(directory: Path, keyset: KeySet, published: KeySet) -> tuple[Path, Path]:
    private, public = directory / "signing-keys.json", directory / "jwks.json"
    private.write_text(keyset.to_json())
    public.write_text(json.dumps(published.public_jwks()))
    return private, public


async def test_jwks_lists_both_keys_during_rotation(
    database_url, redis_url, shopify, tmp_path
) -> None:
    old = KeySet.generate(local=False)
    private, public = _write_keys(tmp_path, old, old)
    settings = auth_settings(
        database_url,
        redis_url,
        shopify,
        auth_signing_keys_path=private,
        jwt_jwks_path=public,
        auth_signing_keys_reload_seconds=0.05,
        # A production-like keyset (not local): the service then needs its own page-token key.
        page_token_key="rotation-test-page-token-key-32b",
    )
    async with serve_for_test(SPEC, settings, auth_pb2_grpc.AuthServiceStub) as (_, stub):
        jwks = await stub.GetJwks(pb.GetJwksRequest())
        assert [k.kid for k in jwks.keys] == [old.active_kid]
        assert (jwks.keys[0].kty, jwks.keys[0].crv, jwks.keys[0].alg) == (
            "OKP",
            "Ed25519",
            "EdDSA",
        )
        tokens = (await install(stub, shopify)).tokens

        # Steps 1+2: add the new key, publish both; the old key still signs.
        both = old.with_new_key(activate=False)
        new_kid = next(kid for kid in both.keys if kid != old.active_kid)
        _write_keys(tmp_path, both, both)
        # Step 3: activate the new key.
        _write_keys(tmp_path, dataclasses.replace(both, active_kid=new_kid), both)
        await asyncio.sleep(0.2)
        jwks = await stub.GetJwks(pb.GetJwksRequest())
        assert {k.kid for k in jwks.keys} == {old.active_kid, new_kid}
        rotated = (
            await stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=tokens.refresh_token))
        ).tokens
        assert jwt.get_unverified_header(rotated.access_token)["kid"] == new_kid

        # Tokens of either key verify: at Auth and with the published JWKS.
        verifier = TokenVerifier(
            MessageToDict(jwks, preserving_proto_field_name=True),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        for access, kid in (
            (tokens.access_token, old.active_kid),
            (rotated.access_token, new_kid),
        ):
            assert verifier.verify(access).merchant_id
            validated = await stub.ValidateToken(pb.ValidateTokenRequest(token=access))
            assert validated.claims.key_id == kid
        # A keyset whose active key is not published yet is not picked up.
        unpublished = both.with_new_key(activate=True)
        _write_keys(tmp_path, unpublished, both)
        await asyncio.sleep(0.2)
        again = (
            await stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=rotated.refresh_token))
        ).tokens
        assert jwt.get_unverified_header(again.access_token)["kid"] == new_kid


# ---- admins, MFA, impersonation -------------------------------------------------------


async def create_admin(
    stub: auth_pb2_grpc.AuthServiceStub, email: str, permissions: list[str]
) -> pb.CreateAdminUserResponse:
    """The new admin and its MFA enrolment token."""
    created: pb.CreateAdminUserResponse = await stub.CreateAdminUser(
        pb.CreateAdminUserRequest(
            email=email, password="correct horse battery", permissions=permissions
        ),
        metadata=admin(),
    )
    return created


async def admin_session(
    stub: auth_pb2_grpc.AuthServiceStub, email: str, enrollment_token: str
) -> tuple[pb.VerifyMfaResponse, str]:
    login = await stub.AdminLogin(
        pb.AdminLoginRequest(email=email, password="correct horse battery")
    )
    enrolled = await stub.EnrollMfa(
        pb.EnrollMfaRequest(mfa_token=login.mfa_token, enrollment_token=enrollment_token)
    )
    code = pyotp.TOTP(enrolled.secret).now()
    verified = await stub.VerifyMfa(pb.VerifyMfaRequest(mfa_token=login.mfa_token, code=code))
    return verified, enrolled.secret


async def test_admin_sign_in_needs_totp(stub, points, database_url) -> None:
    email = "Ops@LoyalNest.example"
    created = await create_admin(stub, email, ["auth:impersonate", "admin:analytics"])
    user = created.user
    assert not user.mfa_enabled and user.email == email.lower()
    # Only permissions the caller holds can be granted.
    weak = bearer(token(None, ["auth:admin"]))
    escalate = stub.CreateAdminUser(
        pb.CreateAdminUserRequest(
            email="x@loyalnest.example",
            password="correct horse battery",
            permissions=["admin:full"],
        ),
        metadata=weak,
    )
    assert await status_of(escalate) == grpc.StatusCode.PERMISSION_DENIED
    duplicate = stub.CreateAdminUser(
        pb.CreateAdminUserRequest(email=email, password="correct horse battery"), metadata=admin()
    )
    assert await status_of(duplicate) == grpc.StatusCode.ALREADY_EXISTS

    wrong = stub.AdminLogin(pb.AdminLoginRequest(email=email, password="wrong password!!"))
    assert await status_of(wrong) == grpc.StatusCode.UNAUTHENTICATED
    login = await stub.AdminLogin(
        pb.AdminLoginRequest(email=email, password="correct horse battery")
    )
    assert not login.mfa_enrolled
    # The MFA token is no access token: no service accepts it, and it carries no permission.
    assert await balance_status(points, login.mfa_token) == grpc.StatusCode.UNAUTHENTICATED
    assert jwt.decode(login.mfa_token, options={"verify_signature": False})["perms"] == []
    not_enrolled = stub.VerifyMfa(pb.VerifyMfaRequest(mfa_token=login.mfa_token, code="123456"))
    assert await status_of(not_enrolled) == grpc.StatusCode.FAILED_PRECONDITION

    enrolled = await stub.EnrollMfa(
        pb.EnrollMfaRequest(mfa_token=login.mfa_token, enrollment_token=created.enrollment_token)
    )
    assert enrolled.provisioning_uri.startswith("otpauth://totp/LoyalNest:")
    totp = pyotp.TOTP(enrolled.secret)
    bad = stub.VerifyMfa(pb.VerifyMfaRequest(mfa_token=login.mfa_token, code="000000"))
    assert await status_of(bad) == grpc.StatusCode.UNAUTHENTICATED
    code = totp.now()
    verified = await stub.VerifyMfa(pb.VerifyMfaRequest(mfa_token=login.mfa_token, code=code))
    assert verified.user.mfa_enabled
    claims = (
        await stub.ValidateToken(pb.ValidateTokenRequest(token=verified.tokens.access_token))
    ).claims
    assert set(claims.permissions) == {"auth:impersonate", "admin:analytics"}
    assert claims.subject == user.user_id and not claims.merchant_id

    # The MFA token is spent, a code works once, and enrolment cannot be redone.
    spent = stub.VerifyMfa(pb.VerifyMfaRequest(mfa_token=login.mfa_token, code=code))
    assert await status_of(spent) == grpc.StatusCode.UNAUTHENTICATED
    login2 = await stub.AdminLogin(
        pb.AdminLoginRequest(email=email, password="correct horse battery")
    )
    assert login2.mfa_enrolled
    replay = stub.VerifyMfa(pb.VerifyMfaRequest(mfa_token=login2.mfa_token, code=code))
    assert await status_of(replay) == grpc.StatusCode.UNAUTHENTICATED
    redo = stub.EnrollMfa(
        pb.EnrollMfaRequest(mfa_token=login2.mfa_token, enrollment_token=created.enrollment_token)
    )
    assert await status_of(redo) == grpc.StatusCode.FAILED_PRECONDITION

    # The TOTP secret and the email are encrypted at rest.
    rows = await query(database_url, "SELECT a::text, totp_secret FROM auth.admin_users a")
    row_text, secret_blob = rows[0]
    assert enrolled.secret not in row_text and email.lower() not in row_text
    assert enrolled.secret.encode() not in bytes(secret_blob)


async def test_platform_admin_accounts_are_audited(stub, database_url) -> None:
    """A platform admin (no merchant) and its sign-in set-up are in the audit log, without its
    email or secrets."""
    created = await create_admin(stub, "root@loyalnest.example", ["auth:impersonate"])
    user = created.user
    await admin_session(stub, "root@loyalnest.example", created.enrollment_token)
    # Signing in again is not an account change: nothing more is logged.
    login = await stub.AdminLogin(
        pb.AdminLoginRequest(email="root@loyalnest.example", password="correct horse battery")
    )
    assert login.mfa_enrolled
    rows = await query(
        database_url,
        "SELECT merchant_id, user_id, action, actor, details FROM auth.audit_logs"
        " WHERE entity_type = 'admin_users' ORDER BY created_at, log_id",
    )
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (None, user.user_id, "create", "test-user"),
        (None, user.user_id, "update", user.user_id),  # EnrollMfa: a TOTP secret
        (None, user.user_id, "update", user.user_id),  # VerifyMfa: MFA enabled
    ]
    assert rows[2][4]["changed"] == ["mfa_enabled_at", "totp_last_step"]
    logged = json.dumps([r[4] for r in rows])
    assert "root@loyalnest" not in logged and "scrypt$" not in logged
    assert "totp_secret" in rows[1][4]["changed"] and "totp_secret" not in rows[1][4]["new"]


async def test_repeated_failures_lock_the_admin(stub) -> None:
    email = "locked@loyalnest.example"
    await create_admin(stub, email, [])
    for _ in range(5):
        wrong = stub.AdminLogin(pb.AdminLoginRequest(email=email, password="wrong password!!"))
        assert await status_of(wrong) == grpc.StatusCode.UNAUTHENTICATED
    right = stub.AdminLogin(pb.AdminLoginRequest(email=email, password="correct horse battery"))
    assert await status_of(right) == grpc.StatusCode.UNAUTHENTICATED


async def test_impersonation_is_audited_and_time_boxed(stub, shopify, points, database_url) -> None:
    merchant = (await install(stub, shopify)).merchant
    admin_email = "support@loyalnest.example"
    created = await create_admin(stub, admin_email, ["auth:impersonate"])
    admin = created.user
    session, _ = await admin_session(stub, admin_email, created.enrollment_token)
    as_admin = bearer(session.tokens.access_token)

    too_long = stub.StartImpersonation(
        pb.StartImpersonationRequest(
            merchant_id=merchant.merchant_id, reason="t", ttl_seconds=3601
        ),
        metadata=as_admin,
    )
    assert await status_of(too_long) == grpc.StatusCode.INVALID_ARGUMENT
    no_reason = stub.StartImpersonation(
        pb.StartImpersonationRequest(merchant_id=merchant.merchant_id), metadata=as_admin
    )
    assert await status_of(no_reason) == grpc.StatusCode.INVALID_ARGUMENT
    # A token with the permission but no MFA'd admin behind it is refused.
    forged_admin = bearer(token(None, ["auth:impersonate"]))
    refused = stub.StartImpersonation(
        pb.StartImpersonationRequest(merchant_id=merchant.merchant_id, reason="ticket 42"),
        metadata=forged_admin,
    )
    assert await status_of(refused) == grpc.StatusCode.PERMISSION_DENIED

    started = await stub.StartImpersonation(
        pb.StartImpersonationRequest(merchant_id=merchant.merchant_id, reason="ticket 42"),
        metadata=as_admin,
    )
    imp = started.session
    assert imp.admin_id == admin.user_id and imp.merchant_id == merchant.merchant_id
    assert imp.expire_time.seconds - imp.create_time.seconds == 900
    claims = (await stub.ValidateToken(pb.ValidateTokenRequest(token=started.access_token))).claims
    assert claims.merchant_id == merchant.merchant_id and claims.actor_id == admin.user_id
    assert await balance_status(points, started.access_token) == grpc.StatusCode.OK

    ended = await stub.EndImpersonation(
        pb.EndImpersonationRequest(session_id=imp.session_id), metadata=as_admin
    )
    assert ended.session.end_time.seconds > 0
    assert await balance_status(points, started.access_token) == grpc.StatusCode.UNAUTHENTICATED

    # A short one expires on its own. Whether it is still valid is judged against the
    # session's own expiry: on a loaded CI machine a call can land seconds late.
    short = await stub.StartImpersonation(
        pb.StartImpersonationRequest(
            merchant_id=merchant.merchant_id, reason="ticket 43", ttl_seconds=3
        ),
        metadata=as_admin,
    )
    expires_at = short.session.expire_time.seconds + short.session.expire_time.nanos / 1e9
    assert short.session.expire_time.seconds - short.session.create_time.seconds == 3
    refused: str | None = None
    try:
        await stub.ValidateToken(pb.ValidateTokenRequest(token=short.access_token))
    except grpc.aio.AioRpcError as error:
        refused = error.details()
    assert refused is None or time.time() >= expires_at, f"refused before it expired: {refused}"
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.5)
    expired = stub.ValidateToken(pb.ValidateTokenRequest(token=short.access_token))
    assert await status_of(expired) == grpc.StatusCode.UNAUTHENTICATED

    # The platform's audit trigger recorded who started and ended what, and why.
    audit = await query(
        database_url,
        "SELECT actor, action, merchant_id, entity_id, details->'new'->>'reason',"
        " details->'changed' FROM auth.audit_logs"
        " WHERE entity_type = 'impersonation_sessions' ORDER BY created_at, log_id",
    )
    started_row, ended_row, short_row = audit
    assert started_row[:5] == (
        admin.user_id,
        "create",
        merchant.merchant_id,
        imp.session_id,
        "ticket 42",
    )
    assert ended_row[:4] == (admin.user_id, "update", merchant.merchant_id, imp.session_id)
    assert ended_row[5] == ["ended_at"]
    assert short_row[:5] == (
        admin.user_id,
        "create",
        merchant.merchant_id,
        short.session.session_id,
        "ticket 43",
    )


# ---- tenant isolation -------------------------------------------------------------------
# Shaped for tests/integration/test_tenant_isolation.py (arrange, snapshot, cases per RPC):
# merchant A, holding exactly the permission an RPC declares, reaches nothing of merchant B.

IsolationAttack = Callable[[grpc.aio.Channel, Metadata, dict[str, Any]], Awaitable[Message]]


def _bearer_of(md: Metadata) -> str:
    return dict(md)["authorization"].removeprefix("Bearer ")


async def isolation_arrange(ch: grpc.aio.Channel, md: Metadata) -> dict[str, Any]:
    """B's data in Auth: B's own session token (and through it, B's merchant id)."""
    b_token = _bearer_of(md)
    claims = jwt.decode(b_token, options={"verify_signature": False})
    return {
        "secrets": [claims["jti"]],
        "token": b_token,
        "jti": claims["jti"],
        "merchant_id": claims["merchant_id"],
    }


async def isolation_snapshot(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Any:
    """B's token still validates: no call of A revoked it."""
    stub = auth_pb2_grpc.AuthServiceStub(ch)
    return (await stub.ValidateToken(pb.ValidateTokenRequest(token=b["token"]))).claims


def _auth_attack(method: str, build: Callable[[dict[str, Any]], Message]) -> IsolationAttack:
    async def attack(ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]) -> Message:
        call = getattr(auth_pb2_grpc.AuthServiceStub(ch), method)
        response: Message = await call(build(b), metadata=md)
        return response

    return attack


async def _shop_token_as_service_of_a(
    ch: grpc.aio.Channel, md: Metadata, b: dict[str, Any]
) -> Message:
    """Points' own service token for merchant A (what A's calls could make Points do) asking
    for B's shop token."""
    a_merchant = jwt.decode(_bearer_of(md), options={"verify_signature": False})["merchant_id"]
    service_token = ISSUER.mint(
        subject="service:points",
        merchant_id=a_merchant,
        permissions=["auth:shop-token"],
        token_type=SERVICE,
        audience=["loyalnest/auth"],
    )
    response: Message = await auth_pb2_grpc.AuthServiceStub(ch).GetShopAccessToken(
        pb.GetShopAccessTokenRequest(merchant_id=b["merchant_id"]), metadata=bearer(service_token)
    )
    return response


ISOLATION_ATTACKS: dict[str, list[IsolationAttack]] = {
    "GetShopAccessToken": [
        # A user's token, even carrying the permission: refused (services only).
        _auth_attack(
            "GetShopAccessToken",
            lambda b: pb.GetShopAccessTokenRequest(merchant_id=b["merchant_id"]),
        ),
        _auth_attack("GetShopAccessToken", lambda b: pb.GetShopAccessTokenRequest()),
        _shop_token_as_service_of_a,
    ],
    "IssueStaffSession": [
        _auth_attack(
            "IssueStaffSession", lambda b: pb.IssueStaffSessionRequest(user_id=str(uuid.uuid4()))
        )
    ],
    "RevokeToken": [
        _auth_attack("RevokeToken", lambda b: pb.RevokeTokenRequest(token=b["token"])),
        _auth_attack("RevokeToken", lambda b: pb.RevokeTokenRequest(token_id=b["jti"])),
    ],
    "ValidateMerchant": [
        _auth_attack(
            "ValidateMerchant", lambda b: pb.ValidateMerchantRequest(merchant_id=b["merchant_id"])
        )
    ],
    "CreateAdminUser": [
        _auth_attack(
            "CreateAdminUser",
            lambda b: pb.CreateAdminUserRequest(
                email="intruder@merchant-a.example",
                password="correct horse battery",
                merchant_id=b["merchant_id"],
            ),
        )
    ],
    "StartImpersonation": [
        _auth_attack(
            "StartImpersonation",
            lambda b: pb.StartImpersonationRequest(merchant_id=b["merchant_id"], reason="x"),
        )
    ],
    "EndImpersonation": [
        _auth_attack(
            "EndImpersonation",
            lambda b: pb.EndImpersonationRequest(session_id=str(uuid.uuid4())),
        )
    ],
}


async def test_merchant_callers_reach_nothing_of_another_merchant(auth) -> None:
    service = pb.DESCRIPTOR.services_by_name["AuthService"]
    protected = {
        m.name
        for m in service.methods
        if not access_policy(f"/{service.full_name}/{m.name}").public
    }
    assert protected == set(ISOLATION_ATTACKS)
    merchant_a, merchant_b = str(uuid.uuid4()), str(uuid.uuid4())
    b_md = bearer(token(merchant_b, ["admin:full"]))
    async with grpc.aio.insecure_channel(auth.address) as channel:
        b = await isolation_arrange(channel, b_md)
        before = await isolation_snapshot(channel, b_md, b)
        for method, attacks in ISOLATION_ATTACKS.items():
            permission = access_policy(f"/{service.full_name}/{method}").permission
            a_md = bearer(token(merchant_a, [permission] if permission else []))
            for attack in attacks:
                code = await status_of(attack(channel, a_md, b))
                assert code in {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND}, (
                    method,
                    code,
                )
        assert await isolation_snapshot(channel, b_md, b) == before

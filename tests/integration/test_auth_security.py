"""Issue 14, Auth's part, through a real Auth server (real PostgreSQL and Valkey, the Shopify
stand-in): the admin sign-in lockout (finding 1), MFA enrolment, and the token, refresh,
shop-domain and Login hardening of finding 8."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pyotp
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from loyalnest.gen.auth.v1 import auth_pb2 as pb
from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.services.auth.domain import LOCKED_MESSAGE
from loyalnest.services.auth.service import SPEC
from tests.auth import KEYSET
from tests.integration.conftest import serve_for_test
from tests.integration.shopify_standin import ShopifyStandIn
from tests.integration.test_auth_service import (
    SHOP,
    auth_settings,
    create_admin,
    install,
    query,
)

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
WRONG_CODE = "wrong or already used code"
WRONG_PASSWORD = "wrong email or password"
Stub = auth_pb2_grpc.AuthServiceStub


@pytest.fixture
def limits() -> dict[str, Any]:
    """Settings of the Auth under test; a test changes them before asking for `stub`."""
    return {}


@pytest.fixture
async def stub(
    database_url: str, redis_url: str, shopify: ShopifyStandIn, limits: dict[str, Any]
) -> AsyncIterator[Stub]:
    settings = auth_settings(database_url, redis_url, shopify, **limits)
    async with serve_for_test(SPEC, settings, Stub) as (_, stub):
        yield stub


def source(address: str) -> tuple[tuple[str, str], ...]:
    """What the gateway sends for a client at `address`: X-Forwarded-For with the address it
    saw appended last (the test talks to Auth from loopback, a trusted proxy by default)."""
    return (("x-forwarded-for", f"10.9.9.9, {address}"),)


async def error_of(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def answer(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    """(status, message) of a call, OK and "" when it succeeded."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def login(stub: Stub, email: str, *, at: str = "192.0.2.1") -> pb.AdminLoginResponse:
    response: pb.AdminLoginResponse = await stub.AdminLogin(
        pb.AdminLoginRequest(email=email, password=PASSWORD), metadata=source(at)
    )
    return response


async def enrolled_admin(stub: Stub, email: str) -> tuple[str, pyotp.TOTP]:
    """An admin with MFA enrolled and verified once: (user id, its authenticator)."""
    created = await create_admin(stub, email, ["auth:impersonate"])
    first = await login(stub, email)
    enrolled = await stub.EnrollMfa(
        pb.EnrollMfaRequest(mfa_token=first.mfa_token, enrollment_token=created.enrollment_token)
    )
    totp = pyotp.TOTP(enrolled.secret)
    # The previous period's code: the next sign-in can use the current one (single use).
    previous = totp.at(time.time() - 30)
    await stub.VerifyMfa(pb.VerifyMfaRequest(mfa_token=first.mfa_token, code=previous))
    return created.user.user_id, totp


def wrong_codes(totp: pyotp.TOTP, count: int) -> list[str]:
    """Codes no drift window accepts now."""
    valid = {totp.at(time.time() + drift) for drift in (-60, -30, 0, 30, 60)}
    return [c for c in (f"{n:06d}" for n in range(count + len(valid))) if c not in valid][:count]


def verify(stub: Stub, mfa_token: str, code: str, at: str = "192.0.2.1") -> Awaitable[Any]:
    return stub.VerifyMfa(pb.VerifyMfaRequest(mfa_token=mfa_token, code=code), metadata=source(at))


# ---- finding 1: the second factor's lockout ---------------------------------------------


@pytest.mark.parametrize("limits", [{"auth_totp_attempts_per_source": 1000}])
async def test_parallel_wrong_codes_check_at_most_the_limit(stub) -> None:
    _, totp = await enrolled_admin(stub, "parallel@loyalnest.example")
    mfa = (await login(stub, "parallel@loyalnest.example")).mfa_token
    guesses = wrong_codes(totp, 44)
    # 4 wrong codes one after the other: one more may be checked before the lock ...
    for code in guesses[:4]:
        assert (await answer(verify(stub, mfa, code)))[1] == WRONG_CODE
    # ... however many arrive at once.
    guesses = guesses[4:]
    answers = await asyncio.gather(*(answer(verify(stub, mfa, code)) for code in guesses))
    assert {status for status, _ in answers} == {grpc.StatusCode.UNAUTHENTICATED}
    checked = [message for _, message in answers if message == WRONG_CODE]
    refused = [message for _, message in answers if message == LOCKED_MESSAGE]
    # One code at most was compared (5 in all); every other guess was refused unchecked.
    assert len(checked) <= 1 and len(checked) + len(refused) == len(guesses), answers
    # The right code is refused too while the lock lasts.
    assert await answer(verify(stub, mfa, totp.now())) == (
        grpc.StatusCode.UNAUTHENTICATED,
        LOCKED_MESSAGE,
    )


@pytest.mark.parametrize("limits", [{"auth_totp_attempts_per_source": 1000}])
async def test_a_correct_password_does_not_reset_the_code_count(stub) -> None:
    """The attack of the issue: 4 wrong codes, the (known) password again, 4 wrong codes..."""
    email = "knows-the-password@loyalnest.example"
    _, totp = await enrolled_admin(stub, email)
    guesses = iter(wrong_codes(totp, 20))
    outcomes = []
    for _ in range(3):
        mfa = (await login(stub, email)).mfa_token  # the password still works, each time
        for _ in range(4):
            outcomes.append(await answer(verify(stub, mfa, next(guesses))))
    messages = [message for _, message in outcomes]
    assert messages[:5] == [WRONG_CODE] * 5
    assert set(messages[5:]) == {LOCKED_MESSAGE}
    mfa = (await login(stub, email)).mfa_token
    assert await answer(verify(stub, mfa, totp.now())) == (
        grpc.StatusCode.UNAUTHENTICATED,
        LOCKED_MESSAGE,
    )


@pytest.mark.parametrize(
    "limits",
    [{"auth_totp_attempts_per_account": 2, "auth_lockout_base_seconds": 1.0}],
)
async def test_the_lock_backs_off_and_a_right_code_resets_it(stub, database_url) -> None:
    email = "backoff@loyalnest.example"
    user_id, totp = await enrolled_admin(stub, email)
    mfa = (await login(stub, email)).mfa_token
    guesses = iter(wrong_codes(totp, 20))

    async def lock() -> None:
        for expected in (WRONG_CODE, WRONG_CODE, LOCKED_MESSAGE):
            assert (await answer(verify(stub, mfa, next(guesses))))[1] == expected

    await lock()  # the first lock: 1 s
    await asyncio.sleep(1.2)
    await lock()  # the second in a row: 2 s
    await asyncio.sleep(1.2)
    assert (await answer(verify(stub, mfa, next(guesses))))[1] == LOCKED_MESSAGE
    await asyncio.sleep(1.0)
    assert (await answer(verify(stub, mfa, next(guesses))))[1] == WRONG_CODE
    rows = await query(
        database_url,
        "SELECT lockouts FROM auth.sign_in_throttles"
        " WHERE factor = 'totp' AND scope = 'account' AND subject = %s",
        user_id,
    )
    assert rows == [(2,)]
    # The right code signs in and starts the count and the backoff over.
    assert (await verify(stub, mfa, totp.now())).tokens.access_token
    rows = await query(
        database_url,
        "SELECT attempts, lockouts FROM auth.sign_in_throttles"
        " WHERE factor = 'totp' AND scope = 'account' AND subject = %s",
        user_id,
    )
    assert rows == [(0, 0)]


async def test_a_used_code_stays_used(stub) -> None:
    email = "single-use@loyalnest.example"
    _, totp = await enrolled_admin(stub, email)
    code = totp.now()
    first = (await login(stub, email)).mfa_token
    assert (await verify(stub, first, code)).tokens.access_token
    second = (await login(stub, email)).mfa_token
    assert await answer(verify(stub, second, code)) == (grpc.StatusCode.UNAUTHENTICATED, WRONG_CODE)


async def test_a_code_of_other_digits_is_invalid_input(stub) -> None:
    email = "digits@loyalnest.example"
    await enrolled_admin(stub, email)
    mfa = (await login(stub, email)).mfa_token
    for code in ("١٢٣٤٥٦", "\uff11\uff12\uff13\uff14\uff15\uff16", "12345", "12345a", "1234567"):
        error = await error_of(verify(stub, mfa, code))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, code
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        assert status is not None
        bad_request = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(bad_request)
        assert [v.field for v in bad_request.field_violations] == ["code"]


# ---- finding 1: the password's lockout, per account and per source -----------------------


@pytest.mark.parametrize(
    "limits",
    [{"auth_password_attempts_per_account": 3, "auth_password_attempts_per_source": 1000}],
)
async def test_unknown_and_locked_accounts_answer_alike(stub) -> None:
    await create_admin(stub, "known@loyalnest.example", [])

    async def attempt(email: str, password: str = "not the password") -> tuple[Any, str]:
        return await answer(stub.AdminLogin(pb.AdminLoginRequest(email=email, password=password)))

    unauthenticated = grpc.StatusCode.UNAUTHENTICATED
    for email in ("known@loyalnest.example", "nobody@loyalnest.example"):
        assert [await attempt(email) for _ in range(3)] == [(unauthenticated, WRONG_PASSWORD)] * 3
        # Locked, known or not: one answer, and it comes before any lookup or password hash.
        started = time.perf_counter()
        assert await attempt(email) == (unauthenticated, LOCKED_MESSAGE)
        assert time.perf_counter() - started < 0.5
    # The right password too, while the lock lasts.
    assert await attempt("known@loyalnest.example", PASSWORD) == (unauthenticated, LOCKED_MESSAGE)


@pytest.mark.parametrize(
    "limits",
    [{"auth_password_attempts_per_account": 1000, "auth_password_attempts_per_source": 4}],
)
async def test_one_source_guessing_many_accounts_is_locked(stub) -> None:
    await create_admin(stub, "victim@loyalnest.example", [])
    spray = "203.0.113.7"
    for n in range(4):
        request = pb.AdminLoginRequest(email=f"user{n}@loyalnest.example", password="Summer2024!!")
        assert (await answer(stub.AdminLogin(request, metadata=source(spray))))[1] == WRONG_PASSWORD
    # The source is locked for every account, even with a right password ...
    right = pb.AdminLoginRequest(email="victim@loyalnest.example", password=PASSWORD)
    assert (await answer(stub.AdminLogin(right, metadata=source(spray))))[1] == LOCKED_MESSAGE
    # ... whatever it claims to be in front of the gateway's entry ...
    forged = (("x-forwarded-for", f"198.51.100.1, {spray}"),)
    assert (await answer(stub.AdminLogin(right, metadata=forged)))[1] == LOCKED_MESSAGE
    # ... while the admin signs in from elsewhere.
    assert (await stub.AdminLogin(right, metadata=source("198.51.100.9"))).mfa_token


@pytest.mark.parametrize(
    "limits",
    [{"auth_totp_attempts_per_account": 1000, "auth_totp_attempts_per_source": 3}],
)
async def test_wrong_codes_lock_their_source_too(stub) -> None:
    email = "codes-by-source@loyalnest.example"
    _, totp = await enrolled_admin(stub, email)
    mfa = (await login(stub, email)).mfa_token
    guesses = iter(wrong_codes(totp, 10))
    attacker = "203.0.113.50"
    messages = [(await answer(verify(stub, mfa, next(guesses), attacker)))[1] for _ in range(4)]
    assert messages == [WRONG_CODE] * 3 + [LOCKED_MESSAGE]
    assert (await verify(stub, mfa, totp.now(), "198.51.100.9")).tokens.access_token


# ---- finding 1: MFA enrolment needs more than the password -------------------------------


async def test_enrolment_needs_the_admins_enrolment_token(stub, database_url) -> None:
    created = await create_admin(stub, "new-admin@loyalnest.example", ["auth:impersonate"])
    other = await create_admin(stub, "other-admin@loyalnest.example", [])
    assert len(created.enrollment_token) >= 32
    assert created.enrollment_token_expire_time.seconds > time.time() + 24 * 3600
    mfa = (await login(stub, "new-admin@loyalnest.example")).mfa_token

    # The password alone (the MFA token) enrols nobody.
    missing = await error_of(stub.EnrollMfa(pb.EnrollMfaRequest(mfa_token=mfa)))
    assert missing.code() == grpc.StatusCode.INVALID_ARGUMENT
    for token in ("made-up", other.enrollment_token):
        wrong = stub.EnrollMfa(pb.EnrollMfaRequest(mfa_token=mfa, enrollment_token=token))
        assert (await error_of(wrong)).code() == grpc.StatusCode.PERMISSION_DENIED
    secrets = await query(
        database_url,
        "SELECT totp_secret FROM auth.admin_users WHERE user_id = %s",
        created.user.user_id,
    )
    assert secrets == [(None,)]

    request = pb.EnrollMfaRequest(mfa_token=mfa, enrollment_token=created.enrollment_token)
    enrolled = await stub.EnrollMfa(request)
    # Single use: whoever got hold of the token later cannot replace the secret.
    assert (await error_of(stub.EnrollMfa(request))).code() == grpc.StatusCode.PERMISSION_DENIED
    code = pyotp.TOTP(enrolled.secret).now()
    assert (await stub.VerifyMfa(pb.VerifyMfaRequest(mfa_token=mfa, code=code))).user.mfa_enabled
    # An expired token is refused like an unknown one.
    await query(
        database_url,
        "UPDATE auth.mfa_enrollment_tokens SET expires_at = now() - interval '1 second'"
        " WHERE user_id = %s RETURNING 1",
        other.user.user_id,
    )
    other_mfa = (await login(stub, "other-admin@loyalnest.example")).mfa_token
    expired = pb.EnrollMfaRequest(mfa_token=other_mfa, enrollment_token=other.enrollment_token)
    assert (await error_of(stub.EnrollMfa(expired))).code() == grpc.StatusCode.PERMISSION_DENIED


# ---- finding 8: tokens, refresh, shop domains, Login ---------------------------------------


async def test_a_bad_token_gets_a_fixed_message(stub) -> None:
    header = {"alg": "EdDSA", "typ": "JWT", "kid": KEYSET.active_kid}
    known_kid = base64.urlsafe_b64encode(json.dumps(header).encode()).decode().rstrip("=")
    # PyJWT's own texts would be "Not enough segments", "Invalid header padding", ...
    for bad in ("abc", "a.b.c", f"{known_kid}.e30.AAAA", f"{known_kid}.!!.AAAA"):
        error = await error_of(stub.ValidateToken(pb.ValidateTokenRequest(token=bad)))
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, "invalid token")


async def test_refresh_ends_the_session_of_an_uninstalled_merchant(
    stub, shopify, database_url
) -> None:
    tokens = (await install(stub, shopify)).tokens
    # Uninstalled (however it was recorded): the next refresh ends the session.
    await query(
        database_url,
        "UPDATE auth.merchants SET status = 'uninstalled' WHERE shop_domain = %s RETURNING 1",
        SHOP,
    )
    refresh = stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=tokens.refresh_token))
    assert (await error_of(refresh)).code() == grpc.StatusCode.UNAUTHENTICATED
    rows = await query(
        database_url,
        "SELECT revoked_reason FROM auth.sessions WHERE session_id = %s",
        tokens.session_id,
    )
    assert rows == [("account no longer valid",)]
    validate = stub.ValidateToken(pb.ValidateTokenRequest(token=tokens.access_token))
    assert (await error_of(validate)).code() == grpc.StatusCode.UNAUTHENTICATED
    # Reinstalled: a new sign-in works and refreshes.
    again = (await install(stub, shopify)).tokens
    assert await stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=again.refresh_token))


async def test_refresh_ends_the_session_of_a_deleted_admin(stub, database_url) -> None:
    user_id, totp = await enrolled_admin(stub, "leaver@loyalnest.example")
    mfa = (await login(stub, "leaver@loyalnest.example")).mfa_token
    session = (await verify(stub, mfa, totp.now())).tokens
    assert await stub.ValidateToken(pb.ValidateTokenRequest(token=session.access_token))
    await query(
        database_url, "DELETE FROM auth.admin_users WHERE user_id = %s RETURNING 1", user_id
    )
    refresh = stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=session.refresh_token))
    assert (await error_of(refresh)).code() == grpc.StatusCode.UNAUTHENTICATED
    validate = stub.ValidateToken(pb.ValidateTokenRequest(token=session.access_token))
    assert (await error_of(validate)).code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_shop_with_a_trailing_newline_is_refused(stub, database_url) -> None:
    for shop in (f"{SHOP}\n", f"{SHOP}\nevil.com", f" {SHOP}"):
        error = await error_of(stub.Login(pb.LoginRequest(shop=shop)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, repr(shop)
    assert await query(database_url, "SELECT 1 FROM auth.oauth_states") == []


@pytest.mark.parametrize("limits", [{"auth_login_per_source": 5, "auth_login_per_shop": 3}])
async def test_login_is_rate_limited_per_source_and_per_shop(stub, database_url) -> None:
    def retry_delay(error: grpc.aio.AioRpcError) -> float:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        assert status is not None
        info = error_details_pb2.RetryInfo()
        assert any(detail.Unpack(info) for detail in status.details)
        return float(info.retry_delay.ToTimedelta().total_seconds())

    # One shop, asked for from many addresses.
    for n in range(3):
        await stub.Login(pb.LoginRequest(shop=SHOP), metadata=source(f"198.51.100.{n}"))
    error = await error_of(stub.Login(pb.LoginRequest(shop=SHOP), metadata=source("198.51.100.9")))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0 < retry_delay(error) <= 60
    # One address asking for many shops.
    for n in range(5):
        request = pb.LoginRequest(shop=f"shop-{n}.myshopify.com")
        await stub.Login(request, metadata=source("203.0.113.9"))
    request = pb.LoginRequest(shop="shop-x.myshopify.com")
    error = await error_of(stub.Login(request, metadata=source("203.0.113.9")))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_delay(error) > 0
    # Only the served calls stored a state.
    assert len(await query(database_url, "SELECT 1 FROM auth.oauth_states")) == 3 + 5


async def test_login_purges_expired_states(stub, database_url) -> None:
    await query(
        database_url,
        "INSERT INTO auth.oauth_states (state_hash, shop_domain, expires_at)"
        " SELECT decode(md5(n::text), 'hex'), 'old.myshopify.com', now() - interval '1 minute'"
        " FROM generate_series(1, 50) n RETURNING 1",
    )
    await stub.Login(pb.LoginRequest(shop=SHOP))
    rows = await query(database_url, "SELECT shop_domain FROM auth.oauth_states")
    assert rows == [(SHOP,)]

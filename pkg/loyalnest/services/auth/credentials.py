"""Secrets the Auth service hands out or checks: passwords, TOTP codes, opaque tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time

import pyotp

# scrypt (RFC 7914) at OWASP's recommended cost: ~50 ms and 16 MiB per hash.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256

TOTP_PERIOD_SECONDS = 30
# Codes of the previous and the next period are accepted too (clock drift).
TOTP_DRIFT_STEPS = 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=_SCRYPT_MAXMEM
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


# Compared against when the email is unknown, so both answers take the same time.
DUMMY_PASSWORD_HASH = hash_password(secrets.token_urlsafe(16))


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret, interval=TOTP_PERIOD_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )


# ASCII digits only: str.isdigit() also accepts "١٢٣٤٥٦" (Arabic-Indic) or "①", which no
# authenticator app shows and which hmac.compare_digest refuses with a TypeError.
_TOTP_CODE_RE = re.compile(r"[0-9]{6}", re.ASCII)


def totp_code(code: str) -> str | None:
    """The code as an authenticator app shows it (6 ASCII digits; blanks and spaces
    inside, as in "123 456", are dropped), or None when it cannot be one."""
    code = code.strip().replace(" ", "")
    return code if _TOTP_CODE_RE.fullmatch(code) else None


def accepted_totp_step(
    secret: str, code: str, *, last_step: int | None, now: float | None = None
) -> int | None:
    """The time step `code` belongs to, if it is valid now and newer than `last_step` (so
    each code works once); None otherwise."""
    checked = totp_code(code)
    if checked is None:
        return None
    code = checked
    totp = pyotp.TOTP(secret, interval=TOTP_PERIOD_SECONDS)
    current = int((time.time() if now is None else now) // TOTP_PERIOD_SECONDS)
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_opaque_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    """How opaque tokens (refresh tokens, OAuth states) are stored and looked up: SHA-256 is
    enough for 256-bit random values, which no dictionary can guess."""
    return hashlib.sha256(token.encode()).digest()

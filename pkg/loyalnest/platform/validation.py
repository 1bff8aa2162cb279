"""Request validation that reports every bad field at once as BadRequest violations.

Envoy drops unknown JSON fields and proto3 has no required fields, so each service checks
its own input; `Validator` collects violations and raises a single InvalidArgument.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Set as AbstractSet
from types import TracebackType

from loyalnest.platform.errors import FieldViolation, InvalidArgument

IDENTIFIER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_TEXT_LENGTH = 500
MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a forward path
# Deliberately loose: one @, a dot in the domain, no spaces. Deliverability is proven by
# sending mail, not by a regular expression.
EMAIL_RULE = f"must be an email address of at most {MAX_EMAIL_LENGTH} characters"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def normalize_email(email: str) -> str:
    # Mailbox local parts are case-sensitive in theory, never in practice (Shopify lowercases
    # them too); one spelling per address is what makes a blind index find it.
    return email.strip().lower()


def is_valid_email(email: str) -> bool:
    # isprintable: no NUL or other control characters (PostgreSQL text refuses NUL).
    return len(email) <= MAX_EMAIL_LENGTH and email.isprintable() and bool(EMAIL_RE.match(email))


class Validator:
    """Collects field violations; raises InvalidArgument on exit if any were found.

    with Validator() as v:
        v.identifier("customer_id", request.customer_id)
        v.check(request.points > 0, "points", "must be positive")
    """

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def __enter__(self) -> Validator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.raise_if_invalid()

    def raise_if_invalid(self) -> None:
        if self.violations:
            summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
            raise InvalidArgument(f"invalid request: {summary}", self.violations)

    def check(self, condition: bool, field: str, description: str) -> bool:
        if not condition:
            self.violations.append(FieldViolation(field, description))
        return condition

    def identifier(self, field: str, value: str) -> bool:
        if not self.check(bool(value), field, "is required"):
            return False
        return self.check(
            bool(IDENTIFIER_RE.match(value)),
            field,
            "must be 1-128 characters of letters, digits and _ . : @ -, "
            "starting with a letter or digit",
        )

    def uuid(self, field: str, value: str) -> bool:
        """A required UUID id: anything else is rejected before it reaches a store."""
        if not self.check(bool(value), field, "is required"):
            return False
        return self.check(is_uuid(value), field, "must be a UUID")

    def idempotency_key(self, field: str, value: str) -> bool:
        if not self.check(bool(value.strip()), field, "is required for this mutating call"):
            return False
        # Printable only: a NUL reached PostgreSQL (whose text refuses it) as INTERNAL.
        return self.check(
            len(value) <= MAX_IDEMPOTENCY_KEY_LENGTH and value.isprintable(),
            field,
            f"must be at most {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters",
        )

    def update_mask(
        self, field: str, paths: AbstractSet[str], changeable: AbstractSet[str]
    ) -> bool:
        """An update's field mask: at least one path, each a field the update may change."""
        if not self.check(bool(paths), field, "must name the fields to change"):
            return False
        unknown = sorted(paths - changeable)
        return self.check(
            not unknown,
            field,
            f"cannot change {', '.join(unknown)}; changeable: {', '.join(sorted(changeable))}",
        )

    def text(self, field: str, value: str, *, required: bool = False) -> bool:
        if required and not self.check(bool(value.strip()), field, "is required"):
            return False
        return self.check(
            len(value) <= MAX_TEXT_LENGTH and "\x00" not in value,
            field,
            f"must be at most {MAX_TEXT_LENGTH} characters, without NUL",
        )

"""Users: what an account is, independent of gRPC and PostgreSQL."""

from __future__ import annotations

import calendar
import enum
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from loyalnest.platform.errors import AlreadyExists, NotFound

# Fixed forever: ids derived from it (the owner account) must not change between releases.
_OWNER_NAMESPACE = uuid.UUID("6f1c2f53-2b0c-4a53-9f55-5c3d8e3b7a10")


class UserKind(enum.StrEnum):
    CUSTOMER = "customer"
    STAFF = "staff"


@dataclass(frozen=True)
class User:
    user_id: str
    merchant_id: str
    seq: int
    kind: UserKind
    # Plaintext, only in memory: the store encrypts and decrypts at its boundary.
    email: str | None
    role_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class UserChanges:
    """The fields of an update, each None when not to be changed."""

    kind: UserKind | None = None
    # "" removes the email.
    email: str | None = None

    @property
    def empty(self) -> bool:
        return self.kind is None and self.email is None


class UserNotFound(NotFound):
    def __init__(self, user_id: str) -> None:
        super().__init__("user", user_id)


class EmailTaken(AlreadyExists):
    def __init__(self) -> None:
        # The email itself stays out of the message: errors end up in logs.
        super().__init__("the merchant already has a user with this email")


def owner_user_id(merchant_id: str) -> str:
    """The id of the account created for a merchant's owner at install (merchant.created).

    Derived, not random, so a replay of the event long after its processed-events record
    was purged still finds the same account instead of creating a second one.
    """
    return str(uuid.uuid5(_OWNER_NAMESPACE, f"owner/{merchant_id}"))


# --- customers' birthdays (the BIRTHDAY earning rule) ----------------------------------------

MIN_BIRTH_YEAR = 1900
# A year with 29 February: checks a day given without its year.
_LEAP_YEAR = 2000


@dataclass(frozen=True)
class Birthday:
    month: int
    day: int
    year: int | None = None

    def problems(self, today: date) -> list[tuple[str, str]]:
        """(field, description) of each thing wrong with it as a birthday given on `today`."""
        if self.year is not None and not MIN_BIRTH_YEAR <= self.year <= today.year:
            return [("year", f"must be 0 (not given) or {MIN_BIRTH_YEAR} to {today.year}")]
        if not 1 <= self.month <= 12:
            return [("month", "must be 1 to 12")]
        year = self.year if self.year is not None else _LEAP_YEAR
        if not 1 <= self.day <= calendar.monthrange(year, self.month)[1]:
            return [("day", "must be a day of the month (of the year, when given)")]
        if self.year is not None and date(self.year, self.month, self.day) > today:
            return [("day", "must not be in the future")]
        return []

    @property
    def text(self) -> str:
        """As sealed: ISO 8601, "--MM-DD" without a year."""
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}" if self.year else self.day_key

    @property
    def day_key(self) -> str:
        """The day celebrated ("--MM-DD"), what the blind index covers."""
        return f"--{self.month:02d}-{self.day:02d}"

    @classmethod
    def parse(cls, text: str) -> Birthday:
        if text.startswith("--"):
            return cls(int(text[2:4]), int(text[5:7]))
        return cls(int(text[5:7]), int(text[8:10]), int(text[0:4]))


def celebrated_day_keys(day: date) -> list[str]:
    """The birthdays celebrated on `day`: its own, and 29 February's on 28 February of a
    year without one."""
    keys = [Birthday(day.month, day.day).day_key]
    if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
        keys.append(Birthday(2, 29).day_key)
    return keys


@dataclass(frozen=True)
class CustomerBirthday:
    customer_id: str
    birthday: Birthday
    consent_at: datetime


class BirthdayNotFound(NotFound):
    def __init__(self, customer_id: str) -> None:
        super().__init__("birthday", customer_id)

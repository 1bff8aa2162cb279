"""gRPC surface of the Users service: validation and tenancy; mapping is in wire.py."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TypeVar

from loyalnest.gen.users.v1 import users_pb2, users_pb2_grpc
from loyalnest.platform import pagination, tenancy
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.idempotency import IdempotencyKey
from loyalnest.platform.pii import PiiVault
from loyalnest.platform.validation import EMAIL_RULE, Validator, is_valid_email, normalize_email
from loyalnest.services.users.domain import Birthday, UserChanges, celebrated_day_keys
from loyalnest.services.users.store.postgres import UserStore
from loyalnest.services.users.wire import KIND_RULE, KINDS_FROM_PROTO, birthday_proto, user_proto

# The requests whose email the idempotency fingerprint must not contain.
_WithEmail = TypeVar("_WithEmail", users_pb2.CreateUserRequest, users_pb2.UpdateUserRequest)
UPDATABLE_FIELDS = frozenset({"email", "kind"})


class UsersServicer(users_pb2_grpc.UsersServiceServicer):
    def __init__(self, store: UserStore, vault: PiiVault) -> None:
        self._store = store
        self._vault = vault

    def _idempotency_key(
        self, method: str, request: _WithEmail, merchant_id: str
    ) -> IdempotencyKey:
        # The email stays out of the fingerprint (see PiiVault.idempotency_key).
        return self._vault.idempotency_key(
            method,
            request,
            merchant_id,
            lambda fingerprinted: [(fingerprinted.user, "email", "")],
            normalize=normalize_email,
        )

    async def CreateUser(
        self, request: users_pb2.CreateUserRequest, context: Context
    ) -> users_pb2.CreateUserResponse:
        merchant_id = tenancy.merchant_id()
        email = normalize_email(request.user.email)
        kind = KINDS_FROM_PROTO.get(request.user.kind)
        with Validator() as v:
            if v.check(request.HasField("user"), "user", "is required"):
                v.check(not email or is_valid_email(email), "user.email", EMAIL_RULE)
                v.check(kind is not None, "user.kind", KIND_RULE)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        assert kind is not None  # the validator rejected the request otherwise
        user = await self._store.create(
            merchant_id,
            kind=kind,
            email=email or None,
            key=self._idempotency_key("CreateUser", request, merchant_id),
        )
        return users_pb2.CreateUserResponse(user=user_proto(user))

    async def UpdateUser(
        self, request: users_pb2.UpdateUserRequest, context: Context
    ) -> users_pb2.UpdateUserResponse:
        merchant_id = tenancy.merchant_id()
        paths = set(request.update_mask.paths)
        email = normalize_email(request.user.email)
        kind = KINDS_FROM_PROTO.get(request.user.kind)
        with Validator() as v:
            if v.check(request.HasField("user"), "user", "is required"):
                v.uuid("user.user_id", request.user.user_id)
            v.update_mask("update_mask", paths, UPDATABLE_FIELDS)
            if "email" in paths:
                v.check(not email or is_valid_email(email), "user.email", EMAIL_RULE)
            if "kind" in paths:
                v.check(kind is not None, "user.kind", KIND_RULE)
            v.idempotency_key("idempotency_key", request.idempotency_key)
        changes = UserChanges(
            kind=kind if "kind" in paths else None,
            email=email if "email" in paths else None,
        )
        user = await self._store.update(
            merchant_id,
            request.user.user_id,
            changes,
            key=self._idempotency_key("UpdateUser", request, merchant_id),
        )
        return users_pb2.UpdateUserResponse(user=user_proto(user))

    async def GetUser(
        self, request: users_pb2.GetUserRequest, context: Context
    ) -> users_pb2.GetUserResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.uuid("user_id", request.user_id)
        user = await self._store.get(merchant_id, request.user_id)
        return users_pb2.GetUserResponse(user=user_proto(user))

    async def LookupUser(
        self, request: users_pb2.LookupUserRequest, context: Context
    ) -> users_pb2.LookupUserResponse:
        merchant_id = tenancy.merchant_id()
        email = normalize_email(request.email)
        with Validator() as v:
            if v.check(bool(email), "email", "is required"):
                v.check(is_valid_email(email), "email", EMAIL_RULE)
        user = await self._store.lookup(merchant_id, email)
        return users_pb2.LookupUserResponse(user=user_proto(user))

    async def ListUsers(
        self, request: users_pb2.ListUsersRequest, context: Context
    ) -> users_pb2.ListUsersResponse:
        merchant_id = tenancy.merchant_id()
        page, token = await pagination.keyset_page(
            page_size_requested=request.page_size,
            page_token=request.page_token,
            scope=f"users/{merchant_id}",
            fetch=lambda limit, after: self._store.list(merchant_id, limit=limit, after_seq=after),
            position=lambda user: user.seq,
        )
        return users_pb2.ListUsersResponse(
            users=[user_proto(u) for u in page], next_page_token=token
        )

    # --- customers' birthdays ---------------------------------------------------------------

    async def SetCustomerBirthday(
        self, request: users_pb2.SetCustomerBirthdayRequest, context: Context
    ) -> users_pb2.SetCustomerBirthdayResponse:
        merchant_id = tenancy.merchant_id()
        now = datetime.now(UTC)
        given = request.birthday
        birthday = Birthday(given.month, given.day, given.year or None)
        with Validator() as v:
            v.identifier("customer_id", request.customer_id)
            if request.consent:
                if v.check(request.HasField("birthday"), "birthday", "is required"):
                    for field, description in birthday.problems(now.date()):
                        v.check(False, f"birthday.{field}", description)
            else:
                v.check(
                    not request.HasField("birthday"),
                    "consent",
                    "must be true to keep a birthday (false withdraws it: send no birthday)",
                )
            v.idempotency_key("idempotency_key", request.idempotency_key)
        kept = await self._store.birthdays.set(
            merchant_id,
            request.customer_id,
            birthday if request.consent else None,
            now=now,
            key=self._store.birthdays.idempotency_key(request, merchant_id),
        )
        return users_pb2.SetCustomerBirthdayResponse(
            birthday=birthday_proto(kept) if kept is not None else None
        )

    async def GetCustomerBirthday(
        self, request: users_pb2.GetCustomerBirthdayRequest, context: Context
    ) -> users_pb2.GetCustomerBirthdayResponse:
        merchant_id = tenancy.merchant_id()
        with Validator() as v:
            v.identifier("customer_id", request.customer_id)
        found = await self._store.birthdays.get(merchant_id, request.customer_id)
        return users_pb2.GetCustomerBirthdayResponse(birthday=birthday_proto(found))

    async def ListBirthdays(
        self, request: users_pb2.ListBirthdaysRequest, context: Context
    ) -> users_pb2.ListBirthdaysResponse:
        merchant_id = tenancy.merchant_id()
        day: date | None = None
        with Validator() as v:
            if v.check(1900 <= request.year <= 9999, "year", "must be 1900 to 9999"):
                try:
                    day = date(request.year, request.month, request.day)
                except ValueError:
                    v.check(False, "day", "month and day must be a date of the year")
        assert day is not None  # the validator rejected the request otherwise
        keys = celebrated_day_keys(day)
        page, token = await pagination.keyset_page(
            page_size_requested=request.page_size,
            page_token=request.page_token,
            scope=f"birthdays/{merchant_id}/{day.isoformat()}",
            fetch=lambda limit, after: self._store.birthdays.celebrating(
                merchant_id, keys, limit=limit, after_seq=after
            ),
            position=lambda row: row[0],
        )
        return users_pb2.ListBirthdaysResponse(
            customer_ids=[customer_id for _, customer_id in page], next_page_token=token
        )

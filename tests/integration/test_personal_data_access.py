"""Who may call the personal-data contract (loyalnest.platform.v1.PersonalDataService), on a
real Users service: only a service token carrying "users:personal-data" for Users' audience,
bound to a merchant, and then only for that merchant's data. The erasure proof across the mesh:
test_gdpr_erasure.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from loyalnest.gen.platform.v1 import personal_data_pb2 as pb
from loyalnest.gen.platform.v1 import personal_data_pb2_grpc
from loyalnest.gen.users.v1 import users_pb2, users_pb2_grpc
from loyalnest.platform.auth.tokens import SERVICE
from loyalnest.platform.server import RunningService
from loyalnest.services.users.service import SPEC
from tests.auth import ISSUER, merchant_metadata
from tests.integration.conftest import serving
from tests.integration.test_users_service import users_settings

pytestmark = pytest.mark.integration

Stub = personal_data_pb2_grpc.PersonalDataServiceStub


def service_token(merchant_id: str | None, permissions: tuple[str, ...], audience: str) -> str:
    return ISSUER.mint(
        subject="service:admin_core",
        merchant_id=merchant_id,
        permissions=permissions,
        token_type=SERVICE,
        audience=[f"loyalnest/{audience}"],
    )


def as_service(
    merchant_id: str | None,
    permissions: tuple[str, ...] = ("users:personal-data",),
    audience: str = "users",
) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {service_token(merchant_id, permissions, audience)}"),)


@pytest.fixture
async def users(database_url: str) -> AsyncIterator[RunningService]:
    async with serving(SPEC, users_settings(database_url, None)) as service:
        yield service


async def test_only_a_service_token_for_this_service_and_merchant(users: RunningService) -> None:
    merchant_a, merchant_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    async with grpc.aio.insecure_channel(users.address) as channel:
        accounts = users_pb2_grpc.UsersServiceStub(channel)
        created = await accounts.CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(email="b@example.org", kind=users_pb2.USER_KIND_CUSTOMER),
                idempotency_key="b-user",
            ),
            metadata=merchant_metadata(merchant_b, ("users:write",)),
        )
        contract = Stub(channel)
        ref = pb.CustomerRef(shopify_customer_id="1", emails=["b@example.org"])
        export = pb.ExportCustomerRequest(customer=ref)

        async def refused(metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await contract.ExportCustomer(export, metadata=metadata)
            return error.value.code()

        # A merchant's own token, whatever it holds: internal RPCs are for services.
        user_md = merchant_metadata(merchant_b, ("users:*", "admin:full"))
        assert await refused(user_md) == grpc.StatusCode.PERMISSION_DENIED
        # A service token for another service's data (audience and permission).
        points_md = as_service(merchant_b, ("points:personal-data",), audience="points")
        assert await refused(points_md) == grpc.StatusCode.UNAUTHENTICATED
        # For Users, but not carrying the contract's permission.
        assert await refused(as_service(merchant_b, ("users:read",))) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        # Bound to no merchant.
        assert await refused(as_service(None)) == grpc.StatusCode.PERMISSION_DENIED
        # No customer named.
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await contract.ExportCustomer(
                pb.ExportCustomerRequest(), metadata=as_service(merchant_b)
            )
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # An erasure key that is not 32 bytes (AdminCore's are random, one per request).
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await contract.EraseCustomer(
                pb.EraseCustomerRequest(customer=ref, erasure_key=b"short"),
                metadata=as_service(merchant_b),
            )
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "erasure key" in (invalid.value.details() or "")

        # Merchant A's token finds nothing of B's, and erases nothing of it.
        found = await contract.ExportCustomer(export, metadata=as_service(merchant_a))
        assert not found.data.fields and not found.found.user_ids
        erased = await contract.EraseCustomer(
            pb.EraseCustomerRequest(customer=ref), metadata=as_service(merchant_a)
        )
        assert erased.records == 0
        # B's token: the account, then its erasure (once).
        found = await contract.ExportCustomer(export, metadata=as_service(merchant_b))
        assert list(found.found.user_ids) == [created.user.user_id]
        erase = pb.EraseCustomerRequest(customer=ref)
        assert (await contract.EraseCustomer(erase, metadata=as_service(merchant_b))).records == 1
        assert (await contract.EraseCustomer(erase, metadata=as_service(merchant_b))).records == 0
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await accounts.GetUser(
                users_pb2.GetUserRequest(user_id=created.user.user_id),
                metadata=merchant_metadata(merchant_b, ("users:read",)),
            )
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND

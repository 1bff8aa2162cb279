"""Wires the Products service into the platform runtime."""

from __future__ import annotations

from pathlib import Path

from loyalnest.gen.products.v1 import products_pb2, products_pb2_grpc
from loyalnest.platform import audit
from loyalnest.platform.calls import Calls
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.services.products import events
from loyalnest.services.products.servicer import ProductsServicer
from loyalnest.services.products.store import ItemStore

NAME = "products"
# The audit trigger function must exist before products_0001 attaches it.
DATABASE = DatabaseSpec(
    schema=NAME, migration_dirs=(audit.MIGRATIONS, Path(__file__).parent / "migrations")
)
SERVICE_NAME = products_pb2.DESCRIPTOR.services_by_name["ProductsService"].full_name
# The services it calls: none yet. To call one, name it with its generated stub, e.g.
#     CALLS = Calls(users=users_pb2_grpc.UsersServiceStub)
# and take `downstream.stub(users_pb2_grpc.UsersServiceStub)` in build(): inside an RPC the
# caller's token goes along. `make chart` derives the chart's call targets and NetworkPolicy
# from it (add the callee to its BEYOND_SEED entry in deploy/callgraph.py if the seed does
# not list this service). Calls on its own behalf (a consumer, a job) need a service token:
# declare `auth=auth_pb2_grpc.AuthServiceStub` too, give it a grant in SERVICE_GRANTS
# (platform/auth/service_identity.py) and LOYALNEST_SERVICE_CREDENTIAL in its chart secretEnv.
CALLS = Calls()


class ProductsSettings(ServiceSettings):
    """The Products service's settings.

    The platform's LOYALNEST_* settings, and its own as fields here (each read from
    LOYALNEST_<FIELD>).
    """


async def build(settings: ProductsSettings) -> ServiceComponents:
    database = Database(settings, DATABASE)
    await database.open()
    store = ItemStore(database)
    downstream = CALLS.connect(settings, caller=NAME)  # one channel per declared callee
    return postgres_service(
        settings,
        database,
        service=NAME,
        group=events.CONSUMER_GROUP,
        # It consumes no events yet: a consumers.py with handlers(store) when it does.
        handlers={},
        registrations=[
            Registration(
                SERVICE_NAME,
                products_pb2_grpc.add_ProductsServiceServicer_to_server,
                ProductsServicer(store),
            )
        ],
        cleanup=[downstream.close],
    )


SPEC = ServiceSpec(
    name=NAME,
    settings_type=ProductsSettings,
    build=build,
    database=DATABASE,
    calls=CALLS,
)

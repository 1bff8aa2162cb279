"""Wires the AdminCore service into the platform runtime.

GDPR requests (domain.py, gdpr.py): filed from Shopify's GDPR webhooks (consumers.py) and by
admins (HandleGDPRRequest), carried out by calling every personal-data holder
(loyalnest.platform.personal_data.HOLDERS) with AdminCore's own service token: it needs
LOYALNEST_SERVICE_CREDENTIAL. Keys (LOYALNEST_*): ADMIN_CORE_ENCRYPTION_KEY and
ADMIN_CORE_BLIND_INDEX_KEY (base64 of 32 random bytes each) seal export packages and the
identifiers a redaction gathers. The mesh's audit log (audit_log.py) is fed by
audit_log.recorded; LOYALNEST_REDIS_URL feeds its live tails.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr

from loyalnest.gen.admin_core.v1 import admin_core_pb2, admin_core_pb2_grpc
from loyalnest.gen.auth.v1 import auth_pb2_grpc
from loyalnest.gen.platform.v1 import customer_pseudonyms_pb2_grpc, personal_data_pb2_grpc
from loyalnest.platform import audit, personal_data
from loyalnest.platform.calls import Calls
from loyalnest.platform.config import ServiceSettings
from loyalnest.platform.event_loops import postgres_service
from loyalnest.platform.events import pseudonyms
from loyalnest.platform.observability import get_logger
from loyalnest.platform.pii import PiiVault
from loyalnest.platform.postgres import Database, DatabaseSpec
from loyalnest.platform.server import Registration, ServiceComponents, ServiceSpec
from loyalnest.services.admin_core import consumers, events
from loyalnest.services.admin_core.audit_log import MeshAuditLog, stream_client
from loyalnest.services.admin_core.gdpr import GdprWorker
from loyalnest.services.admin_core.servicer import AdminCoreServicer
from loyalnest.services.admin_core.store import GdprStore, MerchantDirectory

NAME = "admin_core"
DATABASE = DatabaseSpec(
    schema=NAME, migration_dirs=(audit.MIGRATIONS, Path(__file__).parent / "migrations")
)
SERVICE_NAME = admin_core_pb2.DESCRIPTOR.services_by_name["AdminCoreService"].full_name
log = get_logger(__name__)
# Auth for its service tokens; every personal-data holder, through the platform contract (one
# name in personal_data.HOLDERS adds a service here, to its grant and to the chart's edges).
# Auth is a holder too: declared with its own stub, its channel serves both services.
CALLS = Calls(
    auth=auth_pb2_grpc.AuthServiceStub,
    **dict.fromkeys(
        set(personal_data.HOLDERS) - {"auth"}, personal_data_pb2_grpc.PersonalDataServiceStub
    ),
)


class AdminCoreSettings(ServiceSettings):
    # base64 of 32 random bytes each; required outside a developer's machine (platform/pii.py).
    admin_core_encryption_key: SecretStr | None = None
    admin_core_encryption_previous_keys: list[SecretStr] = []
    admin_core_blind_index_key: SecretStr | None = None
    # How long a data request's export package can be downloaded before it is deleted.
    admin_core_export_ttl_seconds: float = Field(7 * 24 * 3600, gt=0)
    # How often the GDPR worker looks for due requests when it found none.
    admin_core_gdpr_interval_seconds: float = Field(2.0, gt=0)


def vault(settings: AdminCoreSettings) -> PiiVault:
    return PiiVault.from_keys(
        settings,
        service=NAME,
        namespace="admin_core.gdpr",
        encryption_key=settings.admin_core_encryption_key,
        previous_keys=settings.admin_core_encryption_previous_keys,
        blind_index_key=settings.admin_core_blind_index_key,
    )


async def build(settings: AdminCoreSettings) -> ServiceComponents:
    sealing = vault(settings)
    if settings.service_credential is None:
        log.warning(
            "LOYALNEST_SERVICE_CREDENTIAL unset: GDPR requests are filed but not carried out"
            " (no service token for the personal-data holders)"
        )
    database = Database(settings, DATABASE)
    await database.open()
    store = GdprStore(
        database,
        sealing,
        holders=personal_data.HOLDERS,
        export_ttl=timedelta(seconds=settings.admin_core_export_ttl_seconds),
        events_published=settings.events_enabled,
    )
    merchants = MerchantDirectory(database)
    # Without Redis the log is still kept and queried; only live tails need it.
    stream = stream_client(settings.redis_url) if settings.redis_url else None
    mesh_log = MeshAuditLog(database, stream)
    downstream = CALLS.connect(settings, caller=NAME)
    components = postgres_service(
        settings,
        database,
        service=NAME,
        group=events.CONSUMER_GROUP,
        handlers=consumers.handlers(store, merchants, mesh_log),
        registrations=[
            Registration(
                SERVICE_NAME,
                admin_core_pb2_grpc.add_AdminCoreServiceServicer_to_server,
                AdminCoreServicer(store, merchants, sealing, mesh_log),
            )
        ],
        cleanup=[downstream.close, *([stream.aclose] if stream is not None else [])],
    )
    if settings.service_credential is not None:
        # On each holder's channel (Auth's is declared with its own stub: same channel).
        holders = {
            name: personal_data_pb2_grpc.PersonalDataServiceStub(downstream.channel(name))  # type: ignore[no-untyped-call]
            for name in personal_data.HOLDERS
        }
        worker = GdprWorker(
            store,
            holders,
            pseudonym_owner=customer_pseudonyms_pb2_grpc.CustomerPseudonymServiceStub(  # type: ignore[no-untyped-call]
                downstream.channel(pseudonyms.OWNER)
            ),
            interval_seconds=settings.admin_core_gdpr_interval_seconds,
        )
        components.background.append(functools.partial(worker.run))
    return components


SPEC = ServiceSpec(
    name=NAME,
    settings_type=AdminCoreSettings,
    build=build,
    database=DATABASE,
    calls=CALLS,
)

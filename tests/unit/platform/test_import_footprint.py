"""What a service process loads by importing its code (bench/README.md, "Memory").

A service's idle RSS is what it imports. pymongo (~6 MiB a process) is loaded only by the
code that talks to MongoDB (Points' Mongo stores, the Mongo outbox), yoyo (+ sqlparse) only
where migrations run, boto3 (~22 MiB with its SES client) only at Referrals' first SES
fallback, librdkafka (confluent_kafka) only when a setting selects it over kafka-python (the
default; tests/integration/test_kafka_producers.py runs a relay and a consumer on each client
in a process of its own and checks the other library stays out): an eager import of one of
them would cost every process that imports it again, and these checks fail on it. Each runs
in a fresh interpreter: the test process has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pymongo.errors

from loyalnest.platform.outages import unavailable_errors
from loyalnest.services.registry import SERVICES

# Top-level packages loaded only on the code paths that use them.
LAZY = ("pymongo", "yoyo", "sqlparse", "boto3", "botocore", "confluent_kafka")

_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(*modules: str) -> set[str]:
    """Top-level packages in sys.modules after a fresh interpreter imports `modules`."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return {name.split(".")[0] for name in json.loads(done.stdout)}


def test_no_service_loads_mongo_or_migrations_by_importing_its_code():
    # Every service at once (one interpreter: a few seconds, not 13 times that), with the
    # command line that serves them and the event loops every service builds.
    loaded = loaded_by("loyalnest.cli", "loyalnest.platform.event_loops", *SERVICES.values())
    eager = sorted(loaded & set(LAZY))
    assert eager == [], f"imported by some service's module chain: {eager}"


def test_no_service_loads_opentelemetrys_grpc_instrumentation():
    # The platform opens server and client spans itself (platform/server_spans.py,
    # client_spans.py); OpenTelemetry's instrumentation package and its wrapt (~1.6 MiB and
    # 48 modules a process, bench/README.md) have no reason to be loaded.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE,
            "loyalnest.cli",
            "loyalnest.platform.server",
            *SERVICES.values(),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    loaded = json.loads(done.stdout)
    assert "loyalnest.platform.client_spans" in loaded  # the probe saw the platform's tracing
    assert [m for m in loaded if m.startswith(("opentelemetry.instrumentation", "wrapt"))] == []


def test_the_check_sees_an_eager_import():
    # The Mongo outbox needs pymongo at import: proof the probe would notice one.
    assert "pymongo" in loaded_by("loyalnest.platform.events.mongo_outbox")


def test_mongo_outages_count_as_unavailable_once_pymongo_is_loaded():
    # Imported above, as a MongoDB store would: its connection failures are retryable.
    assert isinstance(pymongo.errors.AutoReconnect("primary stepped down"), unavailable_errors())
    assert isinstance(psycopg.OperationalError("connection refused"), unavailable_errors())
    assert not isinstance(pymongo.errors.DuplicateKeyError("dup"), unavailable_errors())

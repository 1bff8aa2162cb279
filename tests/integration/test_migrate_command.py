"""`loyalnest migrate <service>`: what the chart's migration Job runs, with what it is given.

The Job gets the database URL and logging settings, not the service's secrets; a migration
that needed them (EdgeSettings requires the Shopify API secret) failed every `helm install`
at its pre-install hook.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from loyalnest.services.registry import SERVICES, spec_for

pytestmark = pytest.mark.integration

LOYALNEST = Path(sys.executable).parent / "loyalnest"
WITH_SCHEMA = sorted(name for name in SERVICES if spec_for(name).database is not None)


@pytest.mark.parametrize("service", WITH_SCHEMA)
def test_migrate_needs_only_the_database_url(service: str, database_url: str) -> None:
    # Nothing of the developer's environment: only what the migration Job's pod has.
    env = {
        "PATH": os.environ["PATH"],
        "LOYALNEST_DATABASE_URL": database_url,
        "LOYALNEST_LOG_FORMAT": "console",
    }
    result = subprocess.run(
        [str(LOYALNEST), "migrate", service], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert f"{service}: applied" in result.stdout
    schema = spec_for(service).database
    assert schema is not None
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s",
            (schema.schema,),
        ).fetchone()
    assert tables is not None and tables[0] > 0
    # A second run (an upgrade with nothing new) applies nothing and still succeeds.
    again = subprocess.run(
        [str(LOYALNEST), "migrate", service], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0, again.stderr
    assert f"{service}: applied 0 migration(s)" in again.stdout

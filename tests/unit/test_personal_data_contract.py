"""A service whose tables hold customer data implements the personal-data contract
(loyalnest.platform.personal_data): this test reads every service's migrations, finds the
tables with a customer column (`CUSTOMER_COLUMNS`: ids, contact details, names, sealed or not)
and fails unless the service's spec declares `personal_data` covering each of them, and unless
AdminCore fans out to exactly the declaring services (`HOLDERS`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loyalnest.platform import audit
from loyalnest.platform.auth.service_identity import SERVICE_GRANTS
from loyalnest.platform.personal_data import CALLER, CUSTOMER_COLUMNS, HOLDERS, caller_grants
from loyalnest.services.registry import SERVICES, spec_for

# Tables with a customer column that are no Shopify customer's data, with the reason.
NOT_CUSTOMER_DATA: dict[tuple[str, str], str] = {
    # The GDPR orchestrator's own record: a completed redaction nulls the customer id there
    # (store.finish), proven by the scans of test_gdpr_erasure.py.
    ("admin_core", "gdpr_requests"): "AdminCore erases it itself when a request completes",
}

# The body ends at a line starting with ")": `);`, or `) PARTITION BY ...;` (RFM's series).
_CREATE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)\s*\((.*?)\n\s*\)[^;\n]*;", re.S | re.I)
_ADD = re.compile(r"ALTER TABLE (\w+) ADD COLUMN (?:IF NOT EXISTS )?(\w+)", re.I)
_KEYWORDS = {"primary", "unique", "constraint", "check", "foreign", "exclude"}


def table_columns(sql: str) -> dict[str, set[str]]:
    """Table -> columns, from CREATE TABLE and ALTER TABLE ... ADD COLUMN statements."""
    sql = re.sub(r"--[^\n]*", "", sql)
    tables: dict[str, set[str]] = {}
    for name, body in _CREATE.findall(sql):
        columns = tables.setdefault(name.lower(), set())
        for line in body.splitlines():
            words = line.strip().split()
            if words and words[0].lower() not in _KEYWORDS:
                columns.add(words[0].strip('",').lower())
    for name, column in _ADD.findall(sql):
        tables.setdefault(name.lower(), set()).add(column.lower())
    return tables


def service_tables(service: str) -> dict[str, set[str]]:
    spec = spec_for(service)
    if spec.database is None:
        return {}
    tables: dict[str, set[str]] = {}
    for directory in spec.database.migration_dirs:
        if directory == audit.MIGRATIONS:
            continue  # audit_logs: ids and redacted row images (see platform/audit)
        for path in sorted(Path(directory).glob("*.sql")):
            for table, columns in table_columns(path.read_text()).items():
                tables.setdefault(table, set()).update(columns)
    return tables


def customer_tables(service: str) -> set[str]:
    return {
        table
        for table, columns in service_tables(service).items()
        if columns & CUSTOMER_COLUMNS and (service, table) not in NOT_CUSTOMER_DATA
    }


def test_the_rule_reads_migrations() -> None:
    sql = """
    -- a comment naming email
    CREATE TABLE t (
        id uuid PRIMARY KEY,
        email_ciphertext bytea,
        PRIMARY KEY (id)
    );
    ALTER TABLE u ADD COLUMN phone text;
    CREATE TABLE s (
        customer_id text NOT NULL
    ) PARTITION BY RANGE (created_at);
    """
    assert table_columns(sql) == {
        "t": {"id", "email_ciphertext"},
        "u": {"phone"},
        "s": {"customer_id"},
    }


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_services_with_customer_data_implement_the_contract(service: str) -> None:
    spec = spec_for(service)
    found = customer_tables(service)
    declared = set(spec.personal_data.tables) if spec.personal_data else set()
    missing = found - declared - set(spec.personal_data.not_personal if spec.personal_data else ())
    assert not missing, (
        f"{service}'s tables {sorted(missing)} hold customer data: declare them in its "
        "ServiceSpec(personal_data=PersonalData(tables=...)) and implement export_customer, "
        "erase_customer and erase_merchant (loyalnest.platform.personal_data)"
    )
    unknown = declared - set(service_tables(service))
    assert not unknown, f"{service} declares tables its migrations do not create: {unknown}"


def test_admin_core_fans_out_to_every_holder() -> None:
    declaring = {name for name in SERVICES if spec_for(name).personal_data is not None}
    assert set(HOLDERS) == declaring, (
        "personal_data.HOLDERS must list every service declaring personal_data (AdminCore "
        "calls exactly those)"
    )
    assert caller_grants() <= SERVICE_GRANTS[CALLER]

"""Which exceptions mean a backing store is down (retry later), not that the call or event
was wrong: the error interceptor answers UNAVAILABLE for them, the consumer retries them
without limit.

pymongo's are among them only once pymongo is imported. A process that never imported it
(no MongoDB store configured) cannot raise them, and importing pymongo just to name them
cost every service ~6 MiB of RSS (bench/README.md, "Memory"). The tuple is built when an
exception is being matched (`except unavailable_errors():` evaluates then), so a store that
imports pymongo after start is covered from its first call.
"""

from __future__ import annotations

import sys

import psycopg

_POSTGRES: tuple[type[Exception], ...] = (psycopg.OperationalError,)


def unavailable_errors() -> tuple[type[Exception], ...]:
    mongo_errors = sys.modules.get("pymongo.errors")
    if mongo_errors is None:
        return _POSTGRES
    connection_failure: type[Exception] = mongo_errors.ConnectionFailure
    return (*_POSTGRES, connection_failure)

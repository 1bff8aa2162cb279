"""`loyalnest up` compiles the bytecode its services import, once, before starting them
(devstack/bytecode.py): without it each process compiles ~1,300 modules at start and keeps
~10 MiB more RSS (bench/README.md, "Memory")."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import grpc

import loyalnest.platform.outages
from loyalnest.devstack.bytecode import compile_bytecode


def _fresh_bytecode(module: ModuleType) -> bool:
    """A timestamp-checked .pyc beside `module`'s source whose recorded mtime is the source's:
    what the import system loads instead of compiling."""
    assert module.__file__ is not None
    source = Path(module.__file__)
    cached = Path(importlib.util.cache_from_source(str(source)))
    if not cached.is_file():
        return False
    header = cached.read_bytes()[:16]
    flags = int.from_bytes(header[4:8], "little")
    return flags == 0 and int.from_bytes(header[8:12], "little") == int(source.stat().st_mtime)


def test_the_package_and_the_packages_it_imports_get_fresh_bytecode():
    assert compile_bytecode()
    # Ours (an editable install: outside site-packages) and an installed one.
    assert _fresh_bytecode(loyalnest.platform.outages)
    assert _fresh_bytecode(grpc)

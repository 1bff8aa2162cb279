"""Bytecode for the local stack, compiled once before its services start.

Every service imports the same ~1,300 modules. Without a `.pyc` beside them (a venv synced
without `--compile-bytecode`, an edited source, or PYTHONDONTWRITEBYTECODE set) each of the
13 processes compiles them at start, and what compiling takes stays in the process's heap:
~10 MiB of RSS per process, and seconds of CPU each (bench/README.md, "Memory"). Up to date
files are only compared by timestamp, so this costs a fraction of a second when nothing
changed.
"""

from __future__ import annotations

import compileall
import sysconfig
from pathlib import Path

import loyalnest


def bytecode_dirs() -> list[Path]:
    """This package (an editable install's sources are outside site-packages) and the
    installed packages it imports."""
    package = Path(loyalnest.__file__).parent
    site_packages = Path(sysconfig.get_paths()["purelib"])
    return [package] if package.is_relative_to(site_packages) else [package, site_packages]


def compile_bytecode() -> bool:
    """Writes missing or stale `.pyc` files; False if some could not be written (a read-only
    install, say): the services then compile those themselves, as before."""
    ok = True
    for directory in bytecode_dirs():
        ok = bool(compileall.compile_dir(directory, quiet=2)) and ok
    return ok

#!/usr/bin/env bash
# Installs the system packages the local stack and the tests run: Debian's PostgreSQL server.
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || command -v pg_ctl >/dev/null; then
  exit 0
fi
exec "$(dirname "$0")/apt-install.sh" "the PostgreSQL 15+ server" postgresql

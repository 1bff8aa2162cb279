#!/usr/bin/env bash
# Installs the system packages the local stack and the tests run: Debian's PostgreSQL server.
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || command -v pg_ctl >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "PostgreSQL server binaries are missing; install PostgreSQL 15+ with your package manager" >&2
  exit 1
fi
echo "installing PostgreSQL (apt)..."
sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends postgresql >/dev/null

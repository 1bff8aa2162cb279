#!/usr/bin/env bash
# Installs Debian packages with apt-get (through sudo unless root): how the tools/ensure-*
# scripts install a missing system package, from the distribution's stable archive.
# Usage: tools/apt-install.sh WHAT PACKAGE... (WHAT: what it is, for the messages)
set -euo pipefail

what="$1"
shift
if ! command -v apt-get >/dev/null; then
  echo "$what is missing; install it ($*) with your package manager" >&2
  exit 1
fi
echo "installing $what (apt: $*)..."
sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null

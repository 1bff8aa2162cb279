#!/usr/bin/env bash
# Installs h2load (Debian's nghttp2-client), the HTTP/2 load generator `make bench-rest`
# drives Envoy and the echo server with; nothing else needs it.
set -euo pipefail

if command -v h2load >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "h2load is missing; install nghttp2 (its h2load) with your package manager" >&2
  exit 1
fi
echo "installing h2load (apt: nghttp2-client)..."
sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends nghttp2-client >/dev/null

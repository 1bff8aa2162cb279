#!/usr/bin/env bash
# Installs h2load (Debian's nghttp2-client), the HTTP/2 load generator `make bench-rest`
# drives Envoy and the echo server with; nothing else needs it.
set -euo pipefail

if command -v h2load >/dev/null; then
  exit 0
fi
exec "$(dirname "$0")/apt-install.sh" h2load nghttp2-client

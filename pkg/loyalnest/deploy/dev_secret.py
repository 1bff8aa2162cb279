"""The backends Secret of a development cluster (`tools/kind-up.sh`), made from the chart itself.

Every key the rendered chart reads from the Secret (`secretKeyRef`, optional ones excluded)
gets a value: kept when the Secret already has one (a changed encryption key would leave the
data encrypted under the old one unreadable), generated when it does not. The list of keys is
read from the render, never written by hand: a hand-written list in kind-up.sh lacked the
service credentials, and five services stayed in CreateContainerConfigError.

    helm template ... -f k8s/kind/values.yaml > rendered.yaml
    kubectl get secret loyalnest-backends -o json > existing.json   # or nothing
    python -m loyalnest.deploy.dev_secret rendered.yaml --existing existing.json \
        | kubectl apply -f -
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from loyalnest.platform.auth.service_identity import service_credential

SECRET_NAME = "loyalnest-backends"
MASTER_KEY = "auth-service-credential-key"
CREDENTIAL_SUFFIX = "-service-credential"
# What the in-chart dev backends answer on (templates/backends-*.yaml).
DATABASE_URL = "postgresql://loyalnest:{password}@postgres:5432/loyalnest"
REDIS_URL = "redis://redis:6379/0"
SHOPIFY_PLACEHOLDER = "dev-placeholder"
# Keys that are base64 of 32 random bytes: PII keys, page tokens' and discount codes' HMAC keys,
# Event Tracking's pseudonym key.
RANDOM_KEY_SUFFIXES = ("-encryption-key", "-blind-index-key", "-pseudonym-key", "-code-key")
RANDOM_KEYS = {"page-token-key"}
# Outside providers' API keys: placeholders, a dev cluster ships nowhere real.
PROVIDER_API_KEYS = {
    "posthog-api-key": "phc_dev-placeholder",
    "posthog-personal-api-key": "phx_dev-placeholder",
    # No merchant's keys: a dev cluster's invites fail with that reason, visible in status.
    "referrals-provider-keys": "{}",
    "ses-access-key-id": "dev-placeholder",
    "ses-secret-access-key": "dev-placeholder",
}


class UnknownSecretKey(ValueError):
    """The chart reads a key this module cannot make a development value for."""


def _secret_refs(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        ref = node.get("secretKeyRef")
        if isinstance(ref, Mapping):
            yield ref
        for value in node.values():
            yield from _secret_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _secret_refs(value)


def required_keys(objects: Iterable[Mapping[str, Any]], secret_name: str = SECRET_NAME) -> set[str]:
    """The keys of `secret_name` that the rendered objects read and cannot start without."""
    return {
        str(ref["key"])
        for obj in objects
        for ref in _secret_refs(obj)
        if ref.get("name") == secret_name and not ref.get("optional", False)
    }


def _random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def complete(required: Iterable[str], existing: Mapping[str, str]) -> dict[str, str]:
    """`existing` plus a value for every required key it lacks.

    Service credentials are derived from the Auth master key (as `loyalnest
    service-credential` does), so they stay valid for the master key the Secret holds.
    """
    values = dict(existing)
    missing = sorted(set(required) - set(values))
    if any(key.endswith(CREDENTIAL_SUFFIX) for key in missing) or MASTER_KEY in missing:
        values.setdefault(MASTER_KEY, _random_key())
    if "database-url" in missing or "postgres-password" in missing:
        values.setdefault("postgres-password", secrets.token_urlsafe(18))
    master = base64.b64decode(values[MASTER_KEY]) if MASTER_KEY in values else b""
    for key in missing:
        if key in values:
            continue
        if key.endswith(CREDENTIAL_SUFFIX):
            service = key.removesuffix(CREDENTIAL_SUFFIX).replace("-", "_")
            values[key] = service_credential(master, service)
        elif key.endswith(RANDOM_KEY_SUFFIXES) or key in RANDOM_KEYS:
            values[key] = _random_key()
        elif key.startswith("shopify-"):
            values[key] = SHOPIFY_PLACEHOLDER
        elif key in PROVIDER_API_KEYS:
            # An outside provider's API key: a dev cluster ships nowhere real.
            values[key] = PROVIDER_API_KEYS[key]
        elif key == "database-url":
            values[key] = DATABASE_URL.format(password=values["postgres-password"])
        elif key == "redis-url":
            values[key] = REDIS_URL
        else:
            raise UnknownSecretKey(
                f"the chart reads {SECRET_NAME}/{key}, and there is no development value for "
                "it: create it by hand (see README, Operate on Kubernetes) or teach "
                "loyalnest.deploy.dev_secret how to make one"
            )
    return values


def secret_manifest(values: Mapping[str, str], namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": SECRET_NAME, "namespace": namespace},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in values.items()},
    }


def _existing(path: Path | None) -> dict[str, str]:
    if path is None or not path.is_file() or not path.read_text().strip():
        return {}
    data = json.loads(path.read_text()).get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loyalnest.deploy.dev_secret")
    parser.add_argument("rendered", type=Path, help="the chart rendered with the cluster's values")
    parser.add_argument("--existing", type=Path, help="`kubectl get secret -o json` of it, if any")
    parser.add_argument("--namespace", default="loyalnest")
    args = parser.parse_args(argv)
    objects = [obj for obj in yaml.safe_load_all(args.rendered.read_text()) if obj]
    try:
        values = complete(required_keys(objects), _existing(args.existing))
    except UnknownSecretKey as exc:
        print(exc, file=sys.stderr)
        return 1
    yaml.safe_dump(secret_manifest(values, args.namespace), sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

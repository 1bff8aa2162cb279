"""Offline verification of the Kubernetes delivery: the chart, k8s/, skaffold.yaml, the image.

Everything runs without a cluster or a Docker engine (none exists here): the real helm v4 and
kubectl binaries from .build/k8s-tools (fetched by `make setup`, never at test time), the
kubernetes-validate schemas, Envoy's validate mode, and our own cross-object checks.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from loyalnest.deploy import helm
from loyalnest.deploy.renders import COMBINATIONS

Objects = list[dict[str, Any]]


def parse(text: str) -> Objects:
    return [obj for obj in yaml.safe_load_all(text) if obj]


def find(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(
        f"no {kind}/{name} among {[(o['kind'], o['metadata']['name']) for o in objects]}"
    )


def container(objects: Objects, kind: str, name: str, container_name: str) -> dict[str, Any]:
    for c in find(objects, kind, name)["spec"]["template"]["spec"]["containers"]:
        if c["name"] == container_name:
            return c
    raise AssertionError(f"{kind}/{name} has no container {container_name}")


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


@pytest.fixture(scope="session")
def rendered() -> dict[str, Objects]:
    """Every values combination of renders.COMBINATIONS, rendered once per session."""
    return {name: parse(helm.template(render)) for name, render in COMBINATIONS.items()}

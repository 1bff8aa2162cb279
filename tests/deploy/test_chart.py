"""The Helm chart: lint, values schema, API schemas per Kubernetes version, semantic checks, and
the behaviour each values switch promises."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from loyalnest.deploy import checks, helm
from loyalnest.deploy.gateway_chart import k8s_name, services_in
from loyalnest.deploy.helm import MONITORING_API, Render
from loyalnest.deploy.paths import CHART_DIR, tool
from loyalnest.deploy.renders import COMBINATIONS
from loyalnest.gateway.reflection import DEFAULT_DESCRIPTOR_SET
from loyalnest.services.registry import SERVICES
from tests.deploy.conftest import Objects, container, env_of, find, parse

SCHEMAS = Path(__file__).parent / "schemas"
# The oldest version the chart supports (Chart.yaml kubeVersion) and the newest with schemas.
KUBE_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_helm_lint_strict(name: str) -> None:
    # --strict: warnings fail too; lint also validates the values against values.schema.json.
    output = helm.lint(COMBINATIONS[name])
    assert "0 chart(s) failed" in output


def test_values_yaml_satisfies_its_schema_per_jsonschema() -> None:
    # A second, independent validator: the schema is valid draft-07 and the defaults pass it.
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((CHART_DIR / "values.yaml").read_text()), schema)


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_object_passes_kubernetes_validate_strict(
    rendered: dict[str, Objects], name: str, version: str
) -> None:
    crd_schemas = {
        kind: json.loads((SCHEMAS / f"{kind.lower()}-v1.json").read_text())
        for kind in ("ServiceMonitor", "PrometheusRule")
    }
    failures = []
    for obj in rendered[name]:
        if obj["kind"] in crd_schemas:
            # A CRD: kubernetes-validate only warns; our own strict schema instead.
            jsonschema.validate(obj, crd_schemas[obj["kind"]])
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{checks.name_of(obj)} {list(exc.path)}: {exc.message}")
    assert not failures


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_semantic_checks(rendered: dict[str, Objects], name: str) -> None:
    # Selectors, probe/Service ports, NetworkPolicy peers, quantities, security contexts,
    # grace periods, config checksums, duplicates.
    assert checks.all_problems(rendered[name]) == []


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_no_secret_is_rendered_only_referenced(rendered: dict[str, Objects], name: str) -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    for values_file in COMBINATIONS[name].values_files:
        override = yaml.safe_load(Path(values_file).read_text()) or {}
        values["secrets"].update(override.get("secrets", {}))
    assert checks.secret_problems(rendered[name], values["secrets"]["existingSecret"]) == []


def test_every_service_in_proto_has_a_deployment(rendered: dict[str, Objects]) -> None:
    objects = rendered["default"]
    for service in services_in(DEFAULT_DESCRIPTOR_SET):
        main = container(objects, "Deployment", k8s_name(service), k8s_name(service))
        assert main["command"] == ["loyalnest", "serve", service]
        # Headless (client-side balancing) and ClusterIP Services, a ServiceAccount.
        assert find(objects, "Service", k8s_name(service))["spec"]["clusterIP"] == "None"
        assert find(objects, "Service", f"{k8s_name(service)}-clusterip")["spec"]["type"] == (
            "ClusterIP"
        )
        find(objects, "ServiceAccount", k8s_name(service))


def test_every_proto_package_with_a_service_has_a_deployment(rendered: dict[str, Objects]) -> None:
    # Straight from proto/ (not the generated descriptor set, which could be stale).
    proto_root = CHART_DIR.parent.parent / "proto" / "loyalnest"
    packages = {
        path.relative_to(proto_root).parts[0]
        for path in proto_root.rglob("*.proto")
        if re.search(r"^service\s+\w+", path.read_text(), re.M)
    } - {"platform"}  # contracts every service serves itself (loyalnest.platform.v1)
    assert packages, "no gRPC service found under proto/"
    deployments = {o["metadata"]["name"] for o in rendered["default"] if o["kind"] == "Deployment"}
    assert {k8s_name(p) for p in packages} <= deployments


def test_enabled_components_exist_in_the_service_registry(rendered: dict[str, Objects]) -> None:
    # A component enabled in values but missing from the image would crash-loop.
    for obj in rendered["default"]:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] != "gateway":
            command = obj["spec"]["template"]["spec"]["containers"][0]["command"]
            assert command[:2] == ["loyalnest", "serve"] and command[2] in SERVICES


def test_native_grpc_probes_and_grace_period(rendered: dict[str, Objects]) -> None:
    points = find(rendered["default"], "Deployment", "points")["spec"]["template"]["spec"]
    main = points["containers"][0]
    assert main["startupProbe"]["grpc"] == {"port": 50051}
    assert main["readinessProbe"]["grpc"] == {"port": 50051}
    grace = float(env_of(main)["LOYALNEST_SHUTDOWN_GRACE_SECONDS"])
    assert (
        points["terminationGracePeriodSeconds"]
        > grace + main["lifecycle"]["preStop"]["sleep"]["seconds"]
    )
    live = container(rendered["all-features"], "Deployment", "points", "points")["livenessProbe"]
    assert live["grpc"] == {"port": 50051}  # probes.liveness.type: grpc


def test_servicemonitor_only_when_the_cluster_has_the_crd(rendered: dict[str, Objects]) -> None:
    kinds = [o["kind"] for o in rendered["default"]]
    assert "ServiceMonitor" not in kinds  # serviceMonitor.enabled, but no monitoring API
    with_api = parse(helm.template(Render(api_versions=(MONITORING_API,))))
    assert {o["metadata"]["name"] for o in with_api if o["kind"] == "ServiceMonitor"} == {
        "loyalnest-services",
        "loyalnest-gateway",
    }


def test_otel_endpoint_is_configurable(rendered: dict[str, Objects]) -> None:
    default_env = env_of(container(rendered["default"], "Deployment", "points", "points"))
    assert "LOYALNEST_OTEL_EXPORTER_OTLP_ENDPOINT" not in default_env
    env = env_of(container(rendered["all-features"], "Deployment", "points", "points"))
    assert env["LOYALNEST_OTEL_EXPORTER_OTLP_ENDPOINT"] == (
        "http://otel-collector.observability.svc.cluster.local:4317"
    )
    assert env["LOYALNEST_OTEL_SAMPLE_RATIO"] == "0.25"


def test_kafka_client_is_configurable(rendered: dict[str, Objects]) -> None:
    # kafka-python by default, for relays and consumers alike; librdkafka on request.
    for name, client in (("default", "kafka-python"), ("external-backends", "confluent")):
        env = env_of(container(rendered[name], "Deployment", "points", "points"))
        assert env["LOYALNEST_KAFKA_PRODUCER"] == client
        assert env["LOYALNEST_KAFKA_CONSUMER"] == client


def test_migration_job_is_a_hook(rendered: dict[str, Objects]) -> None:
    job = find(rendered["default"], "Job", "core-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "loyalnest",
        "migrate",
        "core",
    ]
    # The Job migrates, so services do not.
    env = env_of(container(rendered["default"], "Deployment", "core", "core"))
    assert env["LOYALNEST_RUN_MIGRATIONS_ON_START"] == "false"
    # In-chart PostgreSQL exists only after install: the hook waits, services migrate on start.
    dev = find(rendered["all-features"], "Job", "core-migrate")
    assert dev["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    env = env_of(container(rendered["all-features"], "Deployment", "core", "core"))
    assert env["LOYALNEST_RUN_MIGRATIONS_ON_START"] == "true"
    minimal = rendered["minimal"]
    assert not [o for o in minimal if o["kind"] == "Job"]


def test_autoscaling_owns_replicas_when_enabled(rendered: dict[str, Objects]) -> None:
    assert find(rendered["default"], "Deployment", "points")["spec"]["replicas"] == 2
    deployment = find(rendered["all-features"], "Deployment", "points")
    assert "replicas" not in deployment["spec"]
    hpa = find(rendered["all-features"], "HorizontalPodAutoscaler", "points")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)


def test_backends_external_or_in_chart(rendered: dict[str, Objects]) -> None:
    external = rendered["external-backends"]
    assert not [o for o in external if o["kind"] == "StatefulSet"]
    env = env_of(container(external, "Deployment", "points", "points"))
    assert env["LOYALNEST_KAFKA_BOOTSTRAP_SERVERS"] == (
        "b-1.kafka.internal:9092,b-2.kafka.internal:9092"
    )
    dev = rendered["all-features"]
    assert {o["metadata"]["name"] for o in dev if o["kind"] == "StatefulSet"} == {
        "postgres",
        "mongo",
        "redis",
        "kafka",
    }
    for name in ("postgres", "mongo", "redis", "kafka"):
        assert find(dev, "StatefulSet", name)["spec"]["replicas"] == 1
    env = env_of(container(dev, "Deployment", "points", "points"))
    assert env["LOYALNEST_KAFKA_BOOTSTRAP_SERVERS"] == "kafka.loyalnest.svc.cluster.local:9092"


def test_consul_sidecar(rendered: dict[str, Objects]) -> None:
    assert (
        len(
            find(rendered["default"], "Deployment", "points")["spec"]["template"]["spec"][
                "containers"
            ]
        )
        == 1
    )
    # all-features: agentless Consul, the servers' catalog over https with their CA; the ACL
    # token as a file (re-read when the Secret rotates), never in the environment.
    objects = rendered["all-features"]
    sidecar = container(objects, "Deployment", "points", "consul-sync")
    assert sidecar["command"] == ["loyalnest", "consul-sync"]
    assert "--service-name=points" in sidecar["args"]
    assert "--mode=catalog" in sidecar["args"]
    assert "--consul-addr=https://consul-server.consul.svc:8501" in sidecar["args"]
    assert "--token-file=/etc/consul/token/token" in sidecar["args"]
    assert "--ca-file=/etc/consul/ca/tls.crt" in sidecar["args"]
    assert "CONSUL_HTTP_TOKEN" not in env_of(sidecar)
    volumes = {
        v["name"]: v
        for v in find(objects, "Deployment", "points")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["consul-token"]["secret"]["secretName"] == "consul-acl-token"
    assert volumes["consul-ca"]["secret"]["secretName"] == "consul-ca-cert"
    assert {m["mountPath"] for m in sidecar["volumeMounts"]} == {
        "/etc/consul/token",
        "/etc/consul/ca",
    }


def _consul_rules(objects: Objects, name: str) -> tuple[list[Any], list[Any]]:
    """A policy's ingress rules on the gRPC port from ipBlocks (a Consul agent's check), and
    its egress rules on Consul's ports."""
    spec = find(objects, "NetworkPolicy", name)["spec"]
    ingress = [
        r
        for r in spec["ingress"]
        if {"protocol": "TCP", "port": 50051} in r["ports"]
        and any("ipBlock" in peer for peer in r.get("from", []))
    ]
    egress = [r for r in spec["egress"] if {p["port"] for p in r["ports"]} & {8500, 8501}]
    return ingress, egress


def test_consul_catalog_mode_opens_no_grpc_port(rendered: dict[str, Objects]) -> None:
    """Agentless: nothing connects to the pods for Consul; the sidecars reach the servers, and
    the gateway (no sidecar) gets no Consul egress."""
    objects = rendered["all-features"]
    for name in ("points", "auth", "edge"):
        ingress, egress = _consul_rules(objects, name)
        assert ingress == []
        (rule,) = egress
        assert rule["ports"] == [{"protocol": "TCP", "port": 8501}]
        assert rule["to"][0]["podSelector"]["matchLabels"] == {
            "app": "consul",
            "component": "server",
        }
    assert _consul_rules(objects, "gateway")[1] == []


def test_consul_agent_mode_admits_only_the_nodes() -> None:
    """The agent's gRPC check comes from the node: without the nodes' CIDRs the chart refuses
    (it once opened every gRPC port to 0.0.0.0/0); with them, only they get in."""
    with pytest.raises(helm.HelmError, match="consulAgentCIDRs"):
        helm.template(Render(overrides={"consul": {"enabled": True}}))
    overrides = {
        "consul": {"enabled": True},
        "networkPolicy": {"consulAgentCIDRs": ["10.240.0.0/16"]},
    }
    objects = parse(helm.template(Render(overrides=overrides)))
    ingress, egress = _consul_rules(objects, "points")
    assert [r["from"] for r in ingress] == [[{"ipBlock": {"cidr": "10.240.0.0/16"}}]]
    assert [r["to"] for r in egress] == [[{"ipBlock": {"cidr": "10.240.0.0/16"}}]]
    sidecar = container(objects, "Deployment", "points", "consul-sync")
    assert "--consul-addr=http://$(HOST_IP):8500" in sidecar["args"]


def test_consul_catalog_mode_needs_the_servers() -> None:
    with pytest.raises(helm.HelmError, match=r"consul\.servers\.host"):
        helm.template(Render(overrides={"consul": {"enabled": True, "mode": "catalog"}}))


def test_gateway_requires_its_upstream_components() -> None:
    # The generated Envoy config routes to every service in the descriptor set.
    with pytest.raises(helm.HelmError, match=r"components\.points is not enabled"):
        helm.template(Render(overrides={"components": {"points": {"enabled": False}}}))


def test_notes_tell_how_to_reach_the_gateway() -> None:
    # `helm install --dry-run=client` renders NOTES.txt without a cluster.
    notes = subprocess.run(
        [
            str(tool("helm")),
            "install",
            "loyalnest",
            str(CHART_DIR),
            "--namespace",
            "loyalnest",
            "--dry-run=client",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("NOTES:", 1)[1]
    assert "port-forward svc/gateway 8080:8080" in notes
    assert "grpcurl -plaintext $GATEWAY list" in notes
    assert "curl -s" in notes
    assert "create secret generic loyalnest-backends" in notes
    # Calls carry a token (the merchant comes from it), minted with the published keyset.
    assert "create configmap loyalnest-jwks --from-file=jwks.json=" in notes
    assert 'curl -s -H "authorization: Bearer $TOKEN"' in notes
    assert "loyalnest token --keyset ./signing-keys.json --merchant demo-shop --force" in notes
    # A key rotation needs no gateway restart any more (Envoy refetches Auth's JWKS).
    assert "rollout restart deployment/gateway" not in notes
    assert "the gateway refetches Auth's JWKS every 30 s" in notes.replace("\n", " ")
    assert "x-loyalnest-merchant-id" not in notes


def _pod(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, kind, name)["spec"]["template"]["spec"]
    return spec


def test_in_chart_kafka_can_write_its_logs_and_gets_no_service_links(
    rendered: dict[str, Objects],
) -> None:
    """uid 10001 on a read-only root filesystem: the start scripts' GC and server logs go to
    LOG_DIR, which must be a mounted volume; a Service named kafka must not inject KAFKA_*
    variables (the image turns them into broker properties)."""
    dev = rendered["all-features"]
    for name in ("postgres", "mongo", "redis", "kafka"):
        assert _pod(dev, "StatefulSet", name)["enableServiceLinks"] is False, name
    pod = _pod(dev, "StatefulSet", "kafka")
    broker = next(c for c in pod["containers"] if c["name"] == "kafka")
    assert broker["securityContext"]["readOnlyRootFilesystem"] is True
    log_dir = env_of(broker)["LOG_DIR"]
    mounts = {m["mountPath"]: m["name"] for m in broker["volumeMounts"]}
    assert log_dir in mounts
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[log_dir])
    assert "emptyDir" in volume


def test_in_chart_mongo_forms_its_replica_set(rendered: dict[str, Objects]) -> None:
    """`--replSet rs0` alone leaves mongod without a primary; Points' transactions need one."""
    dev = rendered["all-features"]
    service = find(dev, "Service", "mongo")["spec"]
    assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"] is True
    mongo = next(c for c in _pod(dev, "StatefulSet", "mongo")["containers"] if c["name"] == "mongo")
    assert "--replSet" in mongo["args"]
    initiate = " ".join(mongo["lifecycle"]["postStart"]["exec"]["command"])
    assert "rs.initiate" in initiate
    assert "mongo-0.mongo.loyalnest.svc.cluster.local:27017" in initiate
    assert "isWritablePrimary" in " ".join(mongo["readinessProbe"]["exec"]["command"])


def test_no_placeholder_broker_in_the_raw_manifests(rendered: dict[str, Objects]) -> None:
    """k8s/base named kafka.example.internal:9092, a host nobody has: the brokers now come from
    the backends Secret unless the values name them (the services wait for the key rather than
    retry a made-up host); the migration Jobs do not need them."""
    base = (CHART_DIR.parent.parent / "k8s" / "base" / "loyalnest.yaml").read_text()
    assert "example.internal" not in base
    objects = rendered["default"]
    env = env_of(container(objects, "Deployment", "points", "points"))
    assert env["LOYALNEST_KAFKA_BOOTSTRAP_SERVERS"] == {
        "secretKeyRef": {"name": "loyalnest-backends", "key": "kafka-bootstrap-servers"}
    }
    migrate = env_of(container(objects, "Job", "auth-migrate", "migrate"))
    assert migrate["LOYALNEST_KAFKA_BOOTSTRAP_SERVERS"]["secretKeyRef"]["optional"] is True
    named = env_of(container(rendered["external-backends"], "Deployment", "points", "points"))
    assert (
        named["LOYALNEST_KAFKA_BOOTSTRAP_SERVERS"]
        == "b-1.kafka.internal:9092,b-2.kafka.internal:9092"
    )
    # The brokers' port for the policies: Kafka's default unless listed.
    assert checks.backend_egress_problems(objects, {"kafka-bootstrap-servers": "b-1:9092"}) == []
    assert checks.backend_egress_problems(objects, {"kafka-bootstrap-servers": "b-1:9094"}) != []
    listed = parse(
        helm.template(
            Render(overrides={"networkPolicy": {"backends": {"kafka": {"ports": [9094]}}}})
        )
    )
    assert checks.backend_egress_problems(listed, {"kafka-bootstrap-servers": "b-1:9094"}) == []


def test_points_on_the_mongo_ledger_has_no_migration_job(rendered: dict[str, Objects]) -> None:
    """Points on MongoDB has no PostgreSQL schema: no points-migrate Job (the others keep
    theirs); on the PostgreSQL ledger it has one."""
    jobs = {o["metadata"]["name"] for o in rendered["default"] if o["kind"] == "Job"}
    assert "points-migrate" not in jobs and "auth-migrate" in jobs
    postgres = {"components": {"points": {"env": {"LOYALNEST_POINTS_LEDGER_STORE": "postgres"}}}}
    objects = parse(helm.template(Render(overrides=postgres)))
    assert "points-migrate" in {o["metadata"]["name"] for o in objects if o["kind"] == "Job"}


def _template(objects: Objects, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, "Deployment", name)["spec"]["template"]
    return spec


def test_pods_spread_softly_by_default(rendered: dict[str, Objects]) -> None:
    """Every service and the gateway prefer other nodes and spread over zones and nodes, as
    preferences only (a one-node kind cluster still schedules everything); values replace
    the defaults."""
    for name in ("points", "auth", "gateway"):
        spec = _template(rendered["default"], name)["spec"]
        selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": "loyalnest"}
        (term,) = spec["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
        assert (
            "requiredDuringSchedulingIgnoredDuringExecution"
            not in spec["affinity"]["podAntiAffinity"]
        )
        spread = spec["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} == {
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        }
        assert all(c["whenUnsatisfiable"] == "ScheduleAnyway" for c in spread)
        assert all(c["labelSelector"]["matchLabels"] == selector for c in spread)
    own = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}
    objects = parse(
        helm.template(
            Render(
                overrides={
                    "componentDefaults": {"affinity": own},
                    "components": {"users": {"podAntiAffinity": "none"}},
                    "gateway": {
                        "topologySpreadConstraints": [
                            {
                                "maxSkew": 2,
                                "topologyKey": "kubernetes.io/hostname",
                                "whenUnsatisfiable": "DoNotSchedule",
                            }
                        ]
                    },
                }
            )
        )
    )
    assert _template(objects, "points")["spec"]["affinity"] == own
    assert _template(objects, "users")["spec"]["affinity"] == own  # an affinity given wins
    assert [
        c["maxSkew"] for c in _template(objects, "gateway")["spec"]["topologySpreadConstraints"]
    ] == [2]
    objects = parse(
        helm.template(Render(overrides={"componentDefaults": {"podAntiAffinity": "none"}}))
    )
    assert "affinity" not in _template(objects, "points")["spec"]


def test_pod_extras_are_values() -> None:
    """IRSA/Workload Identity annotations, labels, priority, extra env and volumes."""
    role = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/points"}
    overrides = {
        "componentDefaults": {
            "priorityClassName": "loyalnest-high",
            "podLabels": {"team": "loyalty"},
        },
        "components": {
            "points": {
                "serviceAccount": {"annotations": role},
                "extraEnv": [
                    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
                ],
                "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
                "extraVolumeMounts": [
                    {"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}
                ],
            }
        },
        "gateway": {
            "podLabels": {"team": "edge"},
            "priorityClassName": "loyalnest-edge",
            "serviceAccount": {"annotations": {"iam.gke.io/gcp-service-account": "gw@p.iam"}},
        },
    }
    objects = parse(helm.template(Render(overrides=overrides)))
    # The CA bundle is the operator's ConfigMap: the checks flag it as not rendered, nothing else.
    assert checks.all_problems(objects) == [
        "Deployment/points: mounts missing ConfigMap corporate-ca"
    ]
    assert find(objects, "ServiceAccount", "points")["metadata"]["annotations"] == role
    assert "annotations" not in find(objects, "ServiceAccount", "users")["metadata"]
    points = _template(objects, "points")
    assert points["metadata"]["labels"]["team"] == "loyalty"
    assert points["spec"]["priorityClassName"] == "loyalnest-high"
    main = container(objects, "Deployment", "points", "points")
    assert env_of(main)["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert {"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True} in main[
        "volumeMounts"
    ]
    assert {"name": "ca", "configMap": {"name": "corporate-ca"}} in points["spec"]["volumes"]
    # Selectors stay as they were: a label added to pods never changes what selects them.
    assert "team" not in find(objects, "Deployment", "points")["spec"]["selector"]["matchLabels"]
    gateway = _template(objects, "gateway")
    assert gateway["metadata"]["labels"]["team"] == "edge"
    assert gateway["spec"]["priorityClassName"] == "loyalnest-edge"
    sa = find(objects, "ServiceAccount", "gateway")["metadata"]["annotations"]
    assert sa == {"iam.gke.io/gcp-service-account": "gw@p.iam"}


def test_helm_test_checks_the_gateway_from_inside(rendered: dict[str, Objects]) -> None:
    """`helm test` runs a Job (a test hook, deleted once it passed) that checks the gateway
    with a token minted from the mounted signing keys; a NetworkPolicy lets only it through
    (the rehearsal runs it: tests/deploy/test_rehearsal.py). The raw manifests carry none."""
    objects = rendered["default"]
    job = find(objects, "Job", "gateway-test")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "test"
    smoke = job["spec"]["template"]["spec"]["containers"][0]
    assert smoke["command"][:3] == ["python", "-m", "loyalnest.gateway.smoke"]
    assert "--gateway=gateway.loyalnest.svc.cluster.local:8080" in smoke["command"]
    assert "--keyset=/etc/loyalnest/signing-keys/signing-keys.json" in smoke["command"]
    policy = find(objects, "NetworkPolicy", "helm-test")["spec"]
    assert {p["port"] for p in policy["egress"][0]["ports"]} == {8080, 9902}
    gateway_in = find(objects, "NetworkPolicy", "gateway")["spec"]["ingress"]
    assert any(
        peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        == "helm-test"
        for rule in gateway_in
        for peer in rule.get("from", [])
    )
    base = (CHART_DIR.parent.parent / "k8s" / "base" / "loyalnest.yaml").read_text()
    assert "helm.sh/hook" not in base


def test_the_smoke_check_fails_without_a_gateway() -> None:
    from loyalnest.gateway import smoke

    assert smoke.main(["--gateway=127.0.0.1:9", "--ops=127.0.0.1:9", "--patience=0"]) == 1

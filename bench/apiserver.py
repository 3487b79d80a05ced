"""What a host-access check costs a real pod create: ours side by side with the peers a user would pick.

One control plane (tests/e2e/harness.py: etcd + kube-apiserver as local processes, two node pools: Ubuntu
and Flatcar) and these admission set-ups, measured in the same run, interleaved round by round:

  none      no webhook, no policy: the apiserver's built-in plugins only;
  ours      `python -m webhook serve` (default config, log level info) registered with the chart's own
            webhook configurations (`helm template`, by URL) without matchConditions
            (`webhook.skipPodsWithoutHostAccess=false`): the apiserver calls /mutate and /validate;
  ours+mc   the same with the chart as it ships: matchConditions send only pods with host access;
  null      the chart's configurations (without matchConditions) at bench/nullwebhook, a Go
            standard-library HTTPS server that decodes the review and answers allowed: the floor of
            any webhook on this machine;
  floor     the same at bench/server.py's ceiling, the bare starlette + uvicorn handler on our serving
            stack (parse the JSON, answer allowed): the ceiling of a Python webhook here;
  vap       the in-tree ValidatingAdmissionPolicy making the default checks in CEL;
  kyverno   Kyverno's admission controller (built by hack/kyverno.sh) run outside the cluster against
            this apiserver, with bench/kyverno/policy.yaml (the same checks, Enforce).

Pods: `clean` (a realistic web pod without host access) and `host` (a tool installer writing to the
host's /usr/local/bin through a hostPath: ours steers it off Flatcar, vap and kyverno deny it, the others
create it). wrk creates them (POST with generateName, a bearer token) over kept-alive connections, one
connection (latency) and several (throughput), for a fixed time after an untimed warm-up; the namespace
is emptied around every run.
Before a set-up is measured the bench waits until the apiserver really uses it (a dry-run create of a
host pod reaches the server, or is denied), and after, until it no longer does.

Per run: wrk's p50/p99 and pods/s; CPU seconds (psutil) of kube-apiserver, etcd and the set-up's webhook
process; the apiserver's own mean time per webhook call (its admission histogram); the webhook's RSS.

Run: `export "$(hack/control-plane.sh | tail -1)"; export "$(hack/kyverno.sh | tail -1)";
.venv/bin/python bench/apiserver.py [--quick] [--rounds R] [--seconds S] [--setups ...] [--json FILE]`.
Without KYVERNO_DIR the kyverno set-up is skipped (with a note).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client as k8s
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import (  # noqa: E402
    LOOPBACK,
    ControlPlane,
    _die_with_parent,
    create_node_pool,
    free_port,
    tail,
    wait_for,
)
from tests.e2e.webhook_fixture import (  # noqa: E402
    WebhookProcess,
    api_message,
    chart_configurations,
    register,
    unregister,
)

NAMESPACE = "bench"
SETUPS = {
    "none": "no webhook",
    "ours": "ours, chart without matchConditions",
    "ours+mc": "ours, chart as shipped (matchConditions)",
    "null": "null webhook (Go stdlib)",
    "floor": "bare starlette+uvicorn (Python floor)",
    "vap": "in-tree ValidatingAdmissionPolicy",
    "kyverno": "Kyverno v1.19 (ClusterPolicy, Enforce)",
}
SERIES = ("clean", "host")
POLICY_NAME = "immutable-os-host-access"
KYVERNO_NAMESPACE = "kyverno"
CACHE = Path(os.environ.get("IMMUTABLE_OS_WEBHOOK_CACHE", Path.home() / ".cache" / "immutable-os-webhook"))
WEBHOOK_CALL = "apiserver_admission_webhook_admission_duration_seconds"
HANDLER = "immutable_os_webhook_review_duration_seconds"

# ---------------------------------------------------------------------------------------------- the pods


def clean_pod() -> dict[str, Any]:
    """A realistic small web pod: labels, one container with ports, probes, resources, env, a non-root
    security context and an emptyDir. No host access."""
    container = {
        "name": "frontend",
        "image": "registry.example.com/shop/frontend:1.14.2",
        "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9102}],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "CART_URL", "value": "http://cart:8080"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "clean-",
            "labels": {"app.kubernetes.io/name": "shop-frontend", "pod-template-hash": "7d4b9c6f8d"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9102"},
        },
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        },
    }


def host_pod() -> dict[str, Any]:
    """A node tool installer: it copies binaries into the host's /usr/local/bin, read-only on the
    immutable OSes, so ours steers it off Flatcar (and vap and kyverno deny it)."""
    container = {
        "name": "installer",
        "image": "registry.example.com/infra/node-tools:2.4.1",
        "command": ["/bin/sh", "-c", "cp /tools/* /host/bin/ && sleep infinity"],
        "resources": {
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
        "volumeMounts": [{"name": "host-bin", "mountPath": "/host/bin"}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "host-", "labels": {"app.kubernetes.io/name": "node-tools"}},
        "spec": {
            "containers": [container],
            "volumes": [
                {"name": "host-bin", "hostPath": {"path": "/usr/local/bin", "type": "DirectoryOrCreate"}}
            ],
        },
    }


PODS: dict[str, Callable[[], dict[str, Any]]] = {"clean": clean_pod, "host": host_pod}

# ------------------------------------------------------------------------------------------ wrk driving

# One thread; the body and token come from the environment; `done` prints one JSON line.
WRK_SCRIPT = """\
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"us":%d,"non2xx":%d,"failed":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def totals(text: str, family: str, webhooks: str = "") -> dict[str, float]:
    """Sample name -> its value summed over label sets, for one metric family of a Prometheus text; with
    `webhooks`, only the samples whose `name` label contains it."""
    out: dict[str, float] = {}
    for parsed in text_string_to_metric_families("\n".join(x for x in text.splitlines() if family in x)):
        for sample in parsed.samples:
            if webhooks in sample.labels.get("name", ""):
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def mean_ms(after: dict[str, float], before: dict[str, float], histogram: str) -> float:
    """Mean of a histogram between two `totals`, in ms (NaN when nothing was observed)."""
    count = after.get(f"{histogram}_count", 0.0) - before.get(f"{histogram}_count", 0.0)
    seconds = after.get(f"{histogram}_sum", 0.0) - before.get(f"{histogram}_sum", 0.0)
    return seconds / count * 1e3 if count else math.nan


@dataclass(frozen=True)
class Load:
    requests: int
    seconds: float
    non2xx: int
    p50_ms: float
    p99_ms: float


def wrk(url: str, script: Path, env: dict[str, str], connections: int, seconds: int) -> Load:
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk is not installed: `make bench-tools` (Debian package wrk)")
    command = [binary, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout=10s", "-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, env=env, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith('{"requests"')), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout[-500:]}")
    raw = json.loads(line)
    if raw["failed"]:
        raise RuntimeError(f"wrk: {raw['failed']} connection errors or timeouts against {url}")
    return Load(raw["requests"], raw["us"] / 1e6, raw["non2xx"], raw["p50_us"] / 1e3, raw["p99_us"] / 1e3)


# ------------------------------------------------------------------------------------- the processes


def insecure_get(url: str, context: ssl.SSLContext | None = None) -> str:
    """GET from a loopback server (the webhooks' own endpoints, not the apiserver); raises on non-2xx."""
    if context is None:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=5, context=context) as answer:
        return str(answer.read().decode())


def answers(url: str, context: ssl.SSLContext | None) -> bool:
    """Whether a loopback HTTPS server answers GET `url` at all (any status)."""
    try:
        insecure_get(url, context)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


@dataclass
class Server:
    """A webhook process we started (not ours: `WebhookProcess` runs that one)."""

    name: str
    popen: subprocess.Popen[bytes]
    url: str

    def wait_ready(self, ready: Callable[[], bool], timeout: float, log: Path) -> None:
        """Until `ready()`; raises at once if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.popen.returncode}:\n{tail(log)}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s:\n{tail(log)}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def spawn(
    name: str, command: Sequence[str], log: Path, url: str, env: dict[str, str] | None = None
) -> Server:
    with log.open("ab") as out:
        popen = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    return Server(name, popen, url)


def null_webhook_binary() -> Path:
    """bench/nullwebhook built with the local Go into the cache, keyed by its source."""
    source = REPO / "bench" / "nullwebhook"
    digest = hashlib.sha256(
        b"".join(p.read_bytes() for p in [*sorted(source.glob("*.go")), source / "go.mod"])
    )
    binary = CACHE / f"nullwebhook-{digest.hexdigest()[:12]}" / "nullwebhook"
    if not binary.exists():
        go = shutil.which("go")
        if go is None:
            raise SystemExit("the null webhook needs Go on PATH (or leave `null` out of --setups)")
        env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"}
        subprocess.run([go, "build", "-o", str(binary), "."], cwd=source, env=env, check=True, timeout=600)
    return binary


@dataclass
class Run:
    setup: str
    series: str
    connections: int
    round: int
    load: Load
    cpu_s: dict[str, float]  # process -> CPU seconds during the timed run
    other_cores: float  # CPU of processes outside the bench, in cores, over the run
    call_ms: float  # the apiserver's mean time per webhook call (NaN: no call)
    calls: float  # webhook calls per create
    handler_ms: float  # our handler's mean time per review (its own histogram; ours only)
    rss_mb: float
    outcome: str


@dataclass
class Bench:
    cp: ControlPlane
    work: Path
    token: str
    kyverno_dir: Path | None
    api: k8s.ApiClient = field(init=False)
    servers: dict[str, Server] = field(default_factory=dict)
    configurations: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.api = self.cp.api_client()
        self.core = k8s.CoreV1Api(self.api)
        self.ours = WebhookProcess(self.cp, "ours", {}, extra_args=["--log-level=info"])
        self.hook_ctx = ssl.create_default_context(cadata=self.ours.ca.cert_pem.decode())
        self.procs = {
            p.name(): p for p in psutil.Process().children() if p.name() in ("etcd", "kube-apiserver")
        }
        self.script = self.work / "create.lua"
        self.script.write_text(WRK_SCRIPT)

    # -- set-up -----------------------------------------------------------------------------------

    def start(self, setups: Sequence[str]) -> None:
        create_node_pool(self.core, "general", 3, os_sku="Ubuntu")
        create_node_pool(self.core, "flatcar", 3, os_sku="Flatcar")
        self.core.create_namespace({"metadata": {"name": NAMESPACE}})
        for series, make in PODS.items():
            (self.work / f"{series}.json").write_text(json.dumps(make(), separators=(",", ":")))
        if {"ours", "ours+mc"} & set(setups):
            self.ours.start()
            self.procs["ours"] = psutil.Process(self.ours._popen.pid)  # type: ignore[union-attr]
            chart = chart_configurations
            self.configurations["ours"] = chart(
                self.ours, values={"webhook": {"skipPodsWithoutHostAccess": False}}
            )
            self.configurations["ours+mc"] = chart(self.ours)
        cert, key = str(self.ours.cert_path), str(self.ours.key_path)
        if "null" in setups:
            port = free_port()
            command = [str(null_webhook_binary()), f"-addr={LOOPBACK}:{port}", f"-cert={cert}", f"-key={key}"]
            self._server("null", command, port)
        if "floor" in setups:  # bench/server.py's ceiling: the bare handler on our serving stack
            port = free_port()
            ceiling = [
                sys.executable,
                str(REPO / "bench" / "server.py"),
                "--role",
                "ceiling",
                "--port",
                str(port),
            ]
            self._server("floor", [*ceiling, "--cert", cert, "--key", key], port)
        if "kyverno" in setups:
            self.start_kyverno()

    def _server(self, name: str, command: list[str], port: int) -> None:
        server = spawn(name, command, self.cp.log_dir / f"{name}.log", f"https://{LOOPBACK}:{port}")
        self.servers[name] = server
        server.wait_ready(lambda: answers(server.url, self.hook_ctx), 60, self.cp.log_dir / f"{name}.log")
        self.procs[name] = psutil.Process(server.popen.pid)
        # The chart's configurations with this server's URL (same certificate as ours).
        stand_in = _Endpoint(server.url, self.ours.ca_bundle, self.ours.dir)
        values = {"webhook": {"skipPodsWithoutHostAccess": False}}
        self.configurations[name] = chart_configurations(stand_in, release=f"bench-{name}", values=values)  # type: ignore[arg-type]

    def start_kyverno(self) -> None:
        """Kyverno's CRDs, its namespace, then the admission controller out of cluster: it makes its own CA
        and serving pair (with an IP SAN for --serverIP) in Secrets and registers its own webhooks."""
        assert self.kyverno_dir is not None
        applied = self.cp.kubectl("apply", "--server-side", "-f", str(self.kyverno_dir / "crds"), timeout=180)
        if applied.returncode != 0:
            raise RuntimeError(f"kubectl apply Kyverno's CRDs: {applied.stderr}")
        self.core.create_namespace({"metadata": {"name": KYVERNO_NAMESPACE}})
        port = free_port()
        secret = f"kyverno-svc.{KYVERNO_NAMESPACE}.svc.kyverno-tls"
        command = [
            str(self.kyverno_dir / "kyverno"),
            f"--kubeconfig={self.cp.kubeconfig_path}",
            f"--serverIP={LOOPBACK}:{port}",
            f"--webhookServerHost={LOOPBACK}",
            f"--webhookServerPort={port}",
            f"--caSecretName={secret}-ca",
            f"--tlsSecretName={secret}-pair",
            f"--metricsHost={LOOPBACK}",
            f"--metricsPort={free_port()}",
            f"--controllerRuntimeMetricsAddress={LOOPBACK}:{free_port()}",
            "--disableLogColor",
        ]
        # What the chart's Deployment sets (cmd/internal and pkg/config read them).
        env = {
            **os.environ,
            "KYVERNO_NAMESPACE": KYVERNO_NAMESPACE,
            "KYVERNO_POD_NAME": "kyverno-admission-controller-bench",
            "KYVERNO_SERVICEACCOUNT_NAME": "kyverno-admission-controller",
            "KYVERNO_ROLE_NAME": "kyverno:admission-controller",
            "KYVERNO_DEPLOYMENT": "kyverno-admission-controller",
            "KYVERNO_SVC": "kyverno-svc",
            "INIT_CONFIG": "kyverno",
            "METRICS_CONFIG": "kyverno-metrics",
        }
        server = spawn("kyverno", command, self.cp.log_dir / "kyverno.log", f"https://{LOOPBACK}:{port}", env)
        self.servers["kyverno"] = server

        def ready() -> bool:  # 200 once its certificates are in place
            with contextlib.suppress(OSError):
                return bool(insecure_get(f"{server.url}/health/readiness") is not None)
            return False

        started = time.monotonic()
        server.wait_ready(ready, 180, self.cp.log_dir / "kyverno.log")
        print(f"kyverno ready in {time.monotonic() - started:.0f}s", flush=True)
        self.procs["kyverno"] = psutil.Process(server.popen.pid)

    def log(self, name: str) -> str:
        return "\n".join((self.cp.log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.ours.stop()
        self.api.close()  # type: ignore[no-untyped-call]

    # -- switching set-ups on and off -------------------------------------------------------------

    def ours_metrics(self) -> dict[str, float]:
        return totals(insecure_get(f"{self.ours.url}/metrics", self.hook_ctx), HANDLER)

    def dry_run_host_pod(self) -> str:
        """What the apiserver does with a host pod now: "allowed" or the denial's message."""
        try:
            self.core.create_namespaced_pod(NAMESPACE, host_pod(), dry_run="All")
        except k8s.ApiException as exc:
            if exc.status in (400, 403, 422):
                return api_message(exc) or str(exc.status)
            raise
        return "allowed"

    def reaches(self) -> bool:
        """Whether the apiserver calls both webhooks of a configuration for a host pod (only one set-up
        is registered at a time)."""
        before = self.webhook_calls().get(f"{WEBHOOK_CALL}_count", 0.0)
        self.dry_run_host_pod()
        return self.webhook_calls().get(f"{WEBHOOK_CALL}_count", 0.0) >= before + 2  # mutate, validate

    def kyverno_pod_webhooks(self) -> list[str]:
        """Kyverno's webhooks that the apiserver would call for a pod create."""
        admission = k8s.AdmissionregistrationV1Api(self.api)
        configs = [*admission.list_validating_webhook_configuration().items]
        configs += admission.list_mutating_webhook_configuration().items
        return [
            hook.name
            for conf in configs
            if conf.metadata.name.startswith("kyverno-resource")
            for hook in conf.webhooks or []
            for rule in hook.rules or []
            if {"pods", "*", "*/*"} & set(rule.resources or [])
            and {"CREATE", "*"} & set(rule.operations or [])
        ]

    def activate(self, setup: str) -> None:
        if setup in self.configurations:
            register(self.api, self.configurations[setup])
            wait_for(self.reaches, timeout=60, message=f"the apiserver to call {setup}")
        elif setup == "vap":
            admission = k8s.AdmissionregistrationV1Api(self.api)
            admission.create_validating_admission_policy(vap_policy())
            admission.create_validating_admission_policy_binding(vap_binding())
            wait_for(lambda: POLICY_NAME in self.dry_run_host_pod(), timeout=60, message="the policy to deny")
        elif setup == "kyverno":
            applied = self.cp.kubectl("apply", "-f", str(REPO / "bench" / "kyverno" / "policy.yaml"))
            if applied.returncode != 0:
                raise RuntimeError(f"kubectl apply the Kyverno policy: {applied.stderr}")
            wait_for(
                lambda: POLICY_NAME in self.dry_run_host_pod(),
                timeout=120,
                message=lambda: "Kyverno to deny:\n" + self.log("kyverno"),
            )
            print(
                f"  kyverno's webhooks for pod creates: {', '.join(self.kyverno_pod_webhooks())}", flush=True
            )

    def deactivate(self, setup: str) -> None:
        if setup in self.configurations:
            unregister(self.api, self.configurations[setup])
            wait_for(lambda: not self.reaches(), timeout=60, message=f"the apiserver to stop calling {setup}")
        elif setup == "vap":
            admission = k8s.AdmissionregistrationV1Api(self.api)
            admission.delete_validating_admission_policy_binding(POLICY_NAME)
            admission.delete_validating_admission_policy(POLICY_NAME)
            wait_for(lambda: self.dry_run_host_pod() == "allowed", timeout=60, message="the policy to go")
        elif setup == "kyverno":
            self.cp.kubectl("delete", "clusterpolicy", POLICY_NAME, "--wait=true", check=True)
            wait_for(
                lambda: self.dry_run_host_pod() == "allowed" and not self.kyverno_pod_webhooks(),
                timeout=120,
                message=lambda: f"Kyverno to drop its pod webhooks ({self.kyverno_pod_webhooks()})",
            )

    # -- measuring --------------------------------------------------------------------------------

    def clear_pods(self) -> None:
        """Delete the bench's pods (again while any is left: one deletecollection may stop short)."""

        def gone() -> bool:
            left = self.core.list_namespaced_pod(NAMESPACE, limit=1)
            if not left.items:
                return True
            self.core.delete_collection_namespaced_pod(
                NAMESPACE, grace_period_seconds=0, _request_timeout=120
            )
            return False

        def describe() -> str:
            left = self.core.list_namespaced_pod(NAMESPACE, limit=1)
            pod = left.items[0].metadata if left.items else None
            return f"the bench's pods to be deleted (a pod left: {pod})"

        wait_for(gone, timeout=180, interval=0.5, message=describe)

    def webhook_calls(self, setup: str = "") -> dict[str, float]:
        """The apiserver's time in calls to the set-up's webhooks so far (_sum, seconds) and their number
        (_count). Kyverno's names contain "kyverno", the chart's "immutable-os.io"; Kyverno, always
        running, calls its own lease webhook now and then."""
        return totals(
            self.cp.get("/metrics"), WEBHOOK_CALL, "kyverno" if setup == "kyverno" else "immutable-os.io"
        )

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: each process of the bench, wrk (the children waited for), the machine."""
        out = {name: sum(p.cpu_times()[:2]) for name, p in self.procs.items()}
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["wrk"] = children.ru_utime + children.ru_stime
        machine = psutil.cpu_times()
        out["machine"] = sum(machine) - machine.idle - machine.iowait
        return out

    def measure(self, setup: str, series: str, connections: int, rnd: int, seconds: int) -> Run:
        url = f"{self.cp.url}/api/v1/namespaces/{NAMESPACE}/pods"
        env = {**os.environ, "BENCH_BODY": str(self.work / f"{series}.json"), "BENCH_TOKEN": self.token}
        wrk(url, self.script, env, connections, 1)  # warm-up, not timed
        self.clear_pods()
        ours = setup.startswith("ours")
        calls0, hook0, cpu0 = self.webhook_calls(setup), self.ours_metrics() if ours else {}, self.cpu()
        load = wrk(url, self.script, env, connections, seconds)
        cpu1, hook1, calls1 = self.cpu(), self.ours_metrics() if ours else {}, self.webhook_calls(setup)
        spent = {k: cpu1[k] - cpu0[k] for k in cpu1}
        bench_cpu = sum(v for k, v in spent.items() if k != "machine")
        pods = self.core.list_namespaced_pod(NAMESPACE, limit=1).items
        if load.non2xx == load.requests:
            outcome = "denied"
        elif pods and "immutable-os.io/steered" in (pods[0].metadata.annotations or {}):
            outcome = "steered"
        else:
            outcome = "created"
        process = self.procs.get("ours" if ours else setup)
        run = Run(
            setup=setup,
            series=series,
            connections=connections,
            round=rnd,
            load=load,
            cpu_s={k: v for k, v in spent.items() if k != "machine"},
            other_cores=max(0.0, spent["machine"] - bench_cpu) / load.seconds,
            call_ms=mean_ms(calls1, calls0, WEBHOOK_CALL),
            calls=(calls1.get(f"{WEBHOOK_CALL}_count", 0.0) - calls0.get(f"{WEBHOOK_CALL}_count", 0.0))
            / max(load.requests, 1),
            handler_ms=mean_ms(hook1, hook0, HANDLER),
            rss_mb=process.memory_info().rss / 2**20 if process else float("nan"),
            outcome=outcome,
        )
        self.clear_pods()
        return run


@dataclass(frozen=True)
class _Endpoint:
    """What `chart_configurations` reads of a webhook: its URL, caBundle and a directory for values."""

    url: str
    ca_bundle: str
    dir: Path


def vap_policy() -> dict[str, Any]:
    """The default checks as CEL. No placement: a pod with host access is denied."""
    checks = {
        "host-path": "!has(object.spec.volumes) || object.spec.volumes.all(v, !has(v.hostPath))",
        "host-pid": "!has(object.spec.hostPID) || object.spec.hostPID != true",
        "host-ipc": "!has(object.spec.hostIPC) || object.spec.hostIPC != true",
        "host-network": "!has(object.spec.hostNetwork) || object.spec.hostNetwork != true",
    }
    rule = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
    not_kube_system = {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
        ]
    }
    return {
        "metadata": {"name": POLICY_NAME},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [rule], "namespaceSelector": not_kube_system},
            "validations": [
                {"expression": cel, "message": f"{name}: not allowed"} for name, cel in checks.items()
            ],
        },
    }


def vap_binding() -> dict[str, Any]:
    return {
        "metadata": {"name": POLICY_NAME},
        "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
    }


# ------------------------------------------------------------------------------------------- reporting


COLUMNS = (("set-up", 8), ("outcome", 8), ("p50", 6), ("p99", 6), ("+p50", 6), ("+p99", 6), ("pods/s", 6),
           ("calls", 5), ("call", 5), ("hdlr", 5), ("hook", 6), ("api", 6), ("etcd", 6), ("RSS", 4),
           ("other", 5))  # fmt: skip
FORMAT = {"pods/s": 0, "RSS": 0, "hook": 3, "api": 3, "etcd": 3}


def summarize(runs: Sequence[Run]) -> dict[str, Any]:
    """Pooled over rounds: the median of each run's p50 and p99, pods/s over the total time, CPU seconds per
    1,000 creates of each process, the largest RSS."""
    creates = sum(r.load.requests for r in runs)
    calls = [r.call_ms for r in runs if not math.isnan(r.call_ms)]
    handled = [r.handler_ms for r in runs if not math.isnan(r.handler_ms)]
    names = sorted({k for r in runs for k in r.cpu_s})
    return {
        "p50_ms": statistics.median(r.load.p50_ms for r in runs),
        "p99_ms": statistics.median(r.load.p99_ms for r in runs),
        "p50_by_round": [round(r.load.p50_ms, 2) for r in runs],
        "pods_per_s": creates / sum(r.load.seconds for r in runs),
        "creates": creates,
        "cpu_s_per_1000": {k: sum(r.cpu_s[k] for r in runs) / creates * 1000 for k in names},
        "call_ms": statistics.median(calls) if calls else math.nan,
        "calls_per_create": sum(r.calls * r.load.requests for r in runs) / creates,
        "handler_ms": statistics.median(handled) if handled else math.nan,
        "rss_mb": max(r.rss_mb for r in runs),
        "other_cores": max(r.other_cores for r in runs),
        "outcome": "/".join(sorted({r.outcome for r in runs})),
    }


def report(runs: Sequence[Run], setups: Sequence[str], connections: Sequence[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for series in SERIES:
        for conns in connections:
            cell = {
                s: summarize([r for r in runs if (r.setup, r.series, r.connections) == (s, series, conns)])
                for s in setups
            }
            out[f"{series}.c{conns}"] = cell
            base = cell["none"]
            print(f"\n{series} pods, {conns} connection(s)")
            print(" ".join(f"{h:>{w}s}" for h, w in COLUMNS), " p50 by round")
            for setup, s in cell.items():
                cpu = s["cpu_s_per_1000"]
                hook = cpu.get("ours" if setup.startswith("ours") else setup, math.nan)
                values = [setup, s["outcome"], s["p50_ms"], s["p99_ms"], s["p50_ms"] - base["p50_ms"],
                          s["p99_ms"] - base["p99_ms"], s["pods_per_s"], s["calls_per_create"], s["call_ms"],
                          s["handler_ms"], hook,
                          cpu["kube-apiserver"], cpu["etcd"], s["rss_mb"], s["other_cores"]]  # fmt: skip
                cells = [f"{v:>{w}s}" if isinstance(v, str) else f"{v:{w}.{FORMAT.get(h, 2)}f}"
                         for v, (h, w) in zip(values, COLUMNS, strict=True)]  # fmt: skip
                print(" ".join(cells), " ", " ".join(f"{x:.2f}" for x in s["p50_by_round"]))
    idle = [r for r in runs if r.setup != "kyverno" and "kyverno" in r.cpu_s]
    if idle:
        cores = sum(r.cpu_s["kyverno"] for r in idle) / sum(r.load.seconds for r in idle)
        out["kyverno_idle_cores"] = cores
        print(f"\nKyverno, running but not in use (no policy), used {cores:.3f} cores during the other runs")
    print(
        "\nms: wrk's latency per create; +p50/+p99 over `none`; calls: webhook calls per create; call: the"
        "\napiserver's mean time per webhook call; hdlr: our handler's mean per review (its own histogram);"
        "\nhook/api/etcd: CPU seconds per 1,000 creates of the webhook process, kube-apiserver, etcd; RSS MiB"
        "\nof the webhook process; other: cores used outside the bench during the runs (worst run)."
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}")
    parser.add_argument("--rounds", type=int, default=3, help="activations of each set-up (default 3)")
    parser.add_argument("--seconds", type=int, default=3, help="length of each timed run (default 3)")
    parser.add_argument("--connections", default="1,8", help="wrk connections per run (default 1,8)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the set-ups' order")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 s")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    setups = [s for s in SETUPS if s in args.setups.split(",")]
    connections = [int(c) for c in args.connections.split(",")]
    if args.quick:
        args.rounds, args.seconds = 1, 1
    unknown = set(args.setups.split(",")) - set(SETUPS)
    if unknown or "none" not in setups:
        parser.error(f"--setups: of {', '.join(SETUPS)}, with none; unknown: {', '.join(sorted(unknown))}")
    if not (1 <= args.rounds <= 10 and 1 <= args.seconds <= 60 and all(1 <= c <= 64 for c in connections)):
        parser.error("--rounds 1..10, --seconds 1..60, --connections 1..64 each")
    kyverno_dir = Path(os.environ["KYVERNO_DIR"]) if os.environ.get("KYVERNO_DIR") else None
    if "kyverno" in setups and (kyverno_dir is None or not (kyverno_dir / "kyverno").exists()):
        print('no Kyverno: skipping it (export "$(hack/kyverno.sh | tail -1)" to build it)', flush=True)
        setups.remove("kyverno")
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="bench-apiserver-") as tmp,
        _bench(Path(tmp), kyverno_dir) as bench,
    ):
        bench.start(setups)
        order = setups.copy()
        random.Random(args.seed).shuffle(order)
        plan = [(s, r + 1) for r in range(args.rounds) for s in (order if r % 2 == 0 else order[::-1])]
        print(
            f"kube-apiserver {bench.cp.version.get('gitVersion')}; order {' '.join(s for s, _ in plan)}",
            flush=True,
        )
        for setup, rnd in plan:
            bench.activate(setup)
            try:
                for series in SERIES:
                    for conns in connections:
                        run = bench.measure(setup, series, conns, rnd, args.seconds)
                        bench.runs.append(run)
                        print(
                            f"  {setup:8s} r{rnd} {series:5s} c{conns}: {run.load.p50_ms:.2f} ms p50, "
                            f"{run.load.requests / run.load.seconds:.0f}/s, {run.outcome}",
                            flush=True,
                        )
            finally:
                bench.deactivate(setup)
        result = report(bench.runs, setups, connections)
    meta = {
        "rounds": args.rounds,
        "seconds": args.seconds,
        "order": [s for s, _ in plan],
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "elapsed_s": round(time.monotonic() - started),
    }
    print(json.dumps(meta))
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": result, "meta": meta}, indent=2))
    return 0


@contextlib.contextmanager
def _bench(work: Path, kyverno_dir: Path | None) -> Iterator[Bench]:
    """A control plane that also accepts a bearer token (wrk cannot present a client certificate)."""
    token = os.urandom(16).hex()
    tokens = work / "tokens.csv"
    tokens.write_text(f'{token},bench-admin,bench-admin,"system:masters"\n')
    with ControlPlane(extra_apiserver_args=[f"--token-auth-file={tokens}"]) as cp:
        bench = Bench(cp, work, token, kyverno_dir)
        try:
            yield bench
        finally:
            bench.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

"""What the webhook costs a real pod create: latency and throughput through a real kube-apiserver.

One control plane (etcd + kube-apiserver from tests/e2e/harness.py, two node pools: general Ubuntu and
Flatcar), one client, these admission configurations measured in the same run:

  a  no webhook, no policy (the apiserver's built-in plugins only);
  b  our MutatingWebhookConfiguration + ValidatingWebhookConfiguration, by URL, at `python -m webhook
     serve` running as a subprocess on 127.0.0.1 (failurePolicy Fail, timeoutSeconds 5, CREATE pods);
  c  an in-tree ValidatingAdmissionPolicy + binding (validationActions [Deny]) whose CEL makes the same
     host-access checks (no hostPath, hostPID/hostIPC/hostNetwork not true). It cannot know placement (so
     it denies what b steers), but it is the cheapest way the apiserver offers to run such checks;
  m  b plus `matchConditions` on both webhooks (CEL: the pod has host access), so the apiserver calls
     neither for a pod without host access: what a prefilter in the chart would buy;
  n  b's two webhook configurations pointing at a null webhook: a stdlib Go HTTPS server (HTTP/1.1, like
     uvicorn) that decodes the review and answers "allowed". The floor of any webhook on this machine:
     n-a is the apiserver's own cost of calling two webhooks, b-n what our server adds. Built with
     `go build` when Go is on PATH (skipped with a note otherwise).

Two series of pods: `clean` (a realistic small pod without host access: allowed by b and c, nothing
steered) and `hostpath` (b steers it away from Flatcar, c denies it; a different amount of work, so
reported apart). Each series is created sequentially and at a small concurrency; each configuration is
activated `--rounds` times in P, reversed P, P... order (P a random permutation) to balance warm-up and
drift; every run starts from an empty namespace (its pods are deleted afterwards), is preceded by
untimed warm-up creates, and waits (bounded) for other processes on the machine to go quiet; the CPU
they used during the run is reported ("other", in cores).

Client: raw `http.client` over HTTPS with keep-alive (one connection per worker thread, opened before
timing), JSON bodies prebuilt as strings: the cheapest client Python has, so client overhead stays small
next to the apiserver. Latency is the client's wall time per create (request sent to response read).

Where the time goes: the apiserver's per-webhook admission histogram
(`apiserver_admission_webhook_admission_duration_seconds`, from its /metrics as admin), its request and
admission-plugin histograms, the webhook's handler histogram (`immutable_os_webhook_review_duration_
seconds`), CPU time per pod of every process (apiserver, etcd, webhook, null webhook, client) from /proc,
the connections opened to the webhook during each run (client ports in /proc/net/tcp), a direct probe
of both webhook servers (the AdmissionReview the apiserver would send, POSTed over a kept-alive TLS
connection back to back, with 3 ms pauses, and over a new connection each time), and optionally Go CPU
profiles of the apiserver during back-to-back sequential creates (`--pprof DIR`).

Run: `export "$(hack/control-plane.sh | tail -1)"; .venv/bin/python bench/apiserver.py [--quick]
[--pods N] [--concurrency K] [--rounds R] [--configs abcmn] [--json FILE] [--pprof DIR]`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import platform
import random
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import ControlPlane, create_node_pool, free_port, wait_for  # noqa: E402
from webhook.adapters.certs import ca_bundle_b64, generate_ca, issue_serving_cert  # noqa: E402

LOOPBACK = "127.0.0.1"
NAMESPACE = "bench"
CONFIG_NAMES = {
    "a": "no webhook",
    "b": "our webhook",
    "c": "in-tree VAP (CEL)",
    "m": "ours+matchConditions",
    "n": "null webhook (Go)",
}
# Webhook configurations -> the server they call.
SERVER_OF = {"b": "b", "m": "b", "n": "n"}
# The checks' triggers as a CEL prefilter for the webhooks (config m): a superset of what the default
# checks flag, so a pod it lets past is one the webhook would have answered "clean" for.
HOST_ACCESS_CEL = (
    "(has(object.spec.hostPID) && object.spec.hostPID) || (has(object.spec.hostIPC) && object.spec.hostIPC)"
    " || (has(object.spec.hostNetwork) && object.spec.hostNetwork)"
    " || (has(object.spec.volumes) && object.spec.volumes.exists(v, has(v.hostPath)))"
)
SERIES = ("clean", "hostpath")
MUTATING_HOOK = "steer.immutable-os.io"
VALIDATING_HOOK = "validate.immutable-os.io"
WEBHOOK_CONFIG_NAME = "immutable-os-webhook"
POLICY_NAME = "immutable-os-host-access"
ADMISSION_API = "/apis/admissionregistration.k8s.io/v1"
# Sequential creates leave the webhook idle ~3 ms between calls; the "paced" probe imitates that.
PROBE_PAUSE_S = 0.003
# Other processes' CPU (in cores) under which the machine counts as quiet enough to measure.
QUIET_CORES = 0.15
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The null webhook. Decoding the review (for its uid) is the least any webhook must do.
NULL_WEBHOOK_GO = r"""package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"strconv"
	"sync/atomic"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	cert := flag.String("cert", "", "serving certificate")
	key := flag.String("key", "", "serving key")
	flag.Parse()
	var count atomic.Int64
	answer := func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Request struct {
				UID string `json:"uid"`
			} `json:"request"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		count.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"` +
			in.Request.UID + `","allowed":true}}`))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/mutate", answer)
	mux.HandleFunc("/validate", answer)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strconv.FormatInt(count.Load(), 10)))
	})
	// HTTP/1.1 only, like uvicorn: the comparison is the server, not the protocol.
	server := &http.Server{Addr: *addr, Handler: mux,
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	log.Fatal(server.ListenAndServeTLS(*cert, *key))
}
"""

# ---------------------------------------------------------------------------------------------- the pods


def clean_pod(name: str) -> dict[str, Any]:
    """A realistic small web pod: labels, one container with ports, probes, resources, env, a non-root
    security context and an emptyDir. No host access."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/name": "shop-frontend",
                "app.kubernetes.io/part-of": "shop",
                "pod-template-hash": "7d4b9c6f8d",
            },
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9102"},
        },
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "frontend",
                    "image": "registry.example.com/shop/frontend:1.14.2",
                    "ports": [
                        {"name": "http", "containerPort": 8080},
                        {"name": "metrics", "containerPort": 9102},
                    ],
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
            ],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        },
    }


def hostpath_pod(name: str) -> dict[str, Any]:
    """A log shipper reading the node's /var/log through a hostPath: b steers it off Flatcar, c denies."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "log-shipper"}},
        "spec": {
            "containers": [
                {
                    "name": "shipper",
                    "image": "registry.example.com/infra/log-shipper:3.2.0",
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"cpu": "200m", "memory": "128Mi"},
                    },
                    "volumeMounts": [{"name": "varlog", "mountPath": "/var/log", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "varlog", "hostPath": {"path": "/var/log", "type": "Directory"}}],
        },
    }


POD_FACTORIES: dict[str, Callable[[str], dict[str, Any]]] = {"clean": clean_pod, "hostpath": hostpath_pod}
NAME_MARK = "__POD_NAME__"


def body_template(series: str) -> str:
    return json.dumps(POD_FACTORIES[series](NAME_MARK), separators=(",", ":"))


def admission_review(pod: Mapping[str, Any]) -> dict[str, Any]:
    """A v1 AdmissionReview for a pod CREATE, shaped like the apiserver's."""
    meta = pod.get("metadata") or {}
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", NAMESPACE),
            "operation": "CREATE",
            "userInfo": {"username": "admin", "groups": ["system:masters", "system:authenticated"]},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


# ----------------------------------------------------------------------------- the admission objects


def webhook_configurations(
    url: str, ca_bundle: str, prefilter: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our MutatingWebhookConfiguration and ValidatingWebhookConfiguration, by URL; with `prefilter`,
    matchConditions let the apiserver skip the call for pods without host access."""

    def hook(name: str, path: str) -> dict[str, Any]:
        conditions = [{"name": "host-access", "expression": HOST_ACCESS_CEL}] if prefilter else []
        return {
            "name": name,
            "clientConfig": {"url": f"{url}{path}", "caBundle": ca_bundle},
            **({"matchConditions": conditions} if conditions else {}),
            "rules": [
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE"],
                    "resources": ["pods"],
                    "scope": "Namespaced",
                }
            ],
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
        }

    mutating = {
        "metadata": {"name": WEBHOOK_CONFIG_NAME},
        "webhooks": [{**hook(MUTATING_HOOK, "/mutate"), "reinvocationPolicy": "Never"}],
    }
    validating = {"metadata": {"name": WEBHOOK_CONFIG_NAME}, "webhooks": [hook(VALIDATING_HOOK, "/validate")]}
    return mutating, validating


def vap_policy() -> dict[str, Any]:
    """The same host-access checks as CEL. No placement: a pod that needs host access is denied."""
    return {
        "metadata": {"name": POLICY_NAME},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "!has(object.spec.volumes) || object.spec.volumes.all(v, !has(v.hostPath))",
                    "message": "host-path: hostPath volumes are not allowed",
                },
                {
                    "expression": "!has(object.spec.hostPID) || object.spec.hostPID != true",
                    "message": "host-pid: hostPID must not be true",
                },
                {
                    "expression": "!has(object.spec.hostIPC) || object.spec.hostIPC != true",
                    "message": "host-ipc: hostIPC must not be true",
                },
                {
                    "expression": "!has(object.spec.hostNetwork) || object.spec.hostNetwork != true",
                    "message": "host-network: hostNetwork must not be true",
                },
            ],
        },
    }


def vap_binding() -> dict[str, Any]:
    return {
        "metadata": {"name": POLICY_NAME},
        "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
    }


# -------------------------------------------------------------------------------------- HTTP, keep-alive


class Conn:
    """One keep-alive HTTPS connection (HTTP/1.1, http.client); reconnects once if the server closed it."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.conn = http.client.HTTPSConnection(LOOPBACK, port, context=context, timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=HEADERS)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, obj: Any = None, ok: Iterable[int] = (200, 201, 202)) -> Any:
        status, data = self.request(method, path, None if obj is None else json.dumps(obj).encode())
        if status not in set(ok):
            raise RuntimeError(f"{method} {path}: HTTP {status}: {data[:400]!r}")
        return json.loads(data) if data else None

    def local_port(self) -> int | None:
        sock = self.conn.sock
        return sock.getsockname()[1] if sock is not None else None

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------------------------ metrics and /proc

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ([^ ]+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

APISERVER_PREFIXES = (
    "apiserver_admission_webhook_admission_duration_seconds",
    "apiserver_admission_controller_admission_duration_seconds",
    "apiserver_request_duration_seconds",
)
WEBHOOK_PREFIXES = ("immutable_os_webhook_review_duration_seconds", "immutable_os_webhook_reviews")


def parse_metrics(text: str, prefixes: Sequence[str]) -> Samples:
    """The samples of the Prometheus text `text` whose names start with one of `prefixes`."""
    out: Samples = {}
    for line in text.splitlines():
        if not line.startswith(tuple(prefixes)):
            continue
        m = _SAMPLE.match(line)
        if m:
            labels = frozenset(_LABEL.findall(m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def delta(after: Samples, before: Samples) -> Samples:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def total(samples: Samples, metric: str, **match: str) -> float:
    return sum(
        v
        for (n, labels), v in samples.items()
        if n == metric and all((k, w) in labels for k, w in match.items())
    )


def mean_ms(samples: Samples, base: str, **match: str) -> float:
    """Mean in ms of histogram `base` over the label sets matching `match` (NaN if it saw nothing)."""
    count = total(samples, f"{base}_count", **match)
    return total(samples, f"{base}_sum", **match) / count * 1000.0 if count else float("nan")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy since boot (user, nice, system, irq, softirq; /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / CLK_TCK


def child_pids(names: Sequence[str]) -> dict[str, int]:
    """Our child processes by command name (the harness starts etcd and kube-apiserver as children)."""
    found: dict[str, int] = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and comm in names:
            found[comm] = int(entry.name)
    return found


def client_ports(port: int) -> set[int]:
    """The client ports of every TCP socket (any state, TIME_WAIT included) with `port` at one end, from
    /proc/net/tcp. Ports new after a run are the connections opened during it."""
    found: set[int] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote = (int(a.rsplit(":", 1)[1], 16) for a in line.split()[1:3])
        if local == port and remote:
            found.add(remote)
        elif remote == port:
            found.add(local)
    return found


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """Linux: the webhook servers get SIGKILL if this process dies without stopping them."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def timed(call: Callable[[], object], n: int, pause: float = 0.0) -> list[float]:
    """Wall times of `n` calls, ms, sorted; with `pause` seconds of sleep before each (not timed)."""
    out = []
    for _ in range(n):
        if pause:
            time.sleep(pause)
        t0 = time.perf_counter_ns()
        call()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return sorted(out)


# ------------------------------------------------------------------------------------- webhook servers


@dataclass
class HookServer:
    """A webhook server subprocess on 127.0.0.1 and one kept-alive connection to it for our own queries
    (so they open no connections that would count as the apiserver's)."""

    config: str
    port: int
    popen: subprocess.Popen[bytes]
    log: Path
    context: ssl.SSLContext
    conn: Conn | None = None

    def get(self, path: str) -> bytes:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{CONFIG_NAMES[self.config]} exited:\n{self.log.read_text()[-2000:]}")
        if self.conn is None:
            self.conn = Conn(self.port, self.context)
        status, data = self.conn.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} on {CONFIG_NAMES[self.config]}: HTTP {status}")
        return data

    def metrics(self) -> Samples:
        return parse_metrics(self.get("/metrics").decode(), WEBHOOK_PREFIXES) if self.config == "b" else {}

    def reviews(self) -> float:
        """Reviews answered so far."""
        if self.config == "b":
            return total(self.metrics(), "immutable_os_webhook_reviews_total")
        return float(self.get("/count"))

    def ready(self) -> bool:
        try:
            self.get("/readyz" if self.config == "b" else "/healthz")
            return True
        except OSError:
            if self.conn is not None:
                self.conn.close()
                self.conn = None
            return False

    def new_client_ports(self) -> set[int]:
        own = self.conn.local_port() if self.conn is not None else None
        return client_ports(self.port) - {own}

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=25)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


# ------------------------------------------------------------------------------------------- the bench


@dataclass
class Run:
    config: str
    round: int
    series: str
    concurrency: int
    latencies_ms: list[float]
    wall_s: float
    statuses: dict[int, int]
    steered: int
    cpu_ms_per_pod: dict[str, float]
    apiserver: Samples = field(repr=False)
    webhook: Samples = field(repr=False)
    new_connections: int = 0
    other_load: float = 0.0  # cores busy with processes not in this bench, on average over the run

    @property
    def pods_per_s(self) -> float:
        return len(self.latencies_ms) / self.wall_s


class Bench:
    def __init__(self, cp: ControlPlane, args: argparse.Namespace, work: Path) -> None:
        self.cp, self.args, self.work = cp, args, work
        self.api_ctx = cp.ssl_context()
        self.ctl = Conn(cp.port, self.api_ctx)
        self.pids = child_pids(["etcd", "kube-apiserver"])
        self.ca = generate_ca("bench-webhook-ca")
        serving = issue_serving_cert(self.ca, "immutable-os-webhook", NAMESPACE, ips=[LOOPBACK])
        self.cert_file, self.key_file = work / "tls.crt", work / "tls.key"
        self.cert_file.write_bytes(serving.cert_pem)
        self.key_file.write_bytes(serving.key_pem)
        self.key_file.chmod(0o600)
        self.hook_ctx = ssl.create_default_context(cadata=self.ca.cert_pem.decode())
        self.servers: dict[str, HookServer] = {}
        self.runs: list[Run] = []
        self.probe: dict[str, float] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        self._seq = itertools.count()

    # -- setup -------------------------------------------------------------------------------------

    def setup_cluster(self) -> None:
        api = self.cp.api_client()
        try:
            create_node_pool(api, "general", 3, os_sku="Ubuntu")
            create_node_pool(api, "flatcar", 3, os_sku="Flatcar")
        finally:
            api.close()
        self.ctl.json("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})

    def _start(self, config: str, cmd: list[str], name: str) -> None:
        log = self.work / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                cmd,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        port = int(cmd[cmd.index("--port") + 1]) if "--port" in cmd else int(cmd[-1].rsplit(":", 1)[1])
        server = HookServer(config, port, popen, log, self.hook_ctx)
        self.servers[config] = server
        self.pids[name] = popen.pid
        wait_for(server.ready, timeout=30, message=f"{CONFIG_NAMES[config]} to be ready")

    def start_webhook(self) -> None:
        """`python -m webhook serve` with the default config, watching this control plane."""
        port = free_port()
        cmd = [sys.executable, "-m", "webhook", "serve", "--cert-file", str(self.cert_file)]
        cmd += ["--key-file", str(self.key_file), "--kubeconfig", str(self.cp.kubeconfig_path)]
        cmd += ["--log-level", self.args.webhook_log_level, "--host", LOOPBACK, "--port", str(port)]
        self._start("b", cmd, "webhook")

    def start_null_webhook(self) -> bool:
        """Build and start the Go null webhook; False (with the reason printed) if Go is unavailable."""
        go = shutil.which("go")
        if go is None:
            print("no go on PATH: skipping the null webhook (n)", flush=True)
            return False
        source, binary = self.work / "nullhook.go", self.work / "nullhook"
        source.write_text(NULL_WEBHOOK_GO)
        env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GO111MODULE": "off"}
        built = subprocess.run(
            [go, "build", "-o", str(binary), str(source)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if built.returncode != 0:
            print(f"go build failed, skipping the null webhook (n):\n{built.stderr[-1000:]}", flush=True)
            return False
        cmd = [str(binary), "-cert", str(self.cert_file), "-key", str(self.key_file)]
        self._start("n", [*cmd, "-addr", f"{LOOPBACK}:{free_port()}"], "nullhook")
        return True

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.ctl.close()

    # -- the configurations ------------------------------------------------------------------------

    def _dry_run_hostpath(self) -> tuple[int, dict[str, Any]]:
        body = json.dumps(hostpath_pod(f"probe-{next(self._seq)}")).encode()
        status, data = self.ctl.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods?dryRun=All", body)
        return status, json.loads(data) if data else {}

    def _calls(self, server: HookServer) -> tuple[float, bool]:
        """(reviews the server answered, steered) for one dry-run create of the hostPath pod."""
        before = server.reviews()
        status, pod = self._dry_run_hostpath()
        steered = status == 201 and bool((pod.get("spec") or {}).get("affinity"))
        return server.reviews() - before, steered

    def activate(self, config: str) -> None:
        if config in SERVER_OF:
            server = self.servers[SERVER_OF[config]]
            mutating, validating = webhook_configurations(
                f"https://{LOOPBACK}:{server.port}", ca_bundle_b64(self.ca.cert_pem), prefilter=config == "m"
            )
            self.ctl.json("POST", f"{ADMISSION_API}/mutatingwebhookconfigurations", mutating)
            self.ctl.json("POST", f"{ADMISSION_API}/validatingwebhookconfigurations", validating)

            def called() -> bool:  # both webhooks, and for ours the steering patch applied
                reviews, steered = self._calls(server)
                return reviews >= 2 and (steered or config == "n")

            wait_for(called, timeout=30, message=f"the apiserver calling the {CONFIG_NAMES[config]}")
        elif config == "c":
            self.ctl.json("POST", f"{ADMISSION_API}/validatingadmissionpolicies", vap_policy())
            self.ctl.json("POST", f"{ADMISSION_API}/validatingadmissionpolicybindings", vap_binding())
            wait_for(
                lambda: self._dry_run_hostpath()[0] in (403, 422), timeout=30, message="the policy denying"
            )

    def deactivate(self, config: str) -> None:
        if config in SERVER_OF:
            server = self.servers[SERVER_OF[config]]
            self.ctl.json("DELETE", f"{ADMISSION_API}/mutatingwebhookconfigurations/{WEBHOOK_CONFIG_NAME}")
            self.ctl.json("DELETE", f"{ADMISSION_API}/validatingwebhookconfigurations/{WEBHOOK_CONFIG_NAME}")
            wait_for(lambda: self._calls(server) == (0, False), timeout=30, message="the webhooks going away")
        elif config == "c":
            self.ctl.json("DELETE", f"{ADMISSION_API}/validatingadmissionpolicybindings/{POLICY_NAME}")
            self.ctl.json("DELETE", f"{ADMISSION_API}/validatingadmissionpolicies/{POLICY_NAME}")
            wait_for(lambda: self._dry_run_hostpath()[0] == 201, timeout=30, message="the policy going away")

    # -- measuring ---------------------------------------------------------------------------------

    def _snapshot(self, config: str, cpu_first: bool) -> tuple[Samples, Samples, dict[str, float], set[int]]:
        """Both servers' metrics, CPU seconds of every process ("client" is this one), and the client
        ports to the active webhook. CPU is read last before a run and first after it, so the (costly)
        /metrics scrapes stay out of the CPU figures."""
        first = self._cpu() if cpu_first else None
        apiserver = parse_metrics(self.cp.get("/metrics", timeout=30), APISERVER_PREFIXES)
        webhook = self.servers["b"].metrics()
        ports = self.servers[SERVER_OF[config]].new_client_ports() if config in SERVER_OF else set()
        return apiserver, webhook, first or self._cpu(), ports

    def _cpu(self) -> dict[str, float]:
        ours = {name: cpu_seconds(pid) for name, pid in self.pids.items()} | {"client": time.process_time()}
        return ours | {"machine": machine_busy_seconds()}

    def _other_load(self, before: dict[str, float], after: dict[str, float], wall: float) -> float:
        """Cores other processes kept busy between two `_cpu` readings `wall` seconds apart."""
        ours = sum(after[k] - before[k] for k in before if k != "machine")
        return max(0.0, (after["machine"] - before["machine"] - ours) / wall)

    def wait_quiet(self) -> None:
        """Wait (at most --quiet-timeout seconds) until other processes use under QUIET_CORES of CPU over
        a second: this machine is shared, and their load would land in our figures."""
        deadline = time.monotonic() + self.args.quiet_timeout
        waited = 0
        while time.monotonic() < deadline:
            before, t0 = self._cpu(), time.monotonic()
            time.sleep(1.0)
            load = self._other_load(before, self._cpu(), time.monotonic() - t0)
            if load < QUIET_CORES:
                if waited:
                    print(f"  (waited {waited}s for other load to settle)", flush=True)
                return
            waited += 1
        if self.args.quiet_timeout:
            print(
                f"  (other processes still busy after {self.args.quiet_timeout}s; measuring anyway)",
                flush=True,
            )

    def clear_pods(self) -> None:
        path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        self.ctl.json("DELETE", f"{path}?gracePeriodSeconds=0")
        wait_for(
            lambda: not self.ctl.json("GET", f"{path}?limit=1")["items"],
            timeout=60,
            message="the bench pods to be deleted",
        )

    def creates(
        self, series: str, n: int, concurrency: int, prefix: str
    ) -> tuple[list[float], float, dict[int, int], int]:
        """Create `n` pods with `concurrency` workers, each on its own keep-alive connection opened
        beforehand. Returns latencies (ms, in order), wall seconds, status counts, and how many were
        steered."""
        template = body_template(series)
        path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        conns = [Conn(self.cp.port, self.api_ctx) for _ in range(concurrency)]
        for conn in conns:
            conn.request("GET", "/version")
        latencies = [0.0] * n
        statuses = [0] * n
        steered = [False] * n
        counter = itertools.count()
        barrier = threading.Barrier(concurrency + 1)

        def worker(conn: Conn) -> None:
            barrier.wait()
            while (i := next(counter)) < n:
                body = template.replace(NAME_MARK, f"{prefix}-{i}").encode()
                t0 = time.perf_counter_ns()
                status, data = conn.request("POST", path, body)
                latencies[i] = (time.perf_counter_ns() - t0) / 1e6
                statuses[i] = status
                steered[i] = b'"nodeAffinity"' in data

        threads = [threading.Thread(target=worker, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        for conn in conns:
            conn.close()
        counts: dict[int, int] = {}
        for s in statuses:
            counts[s] = counts.get(s, 0) + 1
        return latencies, wall, counts, sum(steered)

    def measure(self, config: str, rnd: int, series: str, concurrency: int) -> Run:
        n = self.args.pods
        tag = f"{config}{rnd}-{series[0]}{concurrency}"
        self.wait_quiet()
        self.creates(series, max(10, n // 10), concurrency, f"warm-{tag}")
        api0, hook0, cpu0, ports0 = self._snapshot(config, cpu_first=False)
        latencies, wall, statuses, steered = self.creates(series, n, concurrency, tag)
        api1, hook1, cpu1, ports1 = self._snapshot(config, cpu_first=True)
        self.clear_pods()
        cpu = {name: (cpu1[name] - cpu0[name]) * 1000.0 / n for name in cpu0 if name != "machine"}
        run = Run(
            config,
            rnd,
            series,
            concurrency,
            latencies,
            wall,
            statuses,
            steered,
            cpu,
            delta(api1, api0),
            delta(hook1, hook0),
            len(ports1 - ports0),
            self._other_load(cpu0, cpu1, wall),
        )
        lat = sorted(latencies)
        print(
            f"  {config} round {rnd} {series:8s} c={concurrency}: p50 {percentile(lat, 0.5):6.2f} ms "
            f"p99 {percentile(lat, 0.99):6.2f} ms {run.pods_per_s:7.1f} pods/s statuses {statuses}"
            + (f" steered {steered}" if steered else "")
            + (f" new webhook connections {run.new_connections}" if config in SERVER_OF else "")
            + f" other load {run.other_load:.2f} cores",
            flush=True,
        )
        return run

    def run_configuration(self, config: str, rnd: int) -> None:
        self.activate(config)
        try:
            for series in SERIES:
                for concurrency in (1, self.args.concurrency):
                    self.runs.append(self.measure(config, rnd, series, concurrency))
        finally:
            self.deactivate(config)

    # -- the webhook servers alone -----------------------------------------------------------------

    def probe_servers(self) -> None:
        """POST the AdmissionReview the apiserver would send straight to each webhook server, over one
        kept-alive TLS connection back to back ("hot"), the same with a pause before each request like the
        gaps between calls in a sequential create ("paced"), and over a new connection each time (what
        no connection reuse would cost). Our handler's own mean comes from its histogram."""
        n = max(50, self.args.pods)
        handler = "immutable_os_webhook_review_duration_seconds"
        for series in SERIES:
            self.wait_quiet()
            body = json.dumps(POD_FACTORIES[series](f"review-{series}")).encode()
            _, data = self.ctl.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods?dryRun=All", body)
            review = json.dumps(admission_review(json.loads(data))).encode()
            self.probe[f"review_bytes.{series}"] = len(review)
            for config, server in self.servers.items():
                for endpoint in ("mutate", "validate"):
                    key = f"{config}.{series}.{endpoint}"
                    conn = Conn(server.port, self.hook_ctx)
                    answers: list[tuple[int, bytes]] = []
                    post = self._poster(conn, endpoint, review, answers)
                    try:
                        timed(post, 20)
                        for mode, pause in (("hot", 0.0), ("paced", PROBE_PAUSE_S)):
                            before = server.metrics()
                            latencies = timed(post, n, pause)
                            own = mean_ms(delta(server.metrics(), before), handler, endpoint=endpoint)
                            self.probe[f"{key}.{mode}_p50"] = percentile(latencies, 0.5)
                            self.probe[f"{key}.{mode}_p99"] = percentile(latencies, 0.99)
                            if config == "b":
                                self.probe[f"{key}.{mode}_handler_mean"] = own
                    finally:
                        conn.close()
                    if any(status != 200 for status, _ in answers):
                        raise RuntimeError(f"{config} /{endpoint}: {answers[-1]!r:.300}")
                    self.probe[f"response_bytes.{key}"] = len(answers[-1][1])
                    fresh = self._fresh_poster(server.port, endpoint, review)
                    self.probe[f"{key}.new_connection_p50"] = percentile(timed(fresh, max(20, n // 5)), 0.5)

    @staticmethod
    def _poster(
        conn: Conn, endpoint: str, review: bytes, answers: list[tuple[int, bytes]]
    ) -> Callable[[], None]:
        def post() -> None:
            answers.append(conn.request("POST", f"/{endpoint}", review))

        return post

    def _fresh_poster(self, port: int, endpoint: str, review: bytes) -> Callable[[], None]:
        def post() -> None:
            conn = Conn(port, self.hook_ctx)
            try:
                conn.request("POST", f"/{endpoint}", review)
            finally:
                conn.close()

        return post

    # -- CPU profiles of the apiserver -------------------------------------------------------------

    def profile_apiserver(self, out_dir: Path, seconds: int, configs: Sequence[str]) -> None:
        """A Go CPU profile of kube-apiserver (/debug/pprof/profile) while clean pods are created
        sequentially, per configuration; compare with `go tool pprof -top -cum`. Also one long
        uninterrupted sequential run per configuration, back to back: its mean latency is a second view."""
        out_dir.mkdir(parents=True, exist_ok=True)
        for config in configs:
            self.activate(config)
            self.wait_quiet()
            result: dict[str, Any] = {}
            try:
                self.creates("clean", 20, 1, f"pprof-warm-{config}")

                def fetch(result: dict[str, Any] = result) -> None:
                    conn = Conn(self.cp.port, self.api_ctx)
                    try:
                        result["answer"] = conn.request("GET", f"/debug/pprof/profile?seconds={seconds}")
                    finally:
                        conn.close()

                thread = threading.Thread(target=fetch)
                thread.start()
                latencies: list[float] = []
                for chunk in range(seconds * 160):  # bounded: stops with the profile, at most 4000 pods/s
                    if not thread.is_alive():
                        break
                    latencies += self.creates("clean", 25, 1, f"pprof-{config}-{chunk}")[0]
                thread.join(timeout=seconds + 30)
                self.clear_pods()
            finally:
                self.deactivate(config)
            status, data = result.get("answer", (0, b""))
            if status != 200:
                raise RuntimeError(f"apiserver profile: HTTP {status}: {data[:200]!r}")
            path = out_dir / f"apiserver-{config}.pprof"
            path.write_bytes(data)
            lat = sorted(latencies)
            self.profiles[config] = {
                "path": str(path),
                "pods": len(lat),
                "seconds": seconds,
                "mean_ms": sum(lat) / len(lat),
                "p50_ms": percentile(lat, 0.5),
            }
            print(
                f"  apiserver profile {config}: {len(lat)} clean pods in {seconds}s, mean "
                f"{sum(lat) / len(lat):.2f} ms, p50 {percentile(lat, 0.5):.2f} ms -> {path}",
                flush=True,
            )


# ------------------------------------------------------------------------------------------- reporting


def chosen(runs: Sequence[Run], config: str, series: str, concurrency: int) -> list[Run]:
    return [r for r in runs if (r.config, r.series, r.concurrency) == (config, series, concurrency)]


def pooled(runs: Sequence[Run]) -> dict[str, Any]:
    lat = sorted(x for r in runs for x in r.latencies_ms)
    wall = sum(r.wall_s for r in runs)
    return {
        "n": len(lat),
        "p50": percentile(lat, 0.5),
        "p90": percentile(lat, 0.9),
        "p99": percentile(lat, 0.99),
        "pods_per_s": len(lat) / wall if wall else float("nan"),
        "p50_by_round": [
            percentile(sorted(r.latencies_ms), 0.5) for r in sorted(runs, key=lambda r: r.round)
        ],
        "statuses": {
            str(k): sum(r.statuses.get(k, 0) for r in runs) for k in {k for r in runs for k in r.statuses}
        },
        "steered": sum(r.steered for r in runs),
        "other_load_max": max((r.other_load for r in runs), default=0.0),
    }


def summed(runs: Sequence[Run], attr: str) -> Samples:
    out: Samples = {}
    for r in runs:
        for k, v in getattr(r, attr).items():
            out[k] = out.get(k, 0.0) + v
    return out


def breakdown(runs: Sequence[Run]) -> dict[str, Any]:
    """Means per pod over `runs`: apiserver-side (request, plugins, each webhook call), our webhook's
    handler, CPU per process."""
    api, hook = summed(runs, "apiserver"), summed(runs, "webhook")
    plugin = "apiserver_admission_controller_admission_duration_seconds"
    call = "apiserver_admission_webhook_admission_duration_seconds"
    handler = "immutable_os_webhook_review_duration_seconds"
    request = mean_ms(api, "apiserver_request_duration_seconds", verb="POST", resource="pods", subresource="")
    names = sorted({k for r in runs for k in r.cpu_ms_per_pod})
    return {
        "request_server_ms": request,
        "mutating_plugin_ms": mean_ms(api, plugin, name="MutatingAdmissionWebhook"),
        "validating_plugin_ms": mean_ms(api, plugin, name="ValidatingAdmissionWebhook"),
        "vap_plugin_ms": mean_ms(api, plugin, name="ValidatingAdmissionPolicy"),
        "call_mutate_ms": mean_ms(api, call, name=MUTATING_HOOK),
        "call_validate_ms": mean_ms(api, call, name=VALIDATING_HOOK),
        "handler_mutate_ms": mean_ms(hook, handler, endpoint="mutate"),
        "handler_validate_ms": mean_ms(hook, handler, endpoint="validate"),
        "cpu_ms_per_pod": {k: sum(r.cpu_ms_per_pod.get(k, 0.0) for r in runs) / len(runs) for k in names},
        "new_webhook_connections": sum(r.new_connections for r in runs),
    }


def report(bench: Bench, args: argparse.Namespace, configs: Sequence[str], started: float) -> dict[str, Any]:
    runs, conc = bench.runs, args.concurrency
    cells = [(s, c) for s in SERIES for c in (1, conc)]
    out: dict[str, Any] = {"table": {}, "ratios": {}, "breakdown": {}, "probe": bench.probe}
    print(
        f"\n{'config':22s} {'series':9s} {'conc':>4s} {'n':>5s} {'p50 ms':>7s} {'p99 ms':>7s} {'pods/s':>7s}"
        f" {'other':>6s}   p50 by round"
    )
    for series, concurrency in cells:
        for config in configs:
            s = pooled(chosen(runs, config, series, concurrency))
            out["table"][f"{config}.{series}.c{concurrency}"] = s
            print(
                f"{config + ' ' + CONFIG_NAMES[config]:22s} {series:9s} {concurrency:4d} {s['n']:5d} "
                f"{s['p50']:7.2f} {s['p99']:7.2f} {s['pods_per_s']:7.1f} {s['other_load_max']:6.2f}   "
                + " / ".join(f"{x:.2f}" for x in s["p50_by_round"])
            )

    extra = [c for c in ("n", "m") if c in configs]
    print(
        f"\n{'series':9s} {'conc':>4s} {'b-a p50':>8s} {'b/a p50':>8s} {'b/c p50':>8s} {'b/a tput':>9s} "
        f"{'b/c tput':>9s}" + "".join(f" {c + '-a p50':>8s}" for c in extra)
    )
    for series, concurrency in cells:
        t = {c: out["table"][f"{c}.{series}.c{concurrency}"] for c in configs}
        r = {
            "b_minus_a_p50_ms": t["b"]["p50"] - t["a"]["p50"],
            "b_over_a_p50": t["b"]["p50"] / t["a"]["p50"],
            "b_over_c_p50": t["b"]["p50"] / t["c"]["p50"],
            "b_over_a_pods_per_s": t["b"]["pods_per_s"] / t["a"]["pods_per_s"],
            "b_over_c_pods_per_s": t["b"]["pods_per_s"] / t["c"]["pods_per_s"],
        }
        for c in extra:
            r[f"{c}_minus_a_p50_ms"] = t[c]["p50"] - t["a"]["p50"]
        out["ratios"][f"{series}.c{concurrency}"] = r
        print(
            f"{series:9s} {concurrency:4d} {r['b_minus_a_p50_ms']:8.2f} {r['b_over_a_p50']:8.2f} "
            f"{r['b_over_c_p50']:8.2f} {r['b_over_a_pods_per_s']:9.2f} {r['b_over_c_pods_per_s']:9.2f}"
            + "".join(f" {r[c + '_minus_a_p50_ms']:8.2f}" for c in extra)
        )

    print(
        "\nwhere the time goes, ms per pod (means): apiserver request (server side), its admission plugins,"
    )
    print("its calls to each webhook, our handler (its own histogram), CPU per process")
    print(
        f"{'series':9s} {'conc':>4s} {'cfg':>3s} {'request':>8s} {'mutPlug':>8s} {'valPlug':>8s} "
        f"{'vapPlug':>8s} {'callMut':>8s} {'callVal':>8s} {'hdlMut':>7s} {'hdlVal':>7s} {'cpuApi':>7s} "
        f"{'cpuEtcd':>7s} {'cpuHook':>7s} {'cpuCli':>7s} {'newConn':>7s}"
    )
    for series, concurrency in cells:
        for config in configs:
            b = breakdown(chosen(runs, config, series, concurrency))
            out["breakdown"][f"{config}.{series}.c{concurrency}"] = b
            cpu = b["cpu_ms_per_pod"]
            hook_cpu = cpu.get("webhook" if config != "n" else "nullhook", 0.0)
            print(
                f"{series:9s} {concurrency:4d} {config:>3s} {b['request_server_ms']:8.3f} "
                f"{b['mutating_plugin_ms']:8.3f} {b['validating_plugin_ms']:8.3f} {b['vap_plugin_ms']:8.3f} "
                f"{b['call_mutate_ms']:8.3f} {b['call_validate_ms']:8.3f} {b['handler_mutate_ms']:7.3f} "
                f"{b['handler_validate_ms']:7.3f} {cpu.get('kube-apiserver', 0):7.3f} "
                f"{cpu.get('etcd', 0):7.3f} {hook_cpu:7.3f} {cpu.get('client', 0):7.3f} "
                f"{b['new_webhook_connections']:7d}"
            )

    print("\ndirect probe of the webhook servers (ms; review and answer sizes in bytes):")
    for key, value in bench.probe.items():
        print(f"  {key:44s} {value:9.3f}" if isinstance(value, float) else f"  {key:44s} {value:9d}")
    out["profiles"] = bench.profiles
    for config, profile in bench.profiles.items():
        print(
            f"apiserver profile {config}: {profile['path']} ({profile['pods']} pods, "
            f"mean {profile['mean_ms']:.2f} ms, p50 {profile['p50_ms']:.2f} ms)"
        )
    if bench.profiles:
        print("  read: go tool pprof -top -cum FILE | grep -E 'webhook|Dispatch|rest..Request|gcBgMark'")
    out["meta"] = {
        "pods": args.pods,
        "concurrency": conc,
        "rounds": args.rounds,
        "order": args.order_used,
        "kubernetes": bench.cp.version.get("gitVersion"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "webhook_log_level": args.webhook_log_level,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(f"\n{json.dumps(out['meta'])}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pods", type=int, default=300, help="timed creates per run (default 300)")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="workers for the concurrent runs (default 8)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="activations of each configuration (default 2)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the configuration order")
    parser.add_argument("--quick", action="store_true", help="smoke run: 40 pods, concurrency 4")
    parser.add_argument(
        "--configs", default="abcmn", help="configurations to measure, a b c required (default abcmn)"
    )
    parser.add_argument(
        "--webhook-log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the webhook's --log-level (default info, as shipped)",
    )
    parser.add_argument(
        "--quiet-timeout",
        type=int,
        default=120,
        help="before each run, wait up to this many seconds for other processes to go quiet (0: don't)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--pprof", metavar="DIR", help="save kube-apiserver CPU profiles of each configuration in DIR"
    )
    parser.add_argument("--pprof-seconds", type=int, default=10, help="length of each profile (default 10)")
    args = parser.parse_args(argv)
    if args.quick:
        args.pods, args.concurrency = 40, 4
    if not (1 <= args.pods <= 5000 and 1 <= args.concurrency <= 32 and 1 <= args.rounds <= 6):
        parser.error("--pods 1..5000, --concurrency 1..32, --rounds 1..6")
    if not set("abc") <= set(args.configs) <= set(CONFIG_NAMES) or len(set(args.configs)) != len(
        args.configs
    ):
        parser.error(f"--configs: letters of {''.join(CONFIG_NAMES)}, each once, with a, b and c")
    if not 0 <= args.quiet_timeout <= 1800:
        parser.error("--quiet-timeout 0..1800")
    if not 2 <= args.pprof_seconds <= 60:
        parser.error("--pprof-seconds 2..60")
    started = time.monotonic()
    with ControlPlane() as cp, tempfile.TemporaryDirectory(prefix="bench-apiserver-") as tmp:
        bench = Bench(cp, args, Path(tmp))
        try:
            bench.setup_cluster()
            bench.start_webhook()
            configs = [c for c in CONFIG_NAMES if c in args.configs]
            if "n" in configs and not bench.start_null_webhook():
                configs.remove("n")
            first = list(configs)
            random.Random(args.seed).shuffle(first)
            order = [(c, r + 1) for r in range(args.rounds) for c in (first if r % 2 == 0 else first[::-1])]
            args.order_used = "".join(c for c, _ in order)
            print(
                f"kube-apiserver {cp.version.get('gitVersion')} on {cp.url}; order {args.order_used}",
                flush=True,
            )
            for config, rnd in order:
                bench.run_configuration(config, rnd)
            bench.probe_servers()
            if args.pprof:
                bench.profile_apiserver(Path(args.pprof), args.pprof_seconds, configs)
            result = report(bench, args, configs, started)
        finally:
            bench.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

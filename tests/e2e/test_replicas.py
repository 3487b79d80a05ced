"""Two webhook replicas behind HAProxy, through a real kube-apiserver: a rolling restart loses no create, and a
SIGKILL loses at most the calls that were in flight on the killed replica.

HAProxy (the Debian package; `.ci/run` installs it) stands in for the webhook's Service: TCP mode, so TLS
goes through to the replicas as it does through kube-proxy, round robin over the replicas its health
checks (GET /readyz over TLS) find up, and a connection that a replica refuses goes to the other one
(`option redispatch`). The webhook configurations point at HAProxy with failurePolicy Fail, so a call
that is lost is a create that fails. A rolling restart does what Kubernetes does to each pod in turn: the
endpoint goes (HAProxy's runtime API puts the server in `drain`: no new connections, open ones stay),
the preStop sleep, SIGTERM (the replica drains: `Connection: close` on every answer until its
connections are gone), exit, a new process on the same port, back in service once its health checks
pass. The control plane is this module's own (no scheduler, so 1,000 pods cost etcd writes only).
``E2E_REPLICA_CREATES`` sets the number of creates of each test (default 1,000; 300 for the SIGKILL).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from .harness import LOOPBACK, ControlPlane, _die_with_parent, create_node_pool, free_port, tail, wait_for
from .webhook_fixture import SESSION_CONFIG, WebhookProcess, api_message, register, unregister, webhook_entry

CREATES = int(os.environ.get("E2E_REPLICA_CREATES", "1000"))
KILL_CREATES = max(100, CREATES * 3 // 10)
#: The rolling restart's creates are spread over this long at least (two restarts take ~15 s).
ROLL_SECONDS = float(os.environ.get("E2E_REPLICA_ROLL_SECONDS", "20"))
CREATORS = 6
DRAIN = ("--drain-seconds", "3")
PRE_STOP_SECONDS = 1.0  # HAProxy stops new connections at once; a cluster's endpoints need longer
HEALTH_CHECK = "inter 300ms fall 2 rise 2"
IMAGE = "registry.k8s.io/pause:3.10"
# A failed call as the apiserver words it: lost in a connection that broke (the replica died under it).
BROKEN = re.compile(r": EOF|unexpected EOF|connection reset by peer|broken pipe")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


@pytest.fixture(scope="module")
def haproxy_binary() -> str:
    found = shutil.which("haproxy")
    if found is None:
        message = ("these tests need HAProxy in front of the replicas: apt-get install haproxy "
                   "(.ci/run installs it when it is missing)")  # fmt: skip
        if _in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def plane(assets_dir: Path, haproxy_binary: str) -> Iterator[ControlPlane]:
    with ControlPlane(assets_dir) as cp:
        core = k8s.CoreV1Api(cp.api_client())
        create_node_pool(core, "general", 2)
        create_node_pool(core, "acl", 2, os_sku="AzureContainerLinux")
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="load")))
        yield cp


# ------------------------------------------------------------------------------------------- HAProxy


class HAProxy:
    """HAProxy in the foreground on a free loopback port, TCP mode, round robin over `backends` (name ->
    port) with TLS health checks on /readyz; its runtime API on a Unix socket."""

    def __init__(self, binary: str, directory: Path, backends: dict[str, int]) -> None:
        self.port = free_port()
        self.url = f"https://{LOOPBACK}:{self.port}"
        self.socket_path = directory / "haproxy.sock"
        self.log_path = directory / "haproxy.log"
        servers = "\n".join(f"  server {name} {LOOPBACK}:{port}" for name, port in backends.items())
        config = directory / "haproxy.cfg"
        config.write_text(f"""\
global
  maxconn 4096
  stats socket {self.socket_path} mode 600 level admin

defaults
  mode tcp
  timeout connect 2s
  # Longer than the apiserver keeps an idle connection (90 s): the balancer never closes one under it.
  timeout client 5m
  timeout server 5m
  retries 3
  option redispatch

frontend webhook
  bind {LOOPBACK}:{self.port}
  default_backend replicas

backend replicas
  balance roundrobin
  option httpchk
  http-check send meth GET uri /readyz
  http-check expect status 200
  default-server check check-ssl verify none {HEALTH_CHECK}
{servers}
""")
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen([binary, "-f", str(config), "-db"], stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)  # fmt: skip
        wait_for(lambda: self.status() == dict.fromkeys(backends, "UP"), timeout=15,
                 message=lambda: f"HAProxy to see every replica up; {self.describe()}")  # fmt: skip

    def command(self, line: str) -> str:
        """One runtime API command; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict[str, str]]:
        """`show stat` of the backend's servers, by server name."""
        rows = csv.DictReader(io.StringIO(self.command("show stat").lstrip("# ")))
        return {r["svname"]: r for r in rows if r["pxname"] == "replicas" and r["svname"] not in ("BACKEND",)}

    def status(self) -> dict[str, str]:
        return {name: row["status"] for name, row in self.stats().items()}

    def set_state(self, server: str, state: str) -> None:
        """`ready`, `drain` (no new connections, open ones stay) or `maint`."""
        answer = self.command(f"set server replicas/{server} state {state}")
        assert answer.strip() == "", answer

    def describe(self) -> str:
        alive = "running" if self.popen.poll() is None else f"exited {self.popen.returncode}"
        return f"haproxy {alive}; log:\n{tail(self.log_path, 20)}"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self._log.close()


@dataclass
class Replicas:
    a: WebhookProcess
    b: WebhookProcess
    haproxy: HAProxy

    def by_name(self, name: str) -> WebhookProcess:
        return {"a": self.a, "b": self.b}[name]


def configurations(url: str, ca_bundle: str, name: str) -> list[dict[str, Any]]:
    """A mutating and a validating webhook at `url`, failurePolicy Fail, for the namespace `load` only."""
    only_load = {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["load"]}]
    }
    common: dict[str, Any] = {"failure_policy": "Fail", "namespace_selector": only_load}
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": name},
         "webhooks": [webhook_entry("mutate.replicas.immutable-os.io", f"{url}/mutate", ca_bundle, mutating=True,
                                    **common)]},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": name},
         "webhooks": [webhook_entry("validate.replicas.immutable-os.io", f"{url}/validate", ca_bundle,
                                    **common)]},
    ]  # fmt: skip


def plain_pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "main", "image": IMAGE}]}}  # fmt: skip


@pytest.fixture
def replicas(plane: ControlPlane, haproxy_binary: str) -> Iterator[Replicas]:
    """Replicas a and b (same serving pair) behind HAProxy, registered for the namespace `load`, and the
    apiserver calling them."""
    token = secrets.token_hex(3)
    a = WebhookProcess(plane, f"replica-a-{token}", SESSION_CONFIG, extra_args=DRAIN)
    b = WebhookProcess(plane, f"replica-b-{token}", SESSION_CONFIG, extra_args=DRAIN, same_pki_as=a)
    haproxy = None
    api = plane.api_client()
    registered: list[dict[str, Any]] = []
    try:
        a.start()
        b.start()
        directory = plane.tmp_dir / f"haproxy-{token}"
        directory.mkdir()
        haproxy = HAProxy(haproxy_binary, directory, {"a": a.port, "b": b.port})
        registered = configurations(haproxy.url, a.ca_bundle, f"immutable-os-e2e-replicas-{token}")
        register(api, registered)
        wait_until_called(k8s.CoreV1Api(api), a, b)
        yield Replicas(a, b, haproxy)
    finally:
        with contextlib.suppress(Exception):
            unregister(api, registered)
        if haproxy is not None:
            haproxy.stop()
        a.stop()
        b.stop()
        api.close()  # type: ignore[no-untyped-call]


def wait_until_called(core: k8s.CoreV1Api, a: WebhookProcess, b: WebhookProcess) -> None:
    """Until a dry-run create is judged (by either replica: the apiserver keeps its connection, and
    HAProxy balances connections, not requests)."""

    def called() -> bool:
        probe = f"probe-{secrets.token_hex(3)}"
        core.create_namespaced_pod("load", plain_pod(probe), dry_run="All")
        return any(e.get("name") == probe for p in (a, b) for e in p.reviews())

    wait_for(called, timeout=30, interval=0.1, message="the apiserver to call the replicas")


# ------------------------------------------------------------------------------------------- the load


@dataclass(frozen=True)
class Create:
    started: float  # monotonic
    ended: float
    error: str = ""


class Load:
    """`count` pod creates in the namespace `load` from CREATORS threads, each with its own client; with
    `per_second`, started no faster than that; with `hold_back`, the last ones wait for `release()`."""

    def __init__(
        self, plane: ControlPlane, count: int, prefix: str, *, per_second: float = 0.0, hold_back: int = 0
    ) -> None:
        self.creates: list[Create] = []
        self._lock = threading.Lock()
        self._next = iter(range(count))
        self.count = count
        self._interval = 1.0 / per_second if per_second else 0.0
        self._slot = time.monotonic()
        self._held = count - hold_back
        self._released = threading.Event()
        if not hold_back:
            self._released.set()
        self._threads = [threading.Thread(target=self._creator, args=(plane, prefix), daemon=True)
                         for _ in range(CREATORS)]  # fmt: skip
        for thread in self._threads:
            thread.start()

    def _creator(self, plane: ControlPlane, prefix: str) -> None:
        api = plane.api_client()
        core = k8s.CoreV1Api(api)
        try:
            while True:
                with self._lock:
                    index = next(self._next, None)
                    slot = self._slot = max(self._slot + self._interval, time.monotonic())
                if index is None:
                    return
                if index >= self._held:
                    self._released.wait(timeout=120)
                time.sleep(max(0.0, slot - time.monotonic()))
                started = time.monotonic()
                try:
                    core.create_namespaced_pod("load", plain_pod(f"{prefix}-{index}"))
                    done = Create(started, time.monotonic())
                except k8s.ApiException as exc:
                    done = Create(started, time.monotonic(), api_message(exc) or str(exc.reason))
                with self._lock:
                    self.creates.append(done)
        finally:
            api.close()  # type: ignore[no-untyped-call]

    def release(self) -> None:
        self._released.set()

    def started_between(self, begin: float, end: float) -> int:
        with self._lock:
            return sum(1 for c in self.creates if begin <= c.started <= end)

    @property
    def done(self) -> int:
        with self._lock:
            return len(self.creates)

    def wait_done(self, at_least: int, timeout: float = 120) -> None:
        wait_for(lambda: self.done >= at_least, timeout=timeout, interval=0.01,
                 message=lambda: f"{at_least} creates; done {self.done}")  # fmt: skip

    def join(self) -> list[Create]:
        for thread in self._threads:
            thread.join(timeout=180)
        assert not any(t.is_alive() for t in self._threads), "creators still running"
        assert len(self.creates) == self.count
        return sorted(self.creates, key=lambda c: c.started)

    def failures(self) -> list[Create]:
        with self._lock:
            return [c for c in self.creates if c.error]


def answered_since(process: WebhookProcess, since_wall: float) -> int:
    return sum(1 for e in process.reviews() if e["ts"] >= since_wall)


def restart(replicas: Replicas, name: str, load: Load, log: Callable[[str], None]) -> tuple[float, float]:
    """One replica's turn in a rolling restart, as Kubernetes takes a pod out and a new one in; when the
    turn began and ended (monotonic)."""
    process, haproxy = replicas.by_name(name), replicas.haproxy
    began = time.monotonic()
    haproxy.set_state(name, "drain")  # the endpoint is removed: no new connection goes to it
    time.sleep(PRE_STOP_SECONDS)  # the preStop sleep
    sigterm = time.monotonic()
    process.terminate()
    code = wait_for(lambda: (process.exit_code(),) if process.exit_code() is not None else None,
                    timeout=30, interval=0.01, message=f"replica {name} to exit after SIGTERM")[0]  # fmt: skip
    exited = time.monotonic()
    assert code == 0, process.logs(20)
    drained = next(e for e in reversed(process.log_entries()) if e.get("msg") == "drained")
    process.start()
    started = time.monotonic()
    haproxy.set_state(name, "ready")
    wait_for(lambda: haproxy.status()[name] == "UP", timeout=15, interval=0.05,
             message=lambda: f"HAProxy to see {name} up again; {haproxy.describe()}")  # fmt: skip
    back = time.monotonic()
    log(f"replica {name}: drained {drained.get('connections')} connections in {exited - sigterm:.2f}s "
        f"(cut {drained.get('cut')}), ready {started - exited:.2f}s after its exit, back in HAProxy "
        f"{back - began:.2f}s after its turn began; {load.started_between(began, back)} creates began "
        "in its turn")  # fmt: skip
    return began, back


def test_a_rolling_restart_of_both_replicas_during_creates_loses_none(
    plane: ControlPlane, replicas: Replicas
) -> None:
    lines: list[str] = []
    began_wall, began = time.time(), time.monotonic()
    # Paced over ROLL_SECONDS, and the last 5 % held until both replicas are back: creates keep coming
    # through both turns, however long a restart takes on a slow machine.
    load = Load(plane, CREATES, f"roll-{secrets.token_hex(2)}", per_second=CREATES / ROLL_SECONDS,
                hold_back=CREATES // 20)  # fmt: skip
    load.wait_done(CREATES // 10)
    turn_a = restart(replicas, "a", load, lines.append)
    restarted_a = time.time()
    turn_b = restart(replicas, "b", load, lines.append)
    restarted_b = time.time()
    load.release()
    creates = load.join()
    took = time.monotonic() - began
    failed = [c for c in creates if c.error]
    after_a, after_b = answered_since(replicas.a, restarted_a), answered_since(replicas.b, restarted_b)
    print(f"\n{CREATES} creates from {CREATORS} threads in {took:.1f}s through HAProxy, failed "
          f"{len(failed)}; calls answered by the new a after its turn {after_a}, by the new b after its "
          f"turn {after_b}")  # fmt: skip
    for line in lines:
        print(f"  {line}")
    for c in failed[:3]:
        print(f"  e.g. {c.error[:240]}")
    assert failed == []
    assert load.started_between(*turn_a) > 0 and load.started_between(*turn_b) > 0
    # The new a took the calls while b was out. (The apiserver keeps its connections, and HAProxy balances
    # connections: what went to a during b's turn stays there, so the new b may get none for a while.)
    assert after_a > 0
    assert answered_since(replicas.a, began_wall) + answered_since(replicas.b, began_wall) >= 2 * CREATES


def test_a_sigkill_loses_at_most_the_calls_in_flight_on_the_killed_replica(
    plane: ControlPlane, replicas: Replicas
) -> None:
    haproxy = replicas.haproxy
    load = Load(plane, KILL_CREATES, f"kill-{secrets.token_hex(2)}")
    load.wait_done(KILL_CREATES // 4)
    connections = int(haproxy.stats()["a"]["scur"])  # each carries at most one call at a time
    killed = time.monotonic()
    assert replicas.a._popen is not None
    replicas.a._popen.kill()
    marked_down = wait_for(lambda: time.monotonic() if haproxy.status()["a"].startswith("DOWN") else None,
                           timeout=10, interval=0.02, message="HAProxy to mark a down")  # fmt: skip
    creates = load.join()
    failed = [c for c in creates if c.error]
    offsets = [round(c.started - killed, 3) for c in failed]
    kinds = Counter("broken connection" if BROKEN.search(c.error) else c.error[:160] for c in failed)
    print(f"\nSIGKILL of replica a after {KILL_CREATES // 4} of {KILL_CREATES} creates, with {connections} "
          f"connections open to it; HAProxy marked it down {marked_down - killed:.2f}s later; failed creates: "
          f"{len(failed)} {dict(kinds)}, begun at {offsets} s from the kill")  # fmt: skip
    for c in failed[:3]:
        print(f"  e.g. {c.error[:240]}")
    # Each failure is a call lost with a connection to a: in flight when it died, or written into a
    # connection in the moment before its end reached the apiserver. One call at most per connection
    # (HTTP/1.1) and per creator; none once HAProxy had marked a down.
    assert all("failed calling webhook" in c.error and BROKEN.search(c.error) for c in failed), kinds
    assert all(c.started < marked_down for c in failed), offsets
    assert len(failed) <= min(CREATORS, connections)

"""SIGTERM under load, through a real kube-apiserver: pods are created continuously (300 from 4 threads)
while a webhook with failurePolicy Fail gets SIGTERM after the first 100.

The apiserver's Go client does not retry a POST that met a connection being closed, so a webhook that
closes its idle keep-alive connections at SIGTERM makes creates fail with `failed calling webhook ...
EOF` (issue 12). With the drain every create that reaches the webhook is answered:
- alone, the creates that fail are those the apiserver could not connect for once the webhook stopped
  listening on its way out ("connection refused"; nobody else is there to answer them);
- with a second replica behind a balancer that stops sending it new connections first (the endpoint
  removal a preStop sleep waits for in a cluster), none fails.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client as k8s

from .harness import LOOPBACK, ControlPlane, wait_for
from .webhook_fixture import SESSION_CONFIG, WebhookProcess, api_message, register, unregister, webhook_entry

CREATES = 300
CREATORS = 4
SIGTERM_AFTER = 100
DRAIN = ("--drain-seconds", "3")
IMAGE = "registry.k8s.io/pause:3.10"

# How a failed webhook call reads in the apiserver's answer: the request never left the apiserver for the
# first; it was lost in a connection the webhook (or the balancer) closed or reset for the second.
REFUSED = re.compile(r"connect: connection refused")
MID_REQUEST = re.compile(r": EOF|unexpected EOF|connection reset by peer|broken pipe|server closed idle")


@dataclass(frozen=True)
class Create:
    """One pod create; times are time.time(), to compare with the webhook's log."""

    index: int
    started: float
    ended: float
    error: str = ""

    @property
    def kind(self) -> str:
        if not self.error:
            return "ok"
        return (
            "refused"
            if REFUSED.search(self.error)
            else "EOF/reset"
            if MID_REQUEST.search(self.error)
            else "other"
        )


@dataclass(frozen=True)
class Run:
    creates: list[Create]
    sigterm: float
    exited: float
    exit_code: int


def plain_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": IMAGE}]},
    }


def configurations(url: str, ca_bundle: str, namespace: str, name: str) -> list[dict[str, Any]]:
    """A mutating and a validating webhook at `url`, failurePolicy Fail, for this test's namespace only."""
    only_here = {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]}]
    }
    common: dict[str, Any] = {"failure_policy": "Fail", "namespace_selector": only_here}
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": name},
         "webhooks": [webhook_entry("mutate.drain.immutable-os.io", f"{url}/mutate", ca_bundle, mutating=True,
                                    **common)]},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": name},
         "webhooks": [webhook_entry("validate.drain.immutable-os.io", f"{url}/validate", ca_bundle, **common)]},
    ]  # fmt: skip


def wait_until_called(core: k8s.CoreV1Api, namespace: str, processes: Sequence[WebhookProcess]) -> None:
    def called() -> bool:
        probe = f"probe-{secrets.token_hex(2)}"
        core.create_namespaced_pod(namespace, plain_pod(probe), dry_run="All")
        return any(entry.get("name") == probe for p in processes for entry in p.reviews())

    wait_for(called, timeout=30, message="the apiserver to call the webhook")


def create_pods_through_sigterm(
    control_plane: ControlPlane, namespace: str, victim: WebhookProcess, before_sigterm: Callable[[], None]
) -> Run:
    """CREATES pod creates from CREATORS threads; after SIGTERM_AFTER of them, `before_sigterm()`, then
    SIGTERM to `victim`. Returns once every create has an answer."""
    creates: list[Create] = []
    lock = threading.Lock()
    indexes = iter(range(CREATES))

    def creator() -> None:
        api = control_plane.api_client()
        core = k8s.CoreV1Api(api)
        try:
            while True:
                with lock:
                    index = next(indexes, None)
                if index is None:
                    return
                started = time.time()
                try:
                    core.create_namespaced_pod(namespace, plain_pod(f"drain-{index}"))
                    done = Create(index, started, time.time())
                except k8s.ApiException as exc:
                    done = Create(index, started, time.time(), api_message(exc) or str(exc.reason))
                with lock:
                    creates.append(done)
        finally:
            api.close()  # type: ignore[no-untyped-call]

    threads = [threading.Thread(target=creator, daemon=True) for _ in range(CREATORS)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(creates) >= SIGTERM_AFTER, timeout=60, interval=0.005,
             message=lambda: f"{SIGTERM_AFTER} creates; done {len(creates)}")  # fmt: skip
    before_sigterm()
    sigterm = time.time()
    victim.terminate()
    code = wait_for(lambda: (victim.exit_code(),) if victim.exit_code() is not None else None,
                    timeout=30, interval=0.005, message="the webhook to exit after SIGTERM")[0]  # fmt: skip
    exited = time.time()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "creators still running"
    return Run(sorted(creates, key=lambda c: c.index), sigterm, exited, code)


def serve_log(process: WebhookProcess) -> dict[str, float]:
    """When the server logged each of its lifecycle messages (draining, stopped listening, drained)."""
    return {e["msg"]: e["ts"] for e in process.log_entries() if e.get("logger") == "webhook.serve"}


def report(title: str, run: Run, phase: Callable[[Create], str]) -> None:
    counts = Counter((phase(c), c.kind) for c in run.creates)
    print(f"\n{title}")
    for (when, kind), n in sorted(counts.items()):
        print(f"  {when:20} {kind:10} {n}")
    for c in [c for c in run.creates if c.error][:2]:
        print(f"  e.g. {c.error[:240]}")


def test_alone_creates_fail_only_as_refused_connections_after_it_stopped_listening(
    control_plane: ControlPlane, api_client: k8s.ApiClient, core_v1: k8s.CoreV1Api, namespace: str
) -> None:
    token = secrets.token_hex(3)
    process = WebhookProcess(control_plane, f"drain-{token}", SESSION_CONFIG, extra_args=DRAIN)
    registered = configurations(process.url, process.ca_bundle, namespace, f"immutable-os-e2e-drain-{token}")
    try:
        process.start()
        register(api_client, registered)
        wait_until_called(core_v1, namespace, [process])
        run = create_pods_through_sigterm(control_plane, namespace, process, lambda: None)
    finally:
        unregister(api_client, registered)
        process.stop()
    unlistened = serve_log(process)["stopped listening"]

    def phase(c: Create) -> str:
        if c.ended < run.sigterm:
            return "1 before SIGTERM"
        return (
            "2 draining"
            if c.ended < unlistened
            else "3 not listening"
            if c.ended < run.exited
            else "4 exited"
        )

    report(f"one replica: stopped listening {unlistened - run.sigterm:.2f} s after SIGTERM, exited "
           f"{run.exit_code} after {run.exited - run.sigterm:.2f} s", run, phase)  # fmt: skip
    failed = [c for c in run.creates if c.error]
    assert len(run.creates) == CREATES and run.exit_code == 0
    assert all("failed calling webhook" in c.error for c in failed), [c.error for c in failed][:3]
    assert [c.error for c in failed if c.kind != "refused"] == []
    assert not any(c.ended < unlistened for c in failed)
    assert any(not c.error and c.started >= run.sigterm for c in run.creates), "nothing answered in the drain"


class Balancer:
    """A TCP proxy on 127.0.0.1 standing for a Service: each new connection goes to the next backend still
    among the endpoints (round robin), and stays with it until either end closes, as conntrack keeps a
    connection after its endpoint is removed. A reset from a backend is passed on as a reset."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.endpoints = list(ports)
        self.accepted: Counter[int] = Counter()
        self._turn = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="balancer", daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(timeout=10)
        self.url = f"https://{LOOPBACK}:{self.server.sockets[0].getsockname()[1]}"

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._proxy, LOOPBACK, 0)

    def remove(self, port: int) -> None:
        """The endpoint goes: no new connection is sent to `port`; open ones stay."""
        asyncio.run_coroutine_threadsafe(self._remove(port), self.loop).result(timeout=10)

    async def _remove(self, port: int) -> None:
        self.endpoints.remove(port)

    async def _proxy(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        port = self.endpoints[self._turn % len(self.endpoints)]
        self._turn += 1
        try:
            backend_reader, backend = await asyncio.open_connection(LOOPBACK, port)
        except OSError:
            client.transport.abort()
            return
        self.accepted[port] += 1
        await asyncio.gather(self._pipe(client_reader, backend), self._pipe(backend_reader, client))

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except OSError:
            sink.transport.abort()
            return
        sink.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def balanced(control_plane: ControlPlane) -> Iterator[tuple[WebhookProcess, WebhookProcess, Balancer]]:
    token = secrets.token_hex(3)
    leaving = WebhookProcess(control_plane, f"drain-a-{token}", SESSION_CONFIG, extra_args=DRAIN)
    staying = WebhookProcess(control_plane, f"drain-b-{token}", SESSION_CONFIG, extra_args=DRAIN,
                             same_pki_as=leaving)  # fmt: skip
    balancer = None
    try:
        leaving.start()
        staying.start()
        balancer = Balancer([leaving.port, staying.port])
        yield leaving, staying, balancer
    finally:
        if balancer is not None:
            balancer.close()
        leaving.stop()
        staying.stop()


def test_behind_a_balancer_a_replica_drains_and_no_create_fails(
    api_client: k8s.ApiClient,
    control_plane: ControlPlane,
    core_v1: k8s.CoreV1Api,
    namespace: str,
    balanced: tuple[WebhookProcess, WebhookProcess, Balancer],
) -> None:
    leaving, staying, balancer = balanced
    registered = configurations(balancer.url, leaving.ca_bundle, namespace,
                                f"immutable-os-e2e-drain-lb-{secrets.token_hex(3)}")  # fmt: skip
    try:
        register(api_client, registered)
        wait_until_called(core_v1, namespace, [leaving, staying])
        run = create_pods_through_sigterm(
            control_plane, namespace, leaving, lambda: balancer.remove(leaving.port)
        )
    finally:
        unregister(api_client, registered)
    answered_in_drain = sum(1 for e in leaving.reviews() if e["ts"] >= run.sigterm)

    def phase(c: Create) -> str:
        return (
            "1 before SIGTERM"
            if c.ended < run.sigterm
            else "2 draining"
            if c.ended < run.exited
            else "3 exited"
        )

    report(f"two replicas behind a balancer: the leaving one answered {answered_in_drain} reviews after "
           f"SIGTERM and exited {run.exit_code} after {run.exited - run.sigterm:.2f} s; connections "
           f"{dict(balancer.accepted)}", run, phase)  # fmt: skip
    assert len(run.creates) == CREATES and run.exit_code == 0
    assert [c.error for c in run.creates if c.error] == []
    assert answered_in_drain >= 1, "the leaving replica answered nothing after SIGTERM"

"""The node watch under faults, through a real kube-apiserver: an apiserver outage, a cut watch connection, and a
storm of 410 Gone.

The tests run on a control plane of their own (etcd + kube-apiserver), so stopping its apiserver disturbs
no other test. The webhook (`python -m webhook serve`) watches it directly, or through `ApiProxy`, a TLS
proxy written here that can cut every connection it carries or answer watch requests with 410 Gone. What
is asserted is what a user of the webhook sees: /validate answers of a hostPath pod pinned to one pool
(denied once that pool is known to be immutable) and /readyz. The deadlines are requirements, not
measurements: an answer within 1 s, a node added after the fault judged within 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import secrets
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from .harness import LOOPBACK, ControlPlane, admin, create_node_pool, unique_pool_name, wait_for
from .webhook_fixture import WebhookProcess

OUTAGE_SECONDS = 20.0
#: maxInventoryStalenessSeconds of the webhook under test: short, so the outage outlasts it.
STALENESS_SECONDS = 6.0
#: What serve derives from it (watch_timeout_within): the longest a quiet watch goes without a renewal.
RENEWAL_SECONDS = 3.0
RECOVERY_DEADLINE_SECONDS = 5.0
ANSWER_DEADLINE_SECONDS = 1.0
SAMPLE_SECONDS = 0.25
GONE_STORM = 6

#: Verdicts of the review of a hostPath pod pinned (by agentpool) to one pool.
IMMUTABLE = "denied: lands on the pool, immutable in the inventory"
# A current inventory where no node matches the pod (its pool has no node yet): judged by label evidence
# too, for the nodes that could come, and the answer says which case it was.
NO_NODE = "denied: no node of the current inventory matches; judged for the nodes that could come"
# Without a current inventory the pod could land on any pool label evidence imagines, immutable ones
# included, and it was not steered away from them: denied, naming those imagined pools.
EVIDENCE = "denied: could land on unknown immutable nodes (label evidence alone)"


def host_path_review(pool: str) -> dict[str, Any]:
    """An AdmissionReview of a pod that writes /usr/local/bin on the host and is pinned to `pool`."""
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "collector", "namespace": "default"},
        "spec": {
            "nodeSelector": {"agentpool": pool},
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                            "volumeMounts": [{"name": "host", "mountPath": "/host"}]}],
            "volumes": [{"name": "host", "hostPath": {"path": "/usr/local/bin"}}],
        },
    }  # fmt: skip
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": secrets.token_hex(8), "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"}, "operation": "CREATE",
            "namespace": "default", "name": "collector",
            "userInfo": {"username": "e2e-user", "groups": ["system:authenticated"]}, "object": pod,
        },
    }  # fmt: skip


def verdict(answer: Mapping[str, Any], pool: str) -> str:
    """Which of IMMUTABLE, NO_NODE, EVIDENCE the answer is (or what else it was)."""
    response = answer["response"]
    message = (response.get("status") or {}).get("message", "")
    if (
        not response["allowed"]
        and "breaks on every pool it can land on" in message
        and f"pool {pool}" in message
    ):
        return IMMUTABLE
    if not response["allowed"] and "breaks on pool unknown" in message and f"pool {pool}" not in message:
        if "Note: no current node inventory" in message:
            return EVIDENCE
        if "Note: matches none of the" in message:
            return NO_NODE
    return f"other: {response}"


def judge(hook: WebhookProcess, pool: str) -> str:
    """POST the review of a pod pinned to `pool` to /validate; its verdict, which must come within 1 s."""
    review = host_path_review(pool)
    started = time.monotonic()
    answer = hook.post("/validate", review, timeout=ANSWER_DEADLINE_SECONDS)
    assert answer["response"]["uid"] == review["request"]["uid"]
    assert time.monotonic() - started < ANSWER_DEADLINE_SECONDS
    return verdict(answer, pool)


def judged_within(hook: WebhookProcess, pool: str, expected: str, deadline: float) -> float:
    """Poll /validate until the pod pinned to `pool` is judged `expected`, by `deadline` (monotonic);
    returns when it was."""
    last: list[str] = []

    def judged() -> bool:
        last[:] = [judge(hook, pool)]
        return last[0] == expected

    wait_for(judged, timeout=max(0.0, deadline - time.monotonic()), interval=0.05,
             message=lambda: f"{pool} to be judged {expected!r}; last: {last}; log:\n{hook.logs(30)}")  # fmt: skip
    return time.monotonic()


def webhook(cp: ControlPlane, name: str, kubeconfig: Path | None = None) -> WebhookProcess:
    config = {"mode": "enforce", "maxInventoryStalenessSeconds": STALENESS_SECONDS}
    return WebhookProcess(cp, f"{name}-{secrets.token_hex(2)}", config, kubeconfig=kubeconfig)


def metric(hook: WebhookProcess, name: str) -> float:
    for line in hook.metrics().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


# -------------------------------------------------------------------------------- 1. apiserver outage


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the outage began
    ready: int  # /readyz status
    verdict: str


def test_through_an_apiserver_outage_it_answers_from_its_snapshot_then_judges_a_new_node_within_5s(
    plane: ControlPlane,
) -> None:
    create_node_pool(admin(plane), unique_pool_name("general"), 1)
    known = unique_pool_name("flatcar")
    create_node_pool(admin(plane), known, 1, os_sku="Flatcar")
    hook = webhook(plane, "outage").start()
    try:
        # Quiet for longer than the allowance: the watch renewals keep a healthy inventory current.
        quiet_until = time.monotonic() + STALENESS_SECONDS + 2 * SAMPLE_SECONDS
        while time.monotonic() < quiet_until:
            assert (hook.get("/readyz"), judge(hook, known)) == (200, IMMUTABLE), hook.logs(20)
            time.sleep(SAMPLE_SECONDS)

        stopping = time.monotonic()
        plane.stop_apiserver()
        down = time.monotonic()
        samples: list[Sample] = []
        while time.monotonic() - stopping < OUTAGE_SECONDS:
            samples.append(Sample(time.monotonic() - stopping, hook.get("/readyz"), judge(hook, known)))
            time.sleep(SAMPLE_SECONDS)
        restarting = time.monotonic()
        plane.start_apiserver()
        back = time.monotonic()
        ready_again = wait_for(lambda: time.monotonic() if hook.get("/readyz") == 200 else None,
                               timeout=RECOVERY_DEADLINE_SECONDS, interval=0.05,
                               message=lambda: f"/readyz 200 after the restart; log:\n{hook.logs(30)}")  # fmt: skip

        new = unique_pool_name("flatcar")
        assert judge(hook, new) == NO_NODE
        create_node_pool(admin(plane), new, 1, os_sku="Flatcar")
        created = time.monotonic()
        reflected = judged_within(hook, new, IMMUTABLE, back + RECOVERY_DEADLINE_SECONDS)
        expired = expired_waits(hook, since=restarting)
    finally:
        plane.start_apiserver()
        hook.stop()

    # The first sample that saw the inventory stale (by /readyz or by the verdict that followed it).
    stale = [s for s in samples if (s.ready, s.verdict) != (200, IMMUTABLE)]
    assert stale, f"never stale in a {OUTAGE_SECONDS:g}s outage: {runs(samples)}"
    onset = stale[0].at
    print(
        f"\napiserver stopped in {down - stopping:.1f}s, down {restarting - stopping:.1f}s, restarted in "
        f"{back - restarting:.1f}s; /readyz 503 from {onset:.2f}s after the stop (allowance "
        f"{STALENESS_SECONDS:g}s), 200 again {ready_again - back:.2f}s after the restart; new node created "
        f"{created - back:.2f}s after it and judged {reflected - back:.2f}s after it; "
        f"{len(expired)} relist(s) after a 410 from the restarted apiserver"
    )
    # Before the allowance ran out, every answer came from the last snapshot: the known pool is denied.
    # After it, /readyz says 503 and the answers (still given, each within 1 s) are from label evidence.
    assert onset >= STALENESS_SECONDS - RENEWAL_SECONDS - SAMPLE_SECONDS
    assert onset <= (down - stopping) + STALENESS_SECONDS + 2 * SAMPLE_SECONDS
    timeline = runs(samples)
    print(f"/readyz and verdicts during the outage: {timeline}")
    assert all((s.ready, s.verdict) == (200, IMMUTABLE) for s in samples if s.at < onset), timeline
    assert stale[0].ready == 503 or stale[0].verdict == EVIDENCE, timeline
    assert all((s.ready, s.verdict) == (503, EVIDENCE) for s in samples if s.at > onset), timeline


def runs(samples: list[Sample]) -> str:
    """The samples as runs of one (readyz, verdict): "0.00-5.75s 200 denied...; 6.01-20.00s 503 ..."."""
    out: list[list[Any]] = []
    for s in samples:
        if out and out[-1][2:] == [s.ready, s.verdict]:
            out[-1][1] = s.at
        else:
            out.append([s.at, s.at, s.ready, s.verdict])
    return "; ".join(f"{a:.2f}-{b:.2f}s {ready} {what[:60]}" for a, b, ready, what in out)


# ---------------------------------------------------------------------- 2. the proxy: cuts and 410 Gone


@dataclass(frozen=True)
class Request:
    """One request the proxy saw, and what it did with it."""

    at: float  # monotonic
    resource: str  # the last path segment: nodes, namespaces...
    watch: bool
    resource_version: str
    answer: str  # "forwarded", "410 status", "410 event"


GONE_STATUS = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "too old resource version: 1 (2)", "reason": "Expired", "code": 410}  # fmt: skip


class ApiProxy:
    """A TLS proxy on 127.0.0.1 in front of the test apiserver, for the webhook's list and watch requests.

    It terminates TLS with the apiserver's own serving pair (so the webhook's kubeconfig keeps the same CA
    and 127.0.0.1) and forwards each request over a new TLS connection as the admin user, one request per
    connection (it asks the apiserver for `Connection: close`), so it sees every request. `cut()` aborts
    every connection it carries, as a dropped network path would; `gone(resource, n)` answers the next `n`
    watch requests for `resource` with 410 Gone itself, alternating the two forms the API uses (an HTTP
    410 Status, and a 200 stream whose one event is an ERROR with code 410).
    """

    def __init__(self, cp: ControlPlane) -> None:
        self.upstream_port = cp.port
        self.upstream_tls = cp.ssl_context()
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(cp.pki_dir / "apiserver.crt", cp.pki_dir / "apiserver.key")
        self.requests: list[Request] = []
        self.cuts = 0
        self._gone: dict[str, int] = {}
        self._open: set[asyncio.BaseTransport] = set()
        self._carried: list[Held] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="api-proxy", daemon=True)
        self.thread.start()
        self.server = self._call(asyncio.start_server(self._serve, LOOPBACK, 0, ssl=self.tls))
        self.url = f"https://{LOOPBACK}:{self.server.sockets[0].getsockname()[1]}"
        self.kubeconfig = cp.tmp_dir / f"proxy-{secrets.token_hex(2)}.kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "proxy",
            "clusters": [{"name": "proxy", "cluster": {"server": self.url, "certificate-authority": str(cp.ca_path)}}],
            "users": [{"name": "proxy", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
        }))  # fmt: skip

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def seen(self, resource: str, *, watch: bool, since: float = 0.0) -> list[Request]:
        return [
            r for r in list(self.requests) if r.resource == resource and r.watch == watch and r.at >= since
        ]

    def gone(self, resource: str, times: int) -> None:
        self.loop.call_soon_threadsafe(self._gone.__setitem__, resource, times)

    def freeze(self) -> None:
        """Stop carrying every connection open now, without closing any: the webhook hears nothing more on
        them (a blackholed path). New connections are carried as before."""

        async def freeze() -> None:
            for held in self._carried:
                held.frozen = True

        self._call(freeze())

    def cut(self) -> int:
        """Abort every open connection, both sides; how many there were."""

        async def cut() -> int:
            transports = list(self._open)
            for transport in transports:
                transport.abort()
            self.cuts += 1
            return len(transports)

        count: int = self._call(cut())
        return count

    def close(self) -> None:
        async def close() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.cut()
        self._call(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer.transport)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            request_line, *headers = head.decode("latin-1").split("\r\n")
            target = urlsplit(request_line.split(" ")[1])
            query = {k: v[0] for k, v in parse_qs(target.query).items()}
            resource = target.path.rstrip("/").rsplit("/", 1)[-1]
            watch = query.get("watch", "").lower() == "true"
            remaining = self._gone.get(resource, 0) if watch else 0
            if remaining:
                self._gone[resource] = remaining - 1
                answer = "410 status" if remaining % 2 == 0 else "410 event"
            else:
                answer = "forwarded"
            self.requests.append(
                Request(time.monotonic(), resource, watch, query.get("resourceVersion", ""), answer)
            )
            if answer == "forwarded":
                kept = [h for h in headers if h and not h.lower().startswith("connection:")]
                await self._forward("\r\n".join([request_line, *kept, "Connection: close", "", ""]).encode("latin-1"),
                                    reader, writer)  # fmt: skip
            else:
                writer.write(_gone_answer(answer))
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, IndexError):
            writer.transport.abort()
        finally:
            self._open.discard(writer.transport)
            writer.close()

    async def _forward(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(
            LOOPBACK, self.upstream_port, ssl=self.upstream_tls
        )
        self._open.add(up_writer.transport)
        held = Held()
        self._carried.append(held)
        try:
            up_writer.write(head)
            await asyncio.gather(_pipe(reader, up_writer, held), _pipe(up_reader, writer, held))
        finally:
            self._open.discard(up_writer.transport)
            up_writer.transport.abort()


@dataclass
class Held:
    """A forwarded connection the proxy has stopped carrying: nothing more goes through, not even its end."""

    frozen: bool = False


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, held: Held) -> None:
    try:
        while data := await source.read(65536):
            if not held.frozen:
                sink.write(data)
                await sink.drain()
    except OSError:
        sink.transport.abort()
        return
    if held.frozen:
        await asyncio.Event().wait()  # silent until cut or closed, like a flow a middlebox dropped
    with contextlib.suppress(OSError, RuntimeError):
        if sink.can_write_eof():
            sink.write_eof()


def _gone_answer(form: str) -> bytes:
    if form == "410 status":
        body = json.dumps(GONE_STATUS).encode()
        return (b"HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
    event = json.dumps({"type": "ERROR", "object": GONE_STATUS}).encode() + b"\n"
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(event), event))  # fmt: skip


@pytest.fixture
def proxied(plane: ControlPlane) -> Iterator[tuple[ApiProxy, WebhookProcess]]:
    """A webhook whose list and watch requests go through an `ApiProxy`, ready (both lists are in)."""
    proxy = ApiProxy(plane)
    hook = webhook(plane, "proxied", kubeconfig=proxy.kubeconfig)
    try:
        hook.start()
        yield proxy, hook
    finally:
        hook.stop()
        proxy.close()


def watching(proxy: ApiProxy, since: float) -> bool:
    """A node watch was forwarded after `since` (and its stream is open, the proxy carries it)."""
    return bool([r for r in proxy.seen("nodes", watch=True, since=since) if r.answer == "forwarded"])


def test_a_cut_watch_connection_resumes_from_its_resource_version_and_a_new_node_is_judged_within_5s(
    plane: ControlPlane, proxied: tuple[ApiProxy, WebhookProcess]
) -> None:
    proxy, hook = proxied
    wait_for(lambda: watching(proxy, 0.0), timeout=10, message="the node watch through the proxy")
    lists_before = len(proxy.seen("nodes", watch=False))
    timings = []
    for round_ in range(3):
        pool = unique_pool_name(f"cut{round_}")
        time.sleep(0.5)  # the watch has been open a while: an established one, not a flapping one
        cut_at = time.monotonic()
        assert proxy.cut() >= 2, "the node and namespace watches were not open through the proxy"
        create_node_pool(admin(plane), pool, 1, os_sku="AzureContainerLinux")
        timings.append(judged_within(hook, pool, IMMUTABLE, cut_at + RECOVERY_DEADLINE_SECONDS) - cut_at)
        resumed = proxy.seen("nodes", watch=True, since=cut_at)
        assert resumed and resumed[0].resource_version, "the watch did not resume from a resourceVersion"
    print(
        f"\nafter each of {proxy.cuts} cuts a new node was judged in "
        + ", ".join(f"{t:.2f}s" for t in timings)
    )
    # Resumed, never listed again: the history since the resourceVersion came with the watch.
    assert len(proxy.seen("nodes", watch=False)) == lists_before
    assert hook.get("/readyz") == 200
    assert metric(hook, "immutable_os_webhook_watch_restarts") >= 3


def test_a_watch_connection_gone_silent_is_replaced_within_twice_the_renewal_and_a_new_node_judged(
    plane: ControlPlane, proxied: tuple[ApiProxy, WebhookProcess]
) -> None:
    proxy, hook = proxied
    wait_for(lambda: watching(proxy, 0.0), timeout=10, message="the node watch through the proxy")
    pool = unique_pool_name("silent")
    frozen = time.monotonic()
    proxy.freeze()
    create_node_pool(admin(plane), pool, 1, os_sku="Flatcar")
    # Silence is noticed by the read timeout: the renewal period (the server ends the watch then) and as
    # long again; then a new watch from the last resourceVersion brings the node.
    deadline = frozen + 2 * RENEWAL_SECONDS + RECOVERY_DEADLINE_SECONDS
    reflected = judged_within(hook, pool, IMMUTABLE, deadline)
    resumed = [r for r in proxy.seen("nodes", watch=True, since=frozen) if r.answer == "forwarded"]
    print(f"\nthe node watch went silent; a node added then was judged {reflected - frozen:.2f}s later")
    assert resumed and resumed[0].resource_version
    assert hook.get("/readyz") == 200


def test_a_storm_of_410_gone_relists_once_per_410_backs_off_and_recovers(
    plane: ControlPlane, proxied: tuple[ApiProxy, WebhookProcess]
) -> None:
    proxy, hook = proxied
    wait_for(lambda: watching(proxy, 0.0), timeout=10, message="the node watch through the proxy")
    pool = unique_pool_name("storm")
    proxy.gone("nodes", GONE_STORM)
    began = time.monotonic()
    proxy.cut()  # the node watch is asked for again, and meets the storm
    ready = []
    last_watch = wait_for(
        lambda: next((r for r in proxy.seen("nodes", watch=True, since=began) if r.answer == "forwarded"), None),
        timeout=30, interval=0.05, message=lambda: f"a node watch after the storm; log:\n{hook.logs(30)}",
    )  # fmt: skip
    ready.append(hook.get("/readyz"))
    create_node_pool(admin(plane), pool, 1, os_sku="Flatcar")
    reflected = judged_within(hook, pool, IMMUTABLE, time.monotonic() + RECOVERY_DEADLINE_SECONDS)

    watches = proxy.seen("nodes", watch=True, since=began)
    lists = proxy.seen("nodes", watch=False, since=began)
    storm = [r for r in watches if r.answer != "forwarded"]
    gaps = [b.at - a.at for a, b in itertools.pairwise(storm)]
    print(
        f"\n{len(storm)} watches answered 410 in {last_watch.at - began:.2f}s, {len(lists)} lists; waits between "
        f"410s: {', '.join(f'{g:.2f}' for g in gaps)}s; new node judged {reflected - last_watch.at:.2f}s "
        "after the watch was back"
    )
    assert [r.answer for r in storm] == ["410 status", "410 event"] * (GONE_STORM // 2)
    # One list per 410, not a spin: each 410 is followed by exactly one list, then one watch.
    assert len(lists) == GONE_STORM, [
        (r.at - began, r.watch, r.answer) for r in sorted(watches + lists, key=lambda r: r.at)
    ]
    sequence = [("watch" if r.watch else "list") for r in sorted(watches + lists, key=lambda r: r.at)]
    assert sequence[: 2 * GONE_STORM + 1] == ["watch", "list"] * GONE_STORM + ["watch"], sequence
    # Every watch after a relist starts from that list's resourceVersion.
    assert all(r.resource_version for r in watches[1:])
    assert ready == [200] and hook.get("/readyz") == 200
    # The waits the webhook logged before each relist: none after the first 410, then full jitter under
    # a ceiling doubling from 0.5 s to 2 s; and the proxy saw the 410s at least that far apart.
    waits = expired_waits(hook, since=began)
    assert len(waits) == GONE_STORM and waits[0] == 0.0, waits
    assert all(w <= min(2.0, 0.5 * 2 ** (i - 1)) for i, w in enumerate(waits) if i), waits
    assert all(gap >= wait - 0.01 for gap, wait in zip(gaps, waits, strict=False)), (gaps, waits)


def expired_waits(hook: WebhookProcess, since: float = 0.0) -> list[float]:
    """The waits before relisting the webhook logged for each 410 of the node watch."""
    found = re.compile(r"^nodes watch expired \(.*\); listing again in ([0-9.]+)s$")
    offset = time.time() - time.monotonic()
    return [float(m.group(1)) for e in hook.log_entries() if e["ts"] >= since + offset - 0.01
            and (m := found.match(str(e.get("msg", ""))))]  # fmt: skip

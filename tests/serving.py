"""The service under test, as the apiserver's peer sees it: a server on a free 127.0.0.1 port, clients that
trust the test CA, and what an answer must look like.

`serving` runs the app under the same uvicorn server `serve` builds, in a thread of this process (so a test
can monkeypatch the core); `Process` runs `python -m webhook serve` as a subprocess where a real process
matters (CLI wiring, JSON logs on stdout, signals, memory).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import host_path, set_field, tweak
from tests.pki import HOST, Pki
from webhook.adapters import tls
from webhook.adapters.http import edge, serve, service
from webhook.adapters.http.app import create_app
from webhook.adapters.http.connections import ConnectionLimits
from webhook.adapters.http.inventory import InventoryState
from webhook.adapters.http.sources import InventorySource, StaticSource
from webhook.core.config import Config

REPO = Path(__file__).resolve().parents[1]
WARNING_PREFIX = "immutable-os: "
RESPONSE_KEYS = {"uid", "allowed", "status", "patch", "patchType", "auditAnnotations", "warnings"}
JSON = {"content-type": "application/json"}

# The example inventory: a general Ubuntu pool, an Azure Container Linux pool and an OS Guard pool.
WRITES_USR = host_path("/usr/local/bin")
HOST_PATH_POD = tweak(WRITES_USR)
ACL_POD = tweak(WRITES_USR, set_field("nodeSelector", {"kubernetes.azure.com/agentpool": "acl"}))
CLEAN_POD = tweak()


def example_nodes() -> dict[str, dict[str, Any]]:
    """The embedded example inventory as wire Node objects."""
    text = resources.files("webhook").joinpath("data/example-nodes.yaml").read_text(encoding="utf-8")
    return {item["metadata"]["name"]: item for item in yaml.safe_load(text)["items"]}


class NotReady:
    """A source before its first node and namespace list."""

    def ready(self) -> bool:
        return False

    def stale(self) -> bool:
        return True

    def restarts(self) -> int:
        return 0


def service_for(
    config: Config | None = None, source: InventorySource | None = None, limits: edge.Limits | None = None
) -> service.AdmissionService:
    config = config or Config()
    state = InventoryState(config)
    state.set_nodes(example_nodes())
    return service.AdmissionService(config, state, source or StaticSource(), limits)


@dataclass
class Served:
    """A server running in its own thread and event loop, as the apiserver's peer would see it."""

    url: str
    port: int
    pki: Pki
    reloader: tls.CertReloader

    def client(self, timeout: float = 10, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, verify=self.pki.client_context(), timeout=timeout, **kwargs
        )


@contextlib.contextmanager
def serving(
    admission: service.AdmissionService,
    pki: Pki,
    *,
    cert_check_seconds: float | None = None,
    limits: ConnectionLimits | None = None,
    drain_seconds: float = 2,
) -> Iterator[Served]:
    """The service's app under uvicorn, built by `build_uvicorn`, on a free 127.0.0.1 port in a thread of
    its own. With `cert_check_seconds`, the reloader watches the files on the server's loop, as `serve`
    does."""
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do, and with Nagle on, every
    # response (headers and body written apart) waits out the client's 40 ms delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    options = serve.ServeOptions(HOST, port, str(pki.cert_path), str(pki.key_path),
                                 drain_seconds=drain_seconds, limits=limits or ConnectionLimits())  # fmt: skip
    reloader = tls.CertReloader(pki.cert_path, pki.key_path)
    uv = serve.build_uvicorn(create_app(admission), options, reloader, admission.metrics.connections)

    async def main() -> None:
        watcher = asyncio.create_task(reloader.run(cert_check_seconds)) if cert_check_seconds else None
        try:
            await uv.serve(sockets=[sock])
        finally:
            if watcher is not None:
                watcher.cancel()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if uv.started or not thread.is_alive():
                break
            time.sleep(0.01)
        assert uv.started, "uvicorn did not start within 5 s"
        yield Served(f"https://{HOST}:{port}", port, pki, reloader)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop within 10 s"


@dataclass
class Running:
    """A served app and a keep-alive client bound to this test's event loop."""

    served: Served
    client: httpx.AsyncClient

    @property
    def port(self) -> int:
        return self.served.port

    @property
    def pki(self) -> Pki:
        return self.served.pki


@asynccontextmanager
async def running(
    admission: service.AdmissionService, pki: Pki, *, cert_check_seconds: float | None = None
) -> AsyncIterator[Running]:
    with serving(admission, pki, cert_check_seconds=cert_check_seconds) as served:
        async with served.client() as client:
            yield Running(served, client)


# --- what the apiserver accepts ------------------------------------------------------------------------


def assert_admission_review(body: Any, uid: str) -> dict[str, Any]:
    """The AdmissionReview v1 response shape the apiserver decodes; returns `response`."""
    assert isinstance(body, dict)
    assert body["apiVersion"] == "admission.k8s.io/v1"
    assert body["kind"] == "AdmissionReview"
    response = body["response"]
    assert set(response) <= RESPONSE_KEYS, set(response) - RESPONSE_KEYS
    assert response["uid"] == uid
    assert isinstance(response["allowed"], bool)
    for warning in response.get("warnings", []):
        assert isinstance(warning, str) and warning.startswith(WARNING_PREFIX), warning
    for key, value in response.get("auditAnnotations", {}).items():
        # The apiserver prefixes each key with "<webhook name>/", and a key holds one "/" at most.
        assert "/" not in key and isinstance(value, str), key
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
    if not response["allowed"]:
        assert "warnings" not in response and "patch" not in response
        # 403 for a policy's verdict; 400 for an object that cannot be read (as PSA answers it).
        code, reason = response["status"]["code"], response["status"]["reason"]
        assert (code, reason) in ((403, "Forbidden"), (400, "BadRequest")), (code, reason)
    return dict(response)


def decoded_patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    patch = json.loads(base64.b64decode(response["patch"], validate=True))
    assert isinstance(patch, list) and patch
    return patch


async def post(r: Running, endpoint: str, review: dict[str, Any]) -> dict[str, Any]:
    answer = await r.client.post(f"/{endpoint}", json=review)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    return assert_admission_review(answer.json(), review["request"]["uid"])


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                return float(s.value)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """`python -m webhook serve` on 127.0.0.1, its stdout lines collected by a thread as they come."""

    def __init__(self, pki: Pki, *flags: str) -> None:
        self.port = free_port()
        self.url = f"https://{HOST}:{self.port}"
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        #: stderr, read as it comes (a pipe nobody reads would block the server once full).
        self.stderr: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webhook", "serve", "--host", HOST, "--port", str(self.port),
             "--cert-file", str(pki.cert_path), "--key-file", str(pki.key_path), *flags],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.error_reader = threading.Thread(target=self._read_errors, daemon=True)
        self.error_reader.start()
        self.client = httpx.Client(base_url=self.url, verify=pki.client_context(), timeout=10)
        self._wait_ready()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.error_reader.join(timeout=5)
                pytest.fail(f"serve exited {self.proc.returncode}: {''.join(self.stderr)}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        pytest.fail("serve did not get ready within 15 s")

    def log_lines(self, until: Callable[[dict[str, Any]], bool], timeout: float = 5) -> list[dict[str, Any]]:
        """Every stdout line so far, decoded, read until one satisfies `until` (or the timeout)."""
        deadline = time.monotonic() + timeout
        while not any(until(json.loads(line)) for line in self.stdout) and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self.stdout.append(self.lines.get(timeout=0.05))
        return [json.loads(line) for line in self.stdout]

    def stop(self) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise
        finally:
            self.reader.join(timeout=5)
            self.error_reader.join(timeout=5)
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()


async def hold(port: int, context: ssl.SSLContext, kind: int) -> Any:
    """One held connection of four kinds: TCP without TLS, TLS and nothing more, a head that never
    ends, and a body far from its declared length."""
    if kind == 0:
        return await asyncio.open_connection(HOST, port)
    reader, writer = await asyncio.open_connection(HOST, port, ssl=context, server_hostname=HOST)
    if kind == 2:
        writer.write(b"POST /validate HTTP/1.1\r\nHost: webhook\r\nX-Slow: ")
    elif kind == 3:
        length = edge.MAX_BODY_BYTES
        writer.write(b"POST /validate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {length}\r\n\r\n".encode() + b" " * 300_000)  # fmt: skip
    await writer.drain()
    return reader, writer

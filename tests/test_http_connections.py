"""Tests for webhook.adapters.http.connections (and the accept loop in serve): deadlines on every phase that
waits on the client, the connection cap, and what 2,000 held or slow connections cost the real process.

Deadlines here are short so the tests are quick; a test waits for the server to act (a poll with a
generous deadline) and never asserts how long it took.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import json
import re
import resource
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.builders import host_path, review_for, tweak
from tests.pki import HOST, Pki
from tests.serving import JSON, REPO, Process, Served, hold, sample, service_for, serving
from webhook.adapters.http import edge
from webhook.adapters.http.connections import ConnectionLimits

QUICK = ConnectionLimits(
    max_connections=8, handshake_seconds=0.5, header_seconds=0.5, body_seconds=0.5, keep_alive_seconds=1.0
)
HELD_CONNECTIONS = 2000
REVIEW = json.dumps(review_for(tweak(host_path("/var/log")), uid="conn-0001")).encode()


@pytest.fixture(scope="module")
def quick_server(pki: Pki) -> Iterator[Served]:
    with serving(service_for(), pki, limits=QUICK) as served:
        yield served


class Conn:
    """A raw HTTP/1.1 connection over TLS: what a slow or idle client does, byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: webhook\r\nContent-Length: {len(body)}\r\n"
        await self.send(head.encode() + b"Content-Type: application/json\r\n\r\n" + body)
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout=10)
        status_line, *lines = raw.decode().split("\r\n")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines if line)}
        payload = await asyncio.wait_for(self.reader.readexactly(int(headers["content-length"])), timeout=10)
        return int(status_line.split()[1]), headers, payload

    async def closed_by_server(self, timeout: float = 10) -> bool:
        """True once the server closed the connection (EOF or reset), False if still open at `timeout`."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout=timeout):
                pass
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def connected(served: Served, *, tls: bool = True) -> AsyncIterator[Conn]:
    context = served.pki.client_context() if tls else None
    reader, writer = await asyncio.open_connection(
        HOST, served.port, ssl=context, server_hostname=HOST if tls else None
    )
    conn = Conn(reader, writer)
    try:
        yield conn
    finally:
        await conn.close()


async def dropped(served: Served, reason: str) -> float:
    async with connected(served) as conn:
        _, _, text = await conn.request("GET", "/metrics")
    return sample(text.decode(), "immutable_os_webhook_connections_dropped_total", reason=reason) or 0.0


# --- deadlines ----------------------------------------------------------------------------------------


async def test_a_tcp_connection_that_never_starts_tls_is_cut(quick_server: Served) -> None:
    before = await dropped(quick_server, "handshake")
    async with connected(quick_server, tls=False) as conn:
        assert await conn.closed_by_server()
    assert await dropped(quick_server, "handshake") == before + 1


async def test_a_connection_that_sends_no_request_is_cut(quick_server: Served) -> None:
    before = await dropped(quick_server, "header-timeout")
    async with connected(quick_server) as conn:
        assert await conn.closed_by_server()
    assert await dropped(quick_server, "header-timeout") == before + 1


async def test_a_head_sent_a_byte_at_a_time_is_cut_before_it_is_complete(quick_server: Served) -> None:
    before = await dropped(quick_server, "header-timeout")
    head = b"POST /validate HTTP/1.1\r\nHost: webhook\r\n" + b"X-Slow: " + b"a" * 500
    async with connected(quick_server) as conn:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            for byte in head:  # bounded: 540 bytes, 20 ms apart, ~11 s at most; never the blank line
                await conn.send(bytes([byte]))
                await asyncio.sleep(0.02)
                if conn.reader.at_eof():
                    break
        assert await conn.closed_by_server()
    assert await dropped(quick_server, "header-timeout") == before + 1


async def test_a_body_sent_slowly_is_cut_and_the_review_is_dropped_quietly(
    quick_server: Served, caplog: pytest.LogCaptureFixture
) -> None:
    before = await dropped(quick_server, "body-timeout")
    head = f"POST /validate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\nContent-Length: {len(REVIEW)}\r\n\r\n"
    async with connected(quick_server) as conn:
        await conn.send(head.encode())
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            for byte in REVIEW[:500]:  # bounded, as above; never the whole body
                await conn.send(bytes([byte]))
                await asyncio.sleep(0.02)
                if conn.reader.at_eof():
                    break
        assert await conn.closed_by_server()
    assert await dropped(quick_server, "body-timeout") == before + 1
    assert [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")] == []


async def test_an_idle_keep_alive_connection_is_closed_after_keep_alive_seconds(quick_server: Served) -> None:
    async with connected(quick_server) as conn:
        status, headers, _ = await conn.request("POST", "/validate", REVIEW)
        assert status == 200 and "connection" not in headers
        assert await conn.closed_by_server()


async def test_a_request_in_time_is_answered_on_a_kept_alive_connection(quick_server: Served) -> None:
    """The deadlines restart for every request: one connection answers requests spread over longer than
    any single deadline."""
    async with connected(quick_server) as conn:
        for _ in range(4):
            status, _, _ = await conn.request("POST", "/validate", REVIEW)
            assert status == 200
            await asyncio.sleep(0.3)  # idle, but within keep_alive_seconds


# --- the connection cap --------------------------------------------------------------------------------


async def test_over_the_cap_the_least_recently_active_connection_makes_room(pki: Pki) -> None:
    limits = ConnectionLimits(max_connections=4)
    with serving(service_for(), pki, limits=limits) as served:
        async with contextlib.AsyncExitStack() as stack:
            first, second, third, fourth = [
                await stack.enter_async_context(connected(served)) for _ in range(4)
            ]
            assert (await first.request("POST", "/validate", REVIEW))[0] == 200  # now the most recent
            newest = await stack.enter_async_context(connected(served))
            assert await second.closed_by_server()  # the least recently active: accepted, never used
            assert (await newest.request("POST", "/validate", REVIEW))[0] == 200
            assert (await first.request("POST", "/validate", REVIEW))[0] == 200
            assert not await third.closed_by_server(timeout=0.2)
            del fourth
            _, _, text = await first.request("GET", "/metrics")
    assert sample(text.decode(), "immutable_os_webhook_connections_dropped_total", reason="evicted") == 1


async def test_when_every_connection_is_being_answered_a_new_one_waits_instead_of_failing(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two connections, both with a review being answered: a third is not accepted (no 503, no reset)
    until one answer is out, then it is served."""
    release = threading.Event()
    read_json = edge.BodyReader.read_json

    async def held(self: edge.BodyReader, scope: Any, receive: Any) -> Any:
        body = await read_json(self, scope, receive)
        for _ in range(1000):  # bounded: 10 s
            if release.is_set():
                break
            await asyncio.sleep(0.01)
        return body

    monkeypatch.setattr(edge.BodyReader, "read_json", held)
    with serving(service_for(), pki, limits=ConnectionLimits(max_connections=2)) as served:
        async with connected(served) as a, connected(served) as b:
            answers = [asyncio.create_task(c.request("POST", "/validate", REVIEW)) for c in (a, b)]
            await asyncio.sleep(0.2)  # both reviews are in and held
            third = asyncio.create_task(_connect_and_ask(served))
            done, _ = await asyncio.wait([third], timeout=0.5)
            assert not done, "a third connection was served while both others were being answered"
            release.set()
            assert [(await t)[0] for t in answers] == [200, 200]
            assert await asyncio.wait_for(third, timeout=10) == 200


async def test_answered_connections_a_client_never_lets_go_of_make_room(pki: Pki) -> None:
    """Two clients ask with `Connection: close`, then neither read nor close (blocking TLS sockets that
    are never read do not answer the server's TLS close, which waits up to 30 s here). A third client is
    still served, well before that."""
    limits = ConnectionLimits(max_connections=2, tls_close_seconds=30)
    request = (f"POST /validate HTTP/1.1\r\nHost: webhook\r\nConnection: close\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(REVIEW)}\r\n\r\n").encode() + REVIEW  # fmt: skip
    with serving(service_for(), pki, limits=limits) as served, contextlib.ExitStack() as stack:
        for _ in range(2):
            raw = stack.enter_context(socket.create_connection((HOST, served.port), timeout=10))
            tls = stack.enter_context(pki.client_context().wrap_socket(raw, server_hostname=HOST))
            tls.sendall(request)
        await asyncio.sleep(0.5)  # both answered; their TLS closes wait on clients that do not read
        assert await asyncio.wait_for(_connect_and_ask(served), timeout=10) == 200


async def _connect_and_ask(served: Served) -> int:
    async with connected(served) as conn:
        return (await conn.request("POST", "/validate", REVIEW))[0]


# --- 2,000 held and slow connections against the real process -----------------------------------------


def chart_memory_limit_bytes() -> int:
    values = yaml.safe_load((REPO / "charts/immutable-os-webhook/values.yaml").read_text())
    limit = values["deployment"]["resources"]["limits"]["memory"]
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", limit).groups()  # type: ignore[union-attr]
    return int(number) * {"Mi": 1024**2, "Gi": 1024**3}[unit]


def memory_of(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak so far) of a process, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(re.search(rf"^{k}:\s+(\d+) kB", status, re.M).group(1)) * 1024 for k in ("VmRSS", "VmHWM")}  # type: ignore[union-attr]


@pytest.fixture
def enough_file_descriptors() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = HELD_CONNECTIONS + 1024
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs {wanted} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_2000_held_and_slow_connections_stay_under_the_charts_memory_limit(
    pki: Pki, enough_file_descriptors: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 connections (TCP only, TLS idle, a head that never ends, a near-cap body trickling in) from
    one client: the server keeps at most its cap of them, its peak RSS stays under the chart's memory
    limit, and a normal client is answered within 1 s meanwhile."""
    # The client's own asyncio TLS connections would hold 256 KiB each; this test's memory is not the point.
    monkeypatch.setattr(asyncio.sslproto.SSLProtocol, "max_size", 16 * 1024)
    process = Process(pki, "--example-nodes")
    held: list[Any] = []
    try:
        context = pki.client_context()
        before = memory_of(process.proc.pid)
        for start in range(0, HELD_CONNECTIONS, 100):  # bounded: 20 batches of 100
            batch = [hold(process.port, context, i % 4) for i in range(start, start + 100)]
            held += await asyncio.gather(*batch, return_exceptions=True)
        opened = sum(1 for h in held if not isinstance(h, BaseException))
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=process.url, verify=context) as client:
            answer = await asyncio.wait_for(client.post("/validate", content=REVIEW, headers=JSON), 1.0)
        answered_in = time.monotonic() - started
        metrics = process.client.get("/metrics").text
        after = memory_of(process.proc.pid)
    finally:
        for h in held:
            if not isinstance(h, BaseException):
                h[1].transport.abort()
        await asyncio.sleep(0.5)  # let the aborts reach the sockets before the server drains
        exit_code = process.stop()
    limit = chart_memory_limit_bytes()
    print(  # the figures docs/operations.md quotes
        f"\n{opened} of {HELD_CONNECTIONS} connections opened; server RSS {before['VmRSS'] >> 20} MiB before, "
        f"{after['VmRSS'] >> 20} MiB after, peak {after['VmHWM'] >> 20} MiB (limit {limit >> 20} MiB); "
        f"normal review answered in {answered_in * 1000:.0f} ms; open "
        f"{sample(metrics, 'immutable_os_webhook_connections'):.0f}, evicted "
        f"{sample(metrics, 'immutable_os_webhook_connections_dropped_total', reason='evicted'):.0f}"
    )
    assert exit_code == 0
    assert opened == HELD_CONNECTIONS
    assert answer.status_code == 200
    assert after["VmHWM"] < limit
    assert (sample(metrics, "immutable_os_webhook_connections") or 0) <= ConnectionLimits().max_connections

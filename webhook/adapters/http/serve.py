"""Running the app: uvicorn over TLS from the certificate reloader, its connections bounded, until SIGTERM.

`WebhookServer` is uvicorn's server with two parts of its own. Startup: our accept loop, so a connection
counts from accept (TLS handshake included), the cap holds before a handshake is paid for, and the
handshake has a deadline. Shutdown, the drain: the apiserver's Go client does not retry a POST it wrote
into a connection the server was closing ("failed calling webhook ... EOF"), so on SIGTERM no waiting
connection is closed. Every answer from then on says `Connection: close`, so each open connection ends
after its next request, at the client's end of it. New connections are still served (and closed) while
any remain, for clients that reach this replica before its endpoint is gone everywhere. The drain ends
when no connection is left, or after `drain_seconds`: then the listener closes (connections the kernel
had queued are served first), connections still idle are closed, and those in the middle of a request
get LAST_CALL_SECONDS to be answered. A graceful stop returns from `serve` (exit code 0), so the caller
can stop the cluster watch after it.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import ctypes
import logging
import platform
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType

import uvicorn
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webhook.adapters.http.connections import (
    Connection,
    ConnectionLimits,
    Connections,
    GuardedH11Protocol,
    Phase,
)
from webhook.adapters.http.metrics import ConnectionMetrics
from webhook.adapters.tls import CertReloader, apply_to_uvicorn

logger = logging.getLogger("webhook.serve")

# asyncio gives every TLS connection a 256 KiB read buffer from its accept on (a class attribute of
# SSLProtocol, no parameter), which is 280 KiB a connection and 560 MB for 2,000 held ones. 16 KiB, one
# TLS record, makes it ~42 KiB; a large body then takes more, smaller reads, which costs nothing here.
# Set for the whole process at startup: the serve process has no other asyncio TLS.
TLS_READ_BUFFER_BYTES = 16 * 1024
# h11's limit on a request head (the request line and headers; the apiserver sends ~1 KB): larger is 400.
MAX_HEAD_BYTES = 16 * 1024
# The drain ends within this, below the chart's terminationGracePeriodSeconds minus its preStop sleep.
DRAIN_SECONDS = 15.0
# When the drain ends, connections in the middle of a request get this long to be answered.
LAST_CALL_SECONDS = 1.0
# glibc serves a large allocation with mmap and gives it back on free, but raises that threshold to the
# largest block freed so far (up to 32 MiB): after one 6 MB review, later bodies come from the heap, whose
# freed pages it keeps. A fixed threshold keeps them on mmap. Measured with bench/fuzz.py (8,000 fuzzed
# reviews): RSS 63 -> 77 MiB without it, 63 -> 69 MiB with it.
MMAP_THRESHOLD_BYTES = 128 * 1024
M_MMAP_THRESHOLD = -3  # mallopt's parameter number, glibc's malloc.h


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    cert_file: str
    key_file: str
    cert_check_seconds: float = 2.0
    drain_seconds: float = DRAIN_SECONDS
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)


class CloseWhenDraining:
    """ASGI: once the server drains, every answer says `Connection: close`; uvicorn then closes the
    connection after it, and the client knows not to send another request on it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.draining = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.draining:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


class WebhookServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        options: ServeOptions,
        metrics: ConnectionMetrics,
        answers: CloseWhenDraining,
    ) -> None:
        super().__init__(config)
        self.options = options
        self.connections = Connections(options.limits, metrics)
        self.answers = answers
        self._listeners: list[socket.socket] = []
        self._listening = True
        #: Accepted while no connection could make room; admitted as soon as one can.
        self._waiting: list[socket.socket] = []
        self._resumer: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if getattr(asyncio.sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER_BYTES:
            asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER_BYTES
        await self.lifespan.startup()
        try:
            self._listeners = list(sockets) if sockets else _bind(self.config.host, self.config.port)
        except OSError as err:
            logger.error("cannot listen", extra={"fields": {"error": str(err)}})
            raise SystemExit(3) from None  # uvicorn's exit code for a failed startup
        for listener in self._listeners:
            listener.listen(self.config.backlog)
            listener.setblocking(False)
        self._listen()
        self.servers = []
        where = [f"https://{_address(s)}" for s in self._listeners]
        logger.info("serving", extra={"fields": {"listening": where, **_limits(self.options)}})
        self.started = True

    # Accepting is a reader callback on each listener, as in asyncio's own servers: an accepted socket is
    # admitted (or held for room) before the callback returns, so stopping can never drop one.

    def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self._listeners:
            loop.add_reader(listener.fileno(), self._accept, listener)

    def _pause(self, delay: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        for listener in self._listeners:
            loop.remove_reader(listener.fileno())
        if self._resumer is None:
            self._resumer = loop.create_task(self._resume(delay))

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(self.config.backlog):  # bounded per wake-up; the loop calls again while any wait
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # out of file descriptors, most likely: stop a moment
                logger.warning("accept failed", extra={"fields": {"error": str(err)}})
                self._pause(0.1)
                return
            # Room is made for a connection that is here, not ahead of one. With every connection being
            # answered it waits, and the connections behind it in the kernel's queue.
            if not self.connections.make_room():
                self._waiting.append(sock)
                self._pause()
                return
            self._admit(sock)

    async def _resume(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            while self._waiting:
                if self.connections.make_room():
                    self._admit(self._waiting.pop(0))
                else:
                    await self.connections.changed()
            if self._listening:
                self._listen()
        finally:
            self._resumer = None

    def _stop_accepting(self) -> None:
        self._listening = False
        if self._resumer is not None:
            self._resumer.cancel()
        for sock in self._waiting:
            self._admit(sock)  # served in the last call, past the cap if need be
        self._waiting.clear()
        loop = asyncio.get_running_loop()
        for listener in self._listeners:
            loop.remove_reader(listener.fileno())
            # Connections the kernel has queued are taken and served first: closing the listener with
            # them in its queue would reset them.
            with contextlib.suppress(OSError):  # BlockingIOError: the queue is empty
                while True:
                    self._admit(listener.accept()[0])
            listener.close()
        logger.info("stopped listening", extra={"fields": {"connections": len(self.connections)}})

    def _admit(self, sock: socket.socket) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # answers go out unbatched
        connection = self.connections.open()
        connection.handshake = asyncio.create_task(self._handshake(sock, connection))

    async def _handshake(self, sock: socket.socket, connection: Connection) -> None:
        loop = asyncio.get_running_loop()
        limits, tls = self.options.limits, self.config.ssl
        try:
            await loop.connect_accepted_socket(
                lambda: GuardedH11Protocol(self.config, self.server_state, self.lifespan.state, connection,
                                           self.connections),
                sock=sock,
                ssl=tls,
                ssl_handshake_timeout=limits.handshake_seconds if tls else None,
                ssl_shutdown_timeout=limits.tls_close_seconds if tls else None,
            )  # fmt: skip
        except asyncio.CancelledError:  # evicted, or the server is stopping
            self.connections.discard(connection)
            sock.close()
        except (OSError, TimeoutError) as err:  # ssl.SSLError is an OSError
            self.connections.discard(connection)
            self.connections.metrics.dropped.labels("handshake").inc()
            logger.debug("TLS handshake failed", extra={"fields": {"error": str(err) or type(err).__name__}})
            sock.close()
        finally:
            connection.handshake = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """The drain: see the module's docstring."""
        started = time.monotonic()
        deadline = started + self.options.drain_seconds
        self.answers.draining = True
        for connection in self.connections:
            protocol = connection.protocol
            if protocol is not None and protocol.cycle is not None and not protocol.cycle.response_complete:
                protocol.cycle.keep_alive = False  # an answer already under way: closed after it is sent
        at_start = len(self.connections)
        fields: dict[str, float] = {"connections": at_start, "deadline_seconds": self.options.drain_seconds}
        logger.info("draining", extra={"fields": fields})
        # Still accepting: a client that reaches this replica yet (its endpoint is not gone from every
        # node, or every replica is terminating) is answered, and told to close, rather than refused.
        while len(self.connections) and not self.force_exit and time.monotonic() < deadline:
            await self.connections.wait_closed(min(0.1, max(0.0, deadline - time.monotonic())))
        self._stop_accepting()
        idle = 0
        if not self.force_exit:
            # Last call. An idle connection (answered, nothing sent since) is closed now: the one close a
            # client can race, and only for a connection it left unused through the whole drain. One
            # that is being opened, sent a request or answered gets LAST_CALL_SECONDS to finish.
            for connection in self.connections:
                if connection.phase is Phase.WAITING and connection.served:
                    connection.close_idle()
                    idle += 1
            last_call = time.monotonic() + LAST_CALL_SECONDS
            while len(self.connections) and time.monotonic() < last_call:
                await self.connections.wait_closed(min(0.1, max(0.0, last_call - time.monotonic())))
        cut = [c for c in self.connections if not c.closing]
        for connection in self.connections:
            connection.abort()  # closing ones too: a client that never acknowledges a TLS close
        self.connections.metrics.dropped.labels("drain-deadline").inc(idle + len(cut))
        for task in list(self.server_state.tasks):
            task.cancel()
        fields = {"connections": at_start, "idle_closed": idle, "cut": len(cut),
                  "seconds": round(time.monotonic() - started, 3)}  # fmt: skip
        logger.info("drained", extra={"fields": fields})
        if not self.force_exit:
            await self.lifespan.shutdown()


def _bind(host: str, port: int) -> list[socket.socket]:
    """A listening socket per address `host` resolves to, as asyncio's create_server makes them."""
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        ):
            sock = socket.socket(family, kind, proto)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError:
        for sock in listeners:
            sock.close()
        raise
    return listeners


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _limits(options: ServeOptions) -> dict[str, float]:
    limits = options.limits
    return {"max_connections": limits.max_connections, "drain_seconds": options.drain_seconds,
            "header_seconds": limits.header_seconds, "body_seconds": limits.body_seconds,
            "keep_alive_seconds": limits.keep_alive_seconds}  # fmt: skip


def build_uvicorn(
    app: ASGIApp, options: ServeOptions, reloader: CertReloader, metrics: ConnectionMetrics | None = None
) -> WebhookServer:
    limits = options.limits
    answers = CloseWhenDraining(app)
    config = uvicorn.Config(
        answers,
        host=options.host,
        port=options.port,
        http="h11",
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="off",
        timeout_keep_alive=int(limits.keep_alive_seconds),
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        proxy_headers=False,  # nothing sits in front of the webhook that it should believe
    )
    apply_to_uvicorn(config, reloader)
    return WebhookServer(config, options, metrics or ConnectionMetrics(CollectorRegistry()), answers)


async def serve(
    app: ASGIApp, options: ServeOptions, reloader: CertReloader, metrics: ConnectionMetrics | None = None
) -> None:
    """Serve until SIGTERM/SIGINT, then drain (see the module's docstring) and return."""
    _return_large_allocations()
    server = build_uvicorn(app, options, reloader, metrics)
    watcher = asyncio.create_task(reloader.run(options.cert_check_seconds))
    try:
        with _return_after_stop_signal():
            await server.serve()
    finally:
        watcher.cancel()


def _return_large_allocations() -> bool:
    """Fix glibc's mmap threshold (see MMAP_THRESHOLD_BYTES); False where the C library is not glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


@contextlib.contextmanager
def _return_after_stop_signal() -> Iterator[None]:
    # After its graceful shutdown uvicorn re-raises the signal under the handler it found. The default
    # handler would kill the process there (exit 143 after SIGTERM), before `serve` returns and the
    # caller stops the cluster watch; a no-op handler underneath makes a graceful stop a plain return.
    if threading.current_thread() is not threading.main_thread():
        yield  # uvicorn handles no signals off the main thread either
        return
    previous = {sig: signal.signal(sig, _stop_signal_handled) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_signal_handled(signum: int, frame: FrameType | None) -> None:
    """uvicorn has already shut down gracefully for this signal."""

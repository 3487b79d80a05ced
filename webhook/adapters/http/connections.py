"""Client connections: how many may be open, how long each may take to send a request, and which one goes
when there are too many.

Every phase that waits on the client has a deadline: the TLS handshake, the request head (from the first
byte, or from the connection for its first request), the body (from the end of the head), and idling
between requests (keep-alive). Only answering, which is ours, has none. A connection cut for a deadline
is aborted at once: a client that sends nothing would not answer a TLS close either.

At the cap a new connection takes the place of the one that made progress least recently (accepted, or
started or finished a request longest ago) among those not being answered. Held and slow connections
are always the least recent, so they go first; the apiserver's busy keep-alive connections stay. When
all are being answered, new ones wait in the kernel's accept queue until one is done, which for an
admission webhook (a few milliseconds a review) is soon. uvicorn's `limit_concurrency` would instead
answer 503 above the limit, counting idle connections too: held connections would make every real
review fail, and the apiserver retries nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from webhook.adapters.http.metrics import ConnectionMetrics

logger = logging.getLogger("webhook.connections")


@dataclass(frozen=True)
class ConnectionLimits:
    # Several apiservers, each with its burst of admission calls, split over the replicas: a few hundred
    # connections per replica at most. 512 TLS connections hold ~25 MB (see TLS_READ_BUFFER_BYTES).
    max_connections: int = 512
    handshake_seconds: float = 10.0
    header_seconds: float = 10.0
    body_seconds: float = 10.0
    # Longer than the 90 s after which the apiserver's Go client closes an idle connection itself: the
    # client, not the server, ends an idle connection, so it never sends a review into one being closed.
    keep_alive_seconds: float = 120.0
    # How long a TLS close may wait for the client's close_notify before the socket is dropped.
    tls_close_seconds: float = 5.0


class Phase(enum.Enum):
    HANDSHAKE = "handshake"
    WAITING = "waiting"  # no request bytes: before the first request, or idle between two
    HEAD = "head"
    BODY = "body"
    ANSWERING = "answering"  # the request is in; the app judges it and writes the answer
    CLOSING = "closing"  # answered with `Connection: close`; the TLS close may wait on the client


class Connection:
    """One accepted connection, from accept to close."""

    __slots__ = ("handshake", "phase", "protocol", "served")

    def __init__(self) -> None:
        self.phase = Phase.HANDSHAKE
        self.handshake: asyncio.Task[Any] | None = None
        self.protocol: GuardedH11Protocol | None = None
        #: Answers completed on this connection.
        self.served = 0

    @property
    def closing(self) -> bool:
        return (
            self.protocol is not None
            and self.protocol.transport is not None
            and (self.protocol.transport.is_closing())
        )

    def close_idle(self) -> None:
        """Close a connection between requests as keep-alive ends: a TLS close the client can read."""
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.timeout_keep_alive_handler()

    def abort(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.abort()
        elif self.handshake is not None:
            self.handshake.cancel()


class Connections:
    """The open connections, least recently active first. Used from the event loop's thread only."""

    def __init__(self, limits: ConnectionLimits, metrics: ConnectionMetrics) -> None:
        self.limits = limits
        self.metrics = metrics
        self._lru: OrderedDict[Connection, None] = OrderedDict()
        # Set when a connection closes or stops being answered: room may have been made.
        self._changed = asyncio.Event()
        metrics.open.set_function(lambda: float(len(self._lru)))

    def __len__(self) -> int:
        return len(self._lru)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._lru))

    def open(self) -> Connection:
        connection = Connection()
        self._lru[connection] = None
        return connection

    def touch(self, connection: Connection) -> None:
        if connection in self._lru:
            self._lru.move_to_end(connection)

    def discard(self, connection: Connection) -> None:
        if self._lru.pop(connection, False) is None:
            self._changed.set()

    def enter(self, connection: Connection, phase: Phase) -> None:
        if connection.phase is Phase.ANSWERING and phase is not Phase.ANSWERING:
            self._changed.set()
        connection.phase = phase

    def make_room(self) -> bool:
        """Make room for one more connection, evicting the least recently active one that is not being
        answered if the cap is reached; False if every connection is being answered."""
        while len(self._lru) >= self.limits.max_connections:
            victim = next((c for c in self._lru if c.phase is not Phase.ANSWERING), None)
            if victim is None:
                return False
            self.metrics.dropped.labels("evicted").inc()
            logger.debug("evicted a connection", extra={"fields": {"phase": victim.phase.value}})
            victim.abort()
            self.discard(victim)
        return True

    async def changed(self) -> None:
        """Return when a connection closes or stops being answered."""
        self._changed.clear()
        await self._changed.wait()

    async def wait_closed(self, timeout: float) -> None:
        """Return when a connection closes (or stops being answered), or after `timeout` seconds."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on every phase that waits on the client, and the
    phase recorded where `Connections` can see it."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        connection: Connection,
        connections: Connections,
    ) -> None:
        super().__init__(config, server_state, app_state)
        self.connection = connection
        self.tracked = connections  # not `connections`: uvicorn's protocol has a set by that name
        self.limits = connections.limits
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_reason = ""
        connection.protocol = self

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        # The first request's head must be in within header_seconds of the connect.
        self._enter(Phase.WAITING, self.limits.header_seconds, "header-timeout")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.tracked.discard(self.connection)
        super().connection_lost(exc)
        # uvicorn cancels its keep-alive timer only on a clean close. After a reset (a client that hangs
        # up before reading its answer) the timer, a bound method, kept this protocol, its TLS objects
        # and its request for keep_alive_seconds: ~50 KB a hang-up, 120 s long.
        self._unset_keepalive_if_required()

    def data_received(self, data: bytes) -> None:
        if self.connection.phase is Phase.WAITING:
            if self._deadline_reason == "idle":  # a later request: its head within header_seconds
                self._enter(Phase.HEAD, self.limits.header_seconds, "header-timeout")
            else:  # the first request: the deadline armed at the connect runs on
                self.tracked.enter(self.connection, Phase.HEAD)
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def _follow(self) -> None:
        """Move to the phase h11's state says the request is in."""
        if self.transport is None:
            return
        if self.transport.is_closing():
            # Answered and closing: nothing of ours is left to do, so it may make room at once rather
            # than when a client that never acknowledges the TLS close lets go.
            if self.connection.phase is not Phase.CLOSING:
                self._enter(Phase.CLOSING, None, "")
            return
        their, phase = self.conn.their_state, self.connection.phase
        answering = self.cycle is not None and not self.cycle.response_complete
        if their is h11.SEND_BODY:
            if phase is not Phase.BODY:
                self.tracked.touch(self.connection)
                self._enter(Phase.BODY, self.limits.body_seconds, "body-timeout")
        elif their in (h11.DONE, h11.MUST_CLOSE) and answering:
            if phase is not Phase.ANSWERING:
                self.tracked.touch(self.connection)
                self._enter(Phase.ANSWERING, None, "")
        elif their is h11.IDLE and not answering and phase in (Phase.BODY, Phase.ANSWERING):
            self.connection.served += 1
            self.tracked.touch(self.connection)
            self._enter(Phase.WAITING, self.limits.keep_alive_seconds, "idle")

    def _enter(self, phase: Phase, seconds: float | None, reason: str) -> None:
        self.tracked.enter(self.connection, phase)
        self._disarm()
        self._deadline_reason = reason
        if seconds is not None:
            self._deadline = self.loop.call_later(seconds, self._expired, reason)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, reason: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if reason == "idle":
            self.connection.close_idle()
            return
        self.tracked.metrics.dropped.labels(reason).inc()
        logger.debug("cut a slow connection", extra={"fields": {"reason": reason, "client": self.client}})
        self.transport.abort()

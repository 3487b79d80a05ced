"""The thin loop around `events.reduce`: list, watch with bookmarks, back off; a daemon thread each.

The admission path never waits on the API: each mirror hands a fresh read-only snapshot to a callback
after every change, and reports how fresh it is so the server can stop judging with a stale inventory.
Objects are kept as wire-format dicts (what `kubectl get -o json` shows, camelCase keys), parsed from the
raw JSON, never the client's snake_case models. What each answer does to the collection, and whether to
publish, read on or retry, is decided by `events.reduce`; this module only talks HTTP and waits.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes.client
import urllib3.exceptions

from webhook.adapters.cluster.events import (
    Collection,
    Failed,
    Happening,
    Line,
    Listed,
    Publish,
    Retry,
    Snapshot,
    WatchEnded,
    WatchOpened,
    is_stale,
    reduce,
)

logger = logging.getLogger("webhook.adapters.cluster")

OnChange = Callable[[Snapshot], None]
ListFunction = Callable[..., Any]
"""A generated list call such as `CoreV1Api.list_node`: takes `watch`, `resource_version`, ... kwargs."""


def publish_to(*consumers: OnChange) -> OnChange:
    """One on_change callback that hands each snapshot to every consumer, in order."""

    def publish(snapshot: Snapshot) -> None:
        for consumer in consumers:
            consumer(snapshot)

    return publish


# The server ends a watch after timeoutSeconds; silence much longer than that means a connection that
# died without closing (a half-open one, a middlebox that dropped the flow), so the socket read timeout is
# the watch timeout plus a grace: as long again, at most this.
_WATCH_READ_GRACE_SECONDS = 30.0
#: How long the server keeps a watch open before the client renews it, at most.
MAX_WATCH_TIMEOUT_SECONDS = 300


def watch_timeout_within(max_staleness_seconds: float) -> int:
    """The watch renewal period for a staleness allowance: half of it, at most 300 s, at least 1 s.

    A quiet collection gives no event and, before the apiserver's minute bookmark, no bookmark either; the
    renewal is then the only sign of life. Renewing within half the allowance keeps a healthy but quiet
    watch from looking stale, while a real outage still turns stale after the allowance.
    """
    return max(1, min(MAX_WATCH_TIMEOUT_SECONDS, int(max_staleness_seconds / 2)))


_READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: after n failures, wait in [0, min(max, initial * 2^(n-1))].

    The default ceiling is 2 s. client-go's reflector backs off 800 ms doubling to 30 s, which suits
    thousands of kubelets; this is 2 mirrors a replica, and a node that appears after an outage must reach
    the inventory within seconds: with a 2 s ceiling the first attempt after the API is back comes at most
    2 s later. While the API is down that costs each mirror one connection attempt a second on average (a
    watch from the last resourceVersion, served from the apiserver's cache; lists only follow a 410).
    """

    initial_seconds: float = 0.5
    max_seconds: float = 2.0

    def delay(self, failures: int, uniform: Callable[[], float] = random.random) -> float:
        if failures <= 0:
            return 0.0
        # Cap the exponent too, so a long outage cannot overflow the float.
        ceiling = min(self.max_seconds, self.initial_seconds * 2.0 ** min(failures - 1, 62))
        return uniform() * ceiling


DEFAULT_BACKOFF = Backoff()


class _Stopped(Exception):
    """stop() was called; unwinds the worker without counting a failure."""


class ObjectMirror:
    """An in-memory copy of one cluster-scoped collection, kept current by list+watch in a daemon thread."""

    def __init__(
        self,
        resource: str,
        list_objects: ListFunction,
        on_change: OnChange,
        *,
        watch_timeout_seconds: int = MAX_WATCH_TIMEOUT_SECONDS,
        connect_timeout_seconds: float = 10.0,
        list_timeout_seconds: float = 60.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
        uniform: Callable[[], float] = random.random,
    ) -> None:
        self.resource = resource
        self._list_objects = list_objects
        self._on_change = on_change
        self._watch_timeout_seconds = watch_timeout_seconds
        self._connect_timeout_seconds = connect_timeout_seconds
        self._list_timeout_seconds = list_timeout_seconds
        self._backoff = backoff
        self._clock = clock
        self._uniform = uniform

        # Replaced whole by the worker thread only; readers see one value or the next, never a mix.
        self._state = Collection()
        self._snapshot: Snapshot = self._state.objects

        self._lock = threading.Lock()  # guards _response, which stop() shuts down from another thread
        self._response: urllib3.BaseHTTPResponse | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # What readers see ----------------------------------------------------------------------------

    @property
    def state(self) -> Collection:
        """The collection as the worker last left it (objects may be ahead of the published snapshot)."""
        return self._state

    @property
    def synced(self) -> bool:
        """True once the first list has been applied and published."""
        return self._state.synced

    @property
    def last_sync_monotonic(self) -> float:
        """clock() of the last list, watch opening, event, bookmark or clean watch renewal (0 if none)."""
        return self._state.alive_at or 0.0

    @property
    def restarts(self) -> int:
        """Times the loop started over after an error or a dropped connection (410s are `relists`)."""
        return self._state.restarts

    @property
    def relists(self) -> int:
        """Times the resourceVersion expired (410 Gone) and the collection was listed again."""
        return self._state.relists

    @property
    def failures(self) -> int:
        """Failed attempts in a row (the backoff step); 0 once a list succeeds or a watch is established."""
        return self._state.failures

    @property
    def resource_version(self) -> str | None:
        """The resourceVersion the next watch starts from; None before the first list."""
        return self._state.resource_version

    @property
    def objects(self) -> Snapshot:
        """The last published snapshot (empty before the first list)."""
        return self._snapshot

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def is_stale(self, max_age_seconds: float) -> bool:
        """Not yet synced, or no sign of life from the API for longer than `max_age_seconds`.

        During an outage the last snapshot stays in use until then. A healthy quiet watch shows life at
        least once per watch timeout (a bookmark or a renewal), so `max_age_seconds` must be larger than
        `watch_timeout_seconds`.
        """
        return is_stale(self._state, self._clock(), max_age_seconds)

    # Lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"the {self.resource} mirror is already running")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"mirror-{self.resource}", daemon=True)
        self._thread.start()

    def stop(self, timeout_seconds: float = 2.0) -> bool:
        """Stop the worker, cutting an open list or watch; returns within `timeout_seconds` regardless.

        True if the worker has ended; if not, it is a daemon thread that will end at its next check.
        """
        self.request_stop()
        return self.join(timeout_seconds)

    def request_stop(self) -> None:
        """Tell the worker to stop and cut its open connection, without waiting."""
        self._stopping.set()
        with self._lock:
            if self._response is not None:
                _shutdown(self._response)

    def join(self, timeout_seconds: float) -> bool:
        """Wait up to `timeout_seconds` for the worker to end; True if it has (or never started)."""
        if self._thread is not None:
            self._thread.join(timeout_seconds)
        if self.running:
            logger.warning("%s mirror did not stop within %.1fs", self.resource, timeout_seconds)
            return False
        return True

    # The loop ------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                retry = self._list() if self._state.must_list else None
                if retry is None:
                    retry = self._watch()
            except _Stopped:
                break
            if retry is None or self._stopping.is_set():
                continue  # listed and the watch renewed cleanly: watch again at once
            delay = self._backoff.delay(retry.backoff_step, self._uniform)
            self._log_retry(retry, delay)
            self._stopping.wait(delay)
        logger.debug("%s mirror stopped", self.resource)

    def _list(self) -> Retry | None:
        try:
            response = self._hold(
                self._list_objects(
                    _preload_content=False,
                    _request_timeout=(self._connect_timeout_seconds, self._list_timeout_seconds),
                )
            )
            try:
                body = response.read()
            finally:
                self._release(response)
        except _Stopped:
            raise
        except Exception as error:
            return self._failed(error)
        retry = self._feed(Listed(body, self._clock()))
        if retry is None:
            state = self._state
            logger.info(
                "%s listed: %d objects at resourceVersion %s",
                self.resource,
                len(state.objects),
                state.resource_version,
            )
        return retry

    def _watch(self) -> Retry | None:
        """Watch from the current resourceVersion until the stream ends; the Retry if it ended in trouble."""
        try:
            opened = self._list_objects(
                watch=True,
                resource_version=self._state.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_timeout_seconds,
                _preload_content=False,
                _request_timeout=(
                    self._connect_timeout_seconds,
                    self._watch_timeout_seconds + min(_WATCH_READ_GRACE_SECONDS, self._watch_timeout_seconds),
                ),
            )
        except Exception as error:
            return self._failed(error)
        response = self._hold(opened)
        try:
            self._feed(WatchOpened(self._clock()))
            pending = b""
            while chunk := response.read1(_READ_SIZE):
                *lines, pending = (pending + chunk).split(b"\n")
                retry = self._apply_read(lines)
                if retry is not None:
                    return retry
        except Exception as error:
            return self._failed(error)
        finally:
            self._release(response)
        if self._stopping.is_set():
            raise _Stopped
        retry = self._feed(WatchEnded(self._clock()))
        if retry is None:
            logger.debug(
                "%s watch renewed at resourceVersion %s", self.resource, self._state.resource_version
            )
        return retry

    def _apply_read(self, lines: list[bytes]) -> Retry | None:
        """Reduce the lines of one read, publishing once at the end: bursts coalesce."""
        changed = False
        retry = None
        for line in lines:
            if line.strip():
                step = reduce(self._state, Line(line, self._clock()))
                self._state = step.state
                if isinstance(step.action, Retry):
                    retry = step.action
                    break
                changed = changed or isinstance(step.action, Publish)
        # Publish what did apply even if a later line in the same read failed.
        if changed:
            self._publish()
        return retry

    def _feed(self, happening: Happening) -> Retry | None:
        step = reduce(self._state, happening)
        if self._state.failures > 1 and step.state.failures == 0:
            logger.info(
                "%s: the API answers again after %d failed attempts", self.resource, self._state.failures
            )
        self._state = step.state
        if isinstance(step.action, Publish):
            self._publish()
        return step.action if isinstance(step.action, Retry) else None

    def _failed(self, error: Exception) -> Retry:
        if self._stopping.is_set():
            raise _Stopped from error
        status = error.status if isinstance(error, kubernetes.client.ApiException) else None
        retry = self._feed(Failed(self._cause(error), self._clock(), status))
        if retry is None:  # every failure is a Retry; this keeps the type checker and a future bug honest
            raise AssertionError(f"a failure did not call for a retry: {error!r}")
        if not isinstance(error, kubernetes.client.ApiException | urllib3.exceptions.HTTPError | OSError):
            logger.error("%s list+watch failed unexpectedly", self.resource, exc_info=error)
        return retry

    def _cause(self, error: Exception) -> str:
        if isinstance(error, kubernetes.client.ApiException):
            # Only status and reason: the body and headers are the server's, and need not be logged.
            cause = f"HTTP {error.status} {error.reason}"
            if error.status in (401, 403):
                cause += f" (the webhook's service account needs list and watch on {self.resource})"
            return cause
        return f"{type(error).__name__}: {error}"

    def _log_retry(self, retry: Retry, delay: float) -> None:
        if retry.expired:
            logger.info("%s watch expired (%s); listing again in %.2fs", self.resource, retry.reason, delay)
            return
        # An outage means an attempt every second or so: warn at the 1st, 2nd, 4th, 8th... failure in a row.
        failures = retry.backoff_step
        level = logging.WARNING if failures & (failures - 1) == 0 else logging.DEBUG
        step = "list" if retry.listing else "watch"
        logger.log(
            level,
            "%s %s failed (%d in a row): %s; retrying in %.2fs",
            self.resource,
            step,
            failures,
            retry.reason,
            delay,
        )

    def _publish(self) -> None:
        self._snapshot = self._state.objects
        try:
            self._on_change(self._snapshot)
        except Exception:
            # The consumer's bug must not stop the mirror; it will get the next snapshot.
            logger.exception("%s on_change callback failed", self.resource)

    def _hold(self, response: urllib3.BaseHTTPResponse) -> urllib3.BaseHTTPResponse:
        """Make `response` the one stop() will cut; if stop() already ran, cut it now."""
        with self._lock:
            if self._stopping.is_set():
                response.close()
                raise _Stopped
            self._response = response
        return response

    def _release(self, response: urllib3.BaseHTTPResponse) -> None:
        with self._lock:
            self._response = None
        # Closing drops the connection rather than returning a half-read one to the pool.
        response.close()
        response.release_conn()


def _shutdown(response: urllib3.BaseHTTPResponse) -> None:
    # shutdown() unblocks a read in the worker thread at once; close() from here could hang on TLS.
    try:
        response.shutdown()
    except (OSError, ValueError, RuntimeError) as error:
        logger.debug("could not shut down the open response: %s", error)


class ClusterMirror:
    """The two mirrors the webhook needs: Nodes (placement) and Namespaces (per-namespace mode labels)."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        on_nodes: OnChange,
        on_namespaces: OnChange,
        *,
        watch_timeout_seconds: int = MAX_WATCH_TIMEOUT_SECONDS,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        core = kubernetes.client.CoreV1Api(api_client)

        def mirror(resource: str, list_objects: ListFunction, on_change: OnChange) -> ObjectMirror:
            return ObjectMirror(
                resource,
                list_objects,
                on_change,
                watch_timeout_seconds=watch_timeout_seconds,
                backoff=backoff,
                clock=clock,
            )

        self.nodes = mirror("nodes", core.list_node, on_nodes)
        self.namespaces = mirror("namespaces", core.list_namespace, on_namespaces)

    @property
    def synced(self) -> bool:
        return self.nodes.synced and self.namespaces.synced

    def is_stale(self, max_age_seconds: float) -> bool:
        return self.nodes.is_stale(max_age_seconds) or self.namespaces.is_stale(max_age_seconds)

    def start(self) -> None:
        self.nodes.start()
        self.namespaces.start()

    def stop(self, timeout_seconds: float = 2.0) -> bool:
        """Stop both mirrors within `timeout_seconds` in total; True if both workers have ended."""
        # Ask both before waiting on either, so the total wait is one timeout, not two.
        self.nodes.request_stop()
        self.namespaces.request_stop()
        deadline = time.monotonic() + timeout_seconds
        nodes_ended = self.nodes.join(timeout_seconds)
        return self.namespaces.join(max(0.0, deadline - time.monotonic())) and nodes_ended

"""Live in-memory mirrors of the cluster's Nodes and Namespaces, kept by list+watch in background threads.

The admission path never waits on the API: each mirror hands a fresh read-only snapshot to a callback
after every change, and reports how fresh it is so the server can refuse to be ready while it is stale.

Objects are kept as wire-format dicts (what `kubectl get -o json` shows, camelCase keys), parsed from the
raw JSON, never the client's snake_case models. Each mirror runs one daemon thread:

    list -> publish -> watch from the list's resourceVersion (bookmarks on, renewed by the server
    every `watch_timeout_seconds`) -> apply events -> publish -> ... and on trouble:
      410 Gone (HTTP status or ERROR event)  -> list again from scratch (`relists` += 1)
      any other error, or a dropped stream   -> back off with full jitter, watch again from the last
                                                resourceVersion (`restarts` += 1)
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes.client
import kubernetes.config
import urllib3.exceptions

logger = logging.getLogger("webhook.adapters.cluster")

WireObject = Mapping[str, Any]
Snapshot = Mapping[str, WireObject]
"""Object name -> the object as a wire-format dict; read-only, and never changed after publishing."""

OnChange = Callable[[Snapshot], None]
ListFunction = Callable[..., Any]
"""A generated list call such as `CoreV1Api.list_node`: takes `watch`, `resource_version`, ... kwargs."""

# A watch that ends cleanly this soon without a single event is a misbehaving server or proxy, not a
# renewal; client-go's reflector draws the same line, and backing off keeps us out of a tight loop.
_MIN_HEALTHY_WATCH_SECONDS = 1.0
# The server ends a watch after timeoutSeconds; silence much longer than that means a half-open
# connection, so the socket read timeout is the watch timeout plus this grace.
_WATCH_READ_GRACE_SECONDS = 30.0
_READ_SIZE = 64 * 1024


class ClusterConfigError(Exception):
    """No usable way to reach the Kubernetes API (bad kubeconfig, not in a pod, no default kubeconfig)."""


def api_client_from(kubeconfig: str | None) -> kubernetes.client.ApiClient:
    """An API client from `kubeconfig` if given, else the pod's service account, else the default kubeconfig.

    Raises ClusterConfigError naming the fix when none of them works.
    """
    configuration = kubernetes.client.Configuration()
    if kubeconfig is not None:
        try:
            _load_kubeconfig(kubeconfig, configuration)
        except Exception as error:
            raise ClusterConfigError(
                f"cannot use kubeconfig {kubeconfig!r}: {_one_line(error)}; pass --kubeconfig with a "
                "readable kubeconfig file whose current context names a cluster and a user"
            ) from error
        return kubernetes.client.ApiClient(configuration)
    try:
        # The client's config loaders carry no annotations, hence the ignores on these two calls.
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return kubernetes.client.ApiClient(configuration)
    except kubernetes.config.ConfigException as error:
        not_in_pod = _one_line(error)
    # Read $KUBECONFIG now, not at import as the client's default does, so the environment wins.
    default = os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        _load_kubeconfig(default, configuration)
    except Exception as error:
        raise ClusterConfigError(
            f"no Kubernetes API configuration: not running in a pod ({not_in_pod}) and the default "
            f"kubeconfig {default!r} is unusable ({_one_line(error)}); pass --kubeconfig PATH, set "
            "KUBECONFIG, or run in-cluster with a service account"
        ) from error
    return kubernetes.client.ApiClient(configuration)


def _load_kubeconfig(path: str, configuration: kubernetes.client.Configuration) -> None:
    # The loader raises ConfigException, OSError, YAML and type errors alike for bad files, so callers
    # catch Exception; persist_config=False because a webhook must never rewrite a user's kubeconfig.
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=path, client_configuration=configuration, persist_config=False
    )


def _one_line(error: Exception) -> str:
    # YAML errors span several lines; a config error should read as one sentence in a log or terminal.
    return " ".join(str(error).split()) or type(error).__name__


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: after n failures, wait in [0, min(max, initial * 2^(n-1))]."""

    initial_seconds: float = 0.5
    max_seconds: float = 30.0

    def delay(self, failures: int, uniform: Callable[[], float] = random.random) -> float:
        if failures <= 0:
            return 0.0
        # Cap the exponent too, so a long outage cannot overflow the float.
        ceiling = min(self.max_seconds, self.initial_seconds * 2.0 ** min(failures - 1, 62))
        return uniform() * ceiling


DEFAULT_BACKOFF = Backoff()


class _Gone(Exception):
    """The resourceVersion we watch from has been compacted away; only a fresh list can recover."""


class _Unusable(Exception):
    """The API answered with something we cannot apply (an ERROR event, a malformed line or list)."""


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
        watch_timeout_seconds: int = 300,
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

        # Written only by the worker thread; other threads read whole values, which the GIL keeps atomic.
        self._objects: dict[str, WireObject] = {}
        self._snapshot: Snapshot = types.MappingProxyType({})
        self._resource_version: str | None = None
        self._synced = False
        self._last_sync = 0.0
        self._restarts = 0
        self._relists = 0
        self._failures = 0

        self._lock = threading.Lock()  # guards _response, which stop() shuts down from another thread
        self._response: urllib3.BaseHTTPResponse | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # What readers see ----------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """True once the first list has been applied and published."""
        return self._synced

    @property
    def last_sync_monotonic(self) -> float:
        """time.monotonic() of the last successful list, event, bookmark or clean watch renewal."""
        return self._last_sync

    @property
    def restarts(self) -> int:
        """Times the loop started over after an error or a dropped connection (410s are `relists`)."""
        return self._restarts

    @property
    def relists(self) -> int:
        """Times the resourceVersion expired (410 Gone) and the collection was listed again."""
        return self._relists

    @property
    def resource_version(self) -> str | None:
        """The resourceVersion the next watch starts from; None before the first list."""
        return self._resource_version

    @property
    def objects(self) -> Snapshot:
        """The last published snapshot (empty before the first list)."""
        return self._snapshot

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def is_stale(self, max_age_seconds: float) -> bool:
        """Not yet synced, or no sign of life from the API for longer than `max_age_seconds`.

        A healthy quiet watch shows life at least once per watch timeout (a bookmark or a renewal),
        so `max_age_seconds` must be larger than `watch_timeout_seconds`.
        """
        return not self._synced or self._clock() - self._last_sync > max_age_seconds

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

    # The worker ----------------------------------------------------------------------------------

    def _run(self) -> None:
        need_list = True
        while not self._stopping.is_set():
            delay = 0.0
            try:
                if need_list:
                    self._list()
                    need_list = False
                self._watch()
            except _Stopped:
                break
            except _Gone as gone:
                if self._stopping.is_set():
                    break
                need_list = True
                self._relists += 1
                self._failures += 1
                # The first 410 is routine (history compacted while we were away): relist at once.
                # Only a 410 right after a relist, with no event in between, calls for patience.
                delay = self._backoff.delay(self._failures - 1, self._uniform)
                logger.info("%s watch expired (%s); listing again in %.2fs", self.resource, gone, delay)
            except Exception as error:
                if self._stopping.is_set():
                    break
                self._restarts += 1
                self._failures += 1
                delay = self._backoff.delay(self._failures, self._uniform)
                self._log_failure(error, delay, need_list)
            self._stopping.wait(delay)
        logger.debug("%s mirror stopped", self.resource)

    def _log_failure(self, error: Exception, delay: float, listing: bool) -> None:
        step = "list" if listing else "watch"
        if isinstance(error, kubernetes.client.ApiException):
            # Only status and reason: the body and headers are the server's, and need not be logged.
            cause = f"HTTP {error.status} {error.reason}"
            if error.status in (401, 403):
                cause += f" (the webhook's service account needs list and watch on {self.resource})"
        elif isinstance(error, _Unusable):
            cause = str(error)
        elif isinstance(error, urllib3.exceptions.HTTPError | OSError | ValueError):
            cause = f"{type(error).__name__}: {error}"
        else:
            logger.exception("%s %s failed unexpectedly; retrying in %.2fs", self.resource, step, delay)
            return
        logger.warning("%s %s failed: %s; retrying in %.2fs", self.resource, step, cause, delay)

    def _list(self) -> None:
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
        objects, resource_version = _parse_list(body)
        self._objects = objects
        self._resource_version = resource_version
        self._last_sync = self._clock()
        # Synced before publishing, so a consumer that checks `synced` from the callback sees True.
        self._synced = True
        self._publish()
        logger.info(
            "%s listed: %d objects at resourceVersion %s", self.resource, len(objects), resource_version
        )

    def _watch(self) -> None:
        """Watch from the current resourceVersion until the server ends the stream; raise on trouble."""
        started = self._clock()
        try:
            opened = self._list_objects(
                watch=True,
                resource_version=self._resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_timeout_seconds,
                _preload_content=False,
                _request_timeout=(
                    self._connect_timeout_seconds,
                    self._watch_timeout_seconds + _WATCH_READ_GRACE_SECONDS,
                ),
            )
        except kubernetes.client.ApiException as error:
            if error.status == 410:
                raise _Gone(f"HTTP 410 {error.reason}") from error
            raise
        response = self._hold(opened)
        events = 0
        try:
            pending = b""
            while chunk := response.read1(_READ_SIZE):
                # Everything that arrived in one read is applied, then published once: bursts coalesce.
                *lines, pending = (pending + chunk).split(b"\n")
                events += self._apply_all(lines)
        finally:
            self._release(response)
        if self._stopping.is_set():
            raise _Stopped
        elapsed = self._clock() - started
        if events == 0 and elapsed < _MIN_HEALTHY_WATCH_SECONDS:
            raise _Unusable(f"watch ended after {elapsed:.2f}s without any event")
        # A clean end is the server renewing the watch: proof of life, and no reason to wait.
        self._last_sync = self._clock()
        logger.debug(
            "%s watch renewed after %d events at resourceVersion %s",
            self.resource,
            events,
            self._resource_version,
        )

    def _apply_all(self, lines: list[bytes]) -> int:
        """Apply the events of one read to a copy of the collection, publish it once; returns the count."""
        # Copy on write: the dict behind the last snapshot is never touched again.
        objects = dict(self._objects)
        applied = 0
        changed = False
        try:
            for line in lines:
                if line.strip():
                    changed = self._apply(line, objects) or changed
                    applied += 1
                    self._failures = 0
                    self._last_sync = self._clock()
        finally:
            # Publish what did apply even if a later line in the same read failed.
            if changed:
                self._objects = objects
                self._publish()
        return applied

    def _apply(self, line: bytes, objects: dict[str, WireObject]) -> bool:
        """Apply one watch event; True if the collection changed."""
        event = json.loads(line)
        if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
            raise _Unusable(f"watch event without an object: {line[:200]!r}")
        event_type, obj = event.get("type"), event["object"]
        if event_type == "ERROR":
            message = f"{obj.get('code')} {obj.get('reason')}: {obj.get('message')}"
            if obj.get("code") == 410:
                raise _Gone(message)
            raise _Unusable(f"ERROR event {message}")
        resource_version = _field(obj, "metadata", "resourceVersion")
        if not isinstance(resource_version, str):
            raise _Unusable(f"{event_type} event without metadata.resourceVersion")
        if event_type == "BOOKMARK":
            self._resource_version = resource_version
            return False
        name = _field(obj, "metadata", "name")
        if not isinstance(name, str):
            raise _Unusable(f"{event_type} event without metadata.name")
        if event_type in ("ADDED", "MODIFIED"):
            objects[name] = obj
        elif event_type == "DELETED":
            objects.pop(name, None)
        else:
            raise _Unusable(f"unknown watch event type {event_type!r}")
        self._resource_version = resource_version
        return True

    def _publish(self) -> None:
        self._snapshot = types.MappingProxyType(self._objects)
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


def _parse_list(body: bytes) -> tuple[dict[str, WireObject], str]:
    document = json.loads(body)
    if not isinstance(document, dict):
        raise _Unusable("list response is not a JSON object")
    resource_version = _field(document, "metadata", "resourceVersion")
    items = document.get("items") or []
    if not isinstance(resource_version, str) or not isinstance(items, list):
        raise _Unusable("list response without metadata.resourceVersion or items")
    # The API server leaves kind and apiVersion off list items, yet puts them on watch objects (and
    # kubectl shows them); restoring them makes every object look the same however it arrived.
    item_type = {
        "apiVersion": document.get("apiVersion"),
        "kind": str(document.get("kind", "")).removesuffix("List"),
    }
    objects: dict[str, WireObject] = {}
    for item in items:
        name = _field(item, "metadata", "name")
        if not isinstance(name, str):
            raise _Unusable("list item without metadata.name")
        objects[name] = item_type | item
    return objects, resource_version


def _field(obj: object, *path: str) -> object:
    """obj[path[0]][path[1]]..., or None where the wire data has no such field."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


class ClusterMirror:
    """The two mirrors the webhook needs: Nodes (placement) and Namespaces (per-namespace mode labels)."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        on_nodes: OnChange,
        on_namespaces: OnChange,
        *,
        watch_timeout_seconds: int = 300,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        core = kubernetes.client.CoreV1Api(api_client)
        self.nodes = ObjectMirror(
            "nodes", core.list_node, on_nodes, watch_timeout_seconds=watch_timeout_seconds, backoff=backoff
        )
        self.namespaces = ObjectMirror(
            "namespaces",
            core.list_namespace,
            on_namespaces,
            watch_timeout_seconds=watch_timeout_seconds,
            backoff=backoff,
        )

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

"""The HTTPS service: /mutate and /validate (AdmissionReview v1), /healthz, /readyz, /metrics.

The HTTP edge caps the body, checks the content type, answers 400 on a bad review, and turns any crash
inside the handler into an answer with the request's uid (per the configured stance), never a 500.
Node and namespace snapshots arrive from the cluster shell and are swapped in whole; requests never wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from types import FrameType
from typing import Any, Protocol, cast

import uvicorn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from webhook.adapters.cluster import ClusterMirror
from webhook.adapters.tls import CertReloader, apply_to_uvicorn
from webhook.core.admission import Endpoint, Outcome, Verdict, answer, respond
from webhook.core.config import Config
from webhook.core.placement import Inventory, Node, NodeClass
from webhook.core.review import errored, read_review
from webhook.errors import NodeListError, ReviewError, WebhookError

# The apiserver refuses request bodies over 3 MiB and etcd objects over 1.5 MiB; an UPDATE review carries
# the object and the old object, so a real review stays under 3 MiB plus a small envelope.
MAX_BODY_BYTES = 3 * 1024 * 1024 + 64 * 1024
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

review_log = logging.getLogger("webhook.review")


class InventorySource(Protocol):
    """Where the service gets nodes and namespace labels; the cluster mirror or a static file."""

    def ready(self) -> bool: ...
    def stale(self) -> bool: ...
    def restarts(self) -> int: ...


@dataclass
class InventoryState:
    """The current inventory and namespace labels, each replaced whole by the thread that builds it."""

    config: Config
    inventory: Inventory | None = None
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    updated_monotonic: float = 0.0
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set_nodes(self, objects: Mapping[str, Mapping[str, Any]]) -> None:
        """Build the pools off the request path; a malformed node is skipped, not fatal."""
        nodes = []
        for name, obj in objects.items():
            try:
                nodes.append(Node.from_wire(obj, f"node {name}"))
            except NodeListError as err:
                self.errors += 1
                logging.getLogger("webhook.inventory").warning(
                    "skipped node", extra={"fields": {"error": str(err)}}
                )
        self.replace_nodes(nodes)

    def replace_nodes(self, nodes: Iterable[Node]) -> None:
        inventory = Inventory.build(nodes, self.config)
        with self._lock:
            self.inventory, self.updated_monotonic = inventory, time.monotonic()

    def set_namespaces(self, objects: Mapping[str, Mapping[str, Any]]) -> None:
        labels = {}
        for name, obj in objects.items():
            raw = (obj.get("metadata") or {}).get("labels") or {}
            labels[name] = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
        self.namespaces = labels

    def usable(self, source: InventorySource) -> Inventory | None:
        """The inventory to judge with, or None (empty or stale: judge by label evidence alone)."""
        inventory = self.inventory
        if inventory is None or inventory.node_count == 0 or source.stale():
            return None
        return inventory


class Metrics:
    def __init__(self, state: InventoryState, source: InventorySource) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reviews = Counter(
            "immutable_os_webhook_reviews",
            "Admission reviews answered",
            ["endpoint", "decision", "mode"],
            registry=r,
        )
        self.findings = Counter(
            "immutable_os_webhook_findings",
            "Host-access findings in judged reviews",
            ["endpoint", "check"],
            registry=r,
        )
        self.rejected = Counter(
            "immutable_os_webhook_bad_requests", "Requests refused at the HTTP edge", ["reason"], registry=r
        )
        self.errors = Counter(
            "immutable_os_webhook_internal_errors",
            "Reviews answered by the failure stance",
            ["endpoint"],
            registry=r,
        )
        self.latency = Histogram(
            "immutable_os_webhook_review_duration_seconds", "Time to answer one review", ["endpoint"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        age = Gauge(
            "immutable_os_webhook_inventory_age_seconds",
            "Seconds since the node inventory changed",
            registry=r,
        )
        age.set_function(
            lambda: time.monotonic() - state.updated_monotonic if state.updated_monotonic else -1.0
        )
        nodes = Gauge("immutable_os_webhook_inventory_nodes", "Nodes in the inventory", registry=r)
        nodes.set_function(lambda: state.inventory.node_count if state.inventory else 0)
        pools = Gauge("immutable_os_webhook_inventory_pools", "Node pools by class", ["class"], registry=r)
        for node_class in NodeClass:
            pools.labels(node_class.value).set_function(partial(_pool_count, state, node_class))
        restarts = Gauge(
            "immutable_os_webhook_watch_restarts", "Watch restarts and relists so far", registry=r
        )
        restarts.set_function(lambda: float(source.restarts()))


def _pool_count(state: InventoryState, node_class: NodeClass) -> float:
    inventory = state.inventory
    # Node pools, not scheduling groups: a pool spanning three zones counts once.
    return float(len({p.key for p in inventory.pools if p.node_class is node_class})) if inventory else 0.0


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped. A review may carry a lone surrogate (`"\\ud800"` is
    legal JSON and decodes to one), which a UTF-8 encoder refuses: echoing it must not become a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def _error(status: int, message: str, field_name: str = "", fix: str = "") -> JSONResponse:
    return AsciiJSONResponse({"error": message, "field": field_name, "fix": fix}, status_code=status)


class _TooLarge(Exception):
    pass


async def _read_body(request: HttpRequest) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class AdmissionService:
    def __init__(self, config: Config, state: InventoryState, source: InventorySource) -> None:
        self.config = config
        self.state = state
        self.source = source
        self.metrics = Metrics(state, source)

    def _verdict(self, endpoint: Endpoint, body: Any) -> tuple[str, Verdict, dict[str, Any]]:
        request = read_review(body)
        context = {"kind": request.kind, "namespace": request.namespace, "name": request.name,
                   "operation": request.operation, "dryRun": request.dry_run}  # fmt: skip
        verdict = answer(
            request,
            endpoint=endpoint,
            config=self.config,
            inventory=self.state.usable(self.source),
            namespace_labels=self.state.namespaces.get(request.namespace, {}),
        )
        return request.uid, verdict, context

    async def handle(self, endpoint: Endpoint, http: HttpRequest) -> Response:
        started = time.perf_counter()
        content_type = http.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self.metrics.rejected.labels("content-type").inc()
            return _error(415, f"content type {content_type or 'none'} is not JSON", "Content-Type",
                          "send application/json")  # fmt: skip
        try:
            raw = await _read_body(http)
        except _TooLarge:
            self.metrics.rejected.labels("too-large").inc()
            return _error(
                413, f"body over {MAX_BODY_BYTES} bytes", "<body>", "the apiserver never sends this"
            )
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            self.metrics.rejected.labels("json").inc()
            return _error(400, f"body is not JSON: {err}", "<body>", "send a v1 AdmissionReview")
        uid = _uid_of(body)
        try:
            uid, verdict, context = self._verdict(endpoint, body)
        except ReviewError as err:
            self.metrics.rejected.labels("review").inc()
            return _error(400, err.message, err.field, err.fix)
        except Exception as err:
            self.metrics.errors.labels(endpoint.value).inc()
            message = (
                err.describe() if isinstance(err, WebhookError) else f"internal error ({type(err).__name__})"
            )
            fields = {"uid": uid, "endpoint": endpoint.value, "error": message}
            review_log.exception("review failed", extra={"fields": fields})
            return AsciiJSONResponse(errored(uid, message, allow=self.config.allow_on_internal_error))
        review = respond(uid, verdict)
        elapsed = time.perf_counter() - started
        self._record(endpoint, uid, verdict, context, elapsed)
        return AsciiJSONResponse(review)

    def _record(
        self, endpoint: Endpoint, uid: str, verdict: Verdict, context: dict[str, Any], elapsed: float
    ) -> None:
        mode = verdict.mode.value if verdict.mode else "-"
        self.metrics.reviews.labels(endpoint.value, verdict.outcome.value, mode).inc()
        self.metrics.latency.labels(endpoint.value).observe(elapsed)
        for finding in verdict.findings:
            self.metrics.findings.labels(endpoint.value, finding.check).inc()
        # Reviews without host access (or not judged at all) are the bulk: logged at debug only.
        level = logging.INFO if verdict.findings or verdict.outcome is Outcome.EXEMPT else logging.DEBUG
        if review_log.isEnabledFor(level):
            findings = [f"{f.check}:{f.field}" for f in verdict.findings]
            fields = {
                "uid": uid, "endpoint": endpoint.value, **context, "decision": verdict.outcome.value,
                "allowed": verdict.allowed, "mode": mode, "findings": findings, "steered": verdict.steered,
                "ms": round(elapsed * 1000, 3),
            }  # fmt: skip
            review_log.log(level, "review", extra={"fields": fields})


def _uid_of(body: Any) -> str:
    request = body.get("request") if isinstance(body, Mapping) else None
    uid = request.get("uid") if isinstance(request, Mapping) else None
    return uid if isinstance(uid, str) else ""


def create_app(service: AdmissionService) -> Starlette:
    # `_created` series double the scrape for no use here; the function is untyped upstream.
    cast(Callable[[], None], disable_created_metrics)()

    async def mutate(request: HttpRequest) -> Response:
        return await service.handle(Endpoint.MUTATE, request)

    async def validate(request: HttpRequest) -> Response:
        return await service.handle(Endpoint.VALIDATE, request)

    async def healthz(request: HttpRequest) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: HttpRequest) -> Response:
        if service.source.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "waiting for a current node and namespace list"}, status_code=503)

    async def metrics(request: HttpRequest) -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def http_error(request: HttpRequest, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        fix = "POST AdmissionReviews to /mutate or /validate; GET /healthz, /readyz, /metrics"
        return _error(
            status, f"{request.method} {request.url.path}: {HTTPStatus(status).phrase}", "<path>", fix
        )

    app = Starlette(
        routes=[
            Route("/mutate", mutate, methods=["POST"]),
            Route("/validate", validate, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )
    # /mutate/ is no path of ours; a redirect would only hide a misconfigured webhook URL.
    app.router.redirect_slashes = False
    return app


class StaticSource:
    """Nodes (and namespace labels) from files: offline use and `make run`. Never stale."""

    def ready(self) -> bool:
        return True

    def stale(self) -> bool:
        return False

    def restarts(self) -> int:
        return 0


class ClusterSource:
    """Nodes and Namespaces mirrored from the API by list+watch; stale past the configured age."""

    def __init__(self, mirror: ClusterMirror, max_staleness_seconds: float) -> None:
        self.mirror = mirror
        self.max_staleness_seconds = max_staleness_seconds

    def ready(self) -> bool:
        return not self.stale()

    def stale(self) -> bool:
        return not self.mirror.synced or self.mirror.is_stale(self.max_staleness_seconds)

    def restarts(self) -> int:
        return sum(m.restarts + m.relists for m in (self.mirror.nodes, self.mirror.namespaces))


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    cert_file: str
    key_file: str
    cert_check_seconds: float = 2.0
    graceful_seconds: int = 20


def build_uvicorn(app: Starlette, options: ServeOptions, reloader: CertReloader) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="off",
        # Finish in-flight reviews after SIGTERM; the apiserver retries nothing, so don't cut them off.
        timeout_graceful_shutdown=options.graceful_seconds,
    )
    apply_to_uvicorn(config, reloader)
    return uvicorn.Server(config)


async def serve(app: Starlette, options: ServeOptions, reloader: CertReloader) -> None:
    """Serve until SIGTERM/SIGINT: uvicorn stops accepting, finishes in-flight requests, returns."""
    server = build_uvicorn(app, options, reloader)
    watcher = asyncio.create_task(reloader.run(options.cert_check_seconds))
    try:
        with _return_after_stop_signal():
            await server.serve()
    finally:
        watcher.cancel()


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

"""The service's Prometheus registry and every metric in it: reviews, the HTTP edge, connections, inventory.

One registry per service (tests run several services in one process). Inventory gauges are computed at
scrape time from the snapshot current then.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import cast

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from webhook.adapters.http.inventory import InventoryState
from webhook.adapters.http.sources import InventorySource
from webhook.core.placement import NodeClass

# How prometheus_client writes a bucket's `le` (untyped upstream).
_le = cast(Callable[[float], str], floatToGoString)
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ConnectionMetrics:
    """Client connections, counted by the server that accepts them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.open = Gauge(
            "immutable_os_webhook_connections",
            "Open client connections: in their TLS handshake, waiting, sending a request or being answered",
            registry=registry,
        )
        # reason: handshake (failed or too slow), header-timeout, body-timeout, evicted (over the connection
        # cap), drain-deadline (still open when the drain after SIGTERM ran out)
        self.dropped = Counter(
            "immutable_os_webhook_connections_dropped",
            "Connections the server closed before their request was in",
            ["reason"],
            registry=registry,
        )


class ReviewCounts:
    """Reviews answered, their findings and how long each took, counted in plain ints and read by the
    registry at scrape time (a collector). A prometheus_client metric takes a lock per update, three or
    four updates per review; reviews are counted on the event loop's thread, and scrapes are read there
    too (the /metrics handler), so these need none."""

    def __init__(self, registry: CollectorRegistry) -> None:
        #: (endpoint, decision, mode) -> reviews
        self.reviews: dict[tuple[str, str, str], int] = {}
        #: (endpoint, check) -> findings
        self.findings: dict[tuple[str, str], int] = {}
        #: endpoint -> [reviews per latency bucket (the last: over every bound)], and the seconds in all
        self.latency: dict[str, list[int]] = {}
        self.latency_sum: dict[str, float] = {}
        #: Reviews being read, judged or answered now.
        self.in_flight = 0
        registry.register(self)

    def count(self, endpoint: str, decision: str, mode: str, seconds: float) -> None:
        key = (endpoint, decision, mode)
        self.reviews[key] = self.reviews.get(key, 0) + 1
        buckets = self.latency.get(endpoint)
        if buckets is None:
            buckets = self.latency[endpoint] = [0] * (len(LATENCY_BUCKETS) + 1)
            self.latency_sum[endpoint] = 0.0
        buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # `le`: a bound counts what equals it
        self.latency_sum[endpoint] += seconds

    def found(self, endpoint: str, check: str) -> None:
        key = (endpoint, check)
        self.findings[key] = self.findings.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        reviews = CounterMetricFamily("immutable_os_webhook_reviews", "Admission reviews answered",
                                      labels=["endpoint", "decision", "mode"])  # fmt: skip
        for labels, value in list(self.reviews.items()):
            reviews.add_metric(labels, value)
        yield reviews
        findings = CounterMetricFamily(
            "immutable_os_webhook_findings",
            "Host-access findings in judged reviews",
            labels=["endpoint", "check"],
        )
        for finding, value in list(self.findings.items()):
            findings.add_metric(finding, value)
        yield findings
        latency = HistogramMetricFamily("immutable_os_webhook_review_duration_seconds",
                                        "Time to answer one review", labels=["endpoint"])  # fmt: skip
        for endpoint, counts in list(self.latency.items()):
            cumulative, total = [], 0
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
                total += count
                cumulative.append((_le(bound), total))
            latency.add_metric([endpoint], cumulative, self.latency_sum[endpoint])
        yield latency


class Metrics:
    def __init__(self, state: InventoryState, source: InventorySource) -> None:
        # `_created` series double the scrape for no use here; the function is untyped upstream.
        cast(Callable[[], None], disable_created_metrics)()
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = ConnectionMetrics(r)
        self.counts = ReviewCounts(r)
        self.rejected = Counter(
            "immutable_os_webhook_bad_requests", "Requests refused at the HTTP edge", ["reason"], registry=r
        )
        self.hangups = Counter(
            "immutable_os_webhook_client_hangups",
            "Requests whose client closed the connection before the body was in",
            registry=r,
        )
        in_flight = Gauge(
            "immutable_os_webhook_reviews_in_flight", "Reviews being read, judged or answered", registry=r
        )
        in_flight.set_function(lambda: float(self.counts.in_flight))
        self.pending_body_bytes = Gauge(
            "immutable_os_webhook_pending_body_bytes",
            "Bytes of request bodies held now, beyond each body's free allowance (the shared budget)",
            registry=r,
        )
        self.errors = Counter(
            "immutable_os_webhook_internal_errors",
            "Reviews answered by the failure stance",
            ["endpoint"],
            registry=r,
        )
        age = Gauge(
            "immutable_os_webhook_inventory_age_seconds",
            "Seconds since the node inventory changed",
            registry=r,
        )
        age.set_function(partial(_inventory_age, state))
        nodes = Gauge("immutable_os_webhook_inventory_nodes", "Nodes in the inventory", registry=r)
        nodes.set_function(lambda: float(state.snapshot.node_count))
        pools = Gauge("immutable_os_webhook_inventory_pools", "Node pools by class", ["class"], registry=r)
        for node_class in NodeClass:
            pools.labels(node_class.value).set_function(partial(_pool_count, state, node_class))
        restarts = Gauge(
            "immutable_os_webhook_watch_restarts", "Watch restarts and relists so far", registry=r
        )
        restarts.set_function(lambda: float(source.restarts()))


def _inventory_age(state: InventoryState) -> float:
    updated = state.snapshot.nodes_updated
    return time.monotonic() - updated if updated else -1.0


def _pool_count(state: InventoryState, node_class: NodeClass) -> float:
    inventory = state.snapshot.inventory
    # Node pools, not scheduling groups: a pool spanning three zones counts once.
    return float(len({p.key for p in inventory.pools if p.node_class is node_class})) if inventory else 0.0

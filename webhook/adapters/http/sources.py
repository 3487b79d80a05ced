"""Where the node inventory comes from, as the service sees it: ready, stale, and how often it restarted.

`ClusterSource` reads the state of the cluster mirror (list+watch of Nodes and Namespaces); `StaticSource`
stands for nodes loaded once from a file, which never go stale.
"""

from __future__ import annotations

from typing import Protocol

from webhook.adapters.cluster import ClusterMirror


class InventorySource(Protocol):
    def ready(self) -> bool: ...
    def stale(self) -> bool: ...
    def restarts(self) -> int: ...


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

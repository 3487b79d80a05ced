"""What the service judges placement with: one immutable snapshot of the node inventory and namespace labels.

Watch threads build a new snapshot and swap it in whole; a request reads `InventoryState.snapshot` once and
judges by that object alone, so it never sees the nodes of one update with the labels of another.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from webhook.core.config import Config
from webhook.core.placement import Inventory, Node
from webhook.errors import NodeListError

logger = logging.getLogger("webhook.inventory")

_NO_LABELS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class InventorySnapshot:
    """Nodes (grouped into pools) and namespace labels as of one moment; never changed once built."""

    inventory: Inventory | None = None
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    #: time.monotonic() of the last node change; 0.0 before the first.
    nodes_updated: float = 0.0
    #: Nodes of the last list that could not be read (logged, left out of the pools).
    skipped_nodes: int = 0

    @property
    def node_count(self) -> int:
        return self.inventory.node_count if self.inventory is not None else 0

    def usable(self, stale: bool) -> Inventory | None:
        """The inventory to judge with, or None (empty or stale: judge by label evidence alone)."""
        return self.inventory if self.node_count and not stale else None

    def labels_of(self, namespace: str) -> Mapping[str, str]:
        return self.namespaces.get(namespace, _NO_LABELS)


class InventoryState:
    """Holds the current snapshot. Readers take no lock: reading `snapshot` is one attribute load, and the
    object it returns never changes. Writers (the node and the namespace watch threads) each build their
    part off the lock, then take the lock only to combine it with the other part and swap, so neither
    overwrites the other's latest update."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._snapshot = InventorySnapshot()
        self._write_lock = threading.Lock()

    @property
    def snapshot(self) -> InventorySnapshot:
        return self._snapshot

    def set_nodes(self, objects: Mapping[str, Mapping[str, Any]]) -> None:
        """Wire Node objects by name (the cluster mirror's callback); a malformed node is skipped."""
        nodes, skipped = [], 0
        for name, obj in objects.items():
            try:
                nodes.append(Node.from_wire(obj, f"node {name}"))
            except NodeListError as err:
                skipped += 1
                logger.warning("skipped node", extra={"fields": {"error": str(err)}})
        self.replace_nodes(nodes, skipped=skipped)

    def replace_nodes(self, nodes: Iterable[Node], *, skipped: int = 0) -> None:
        inventory = Inventory.build(nodes, self.config)  # the expensive part, off the lock
        with self._write_lock:
            self._snapshot = replace(
                self._snapshot, inventory=inventory, nodes_updated=time.monotonic(), skipped_nodes=skipped
            )

    def set_namespaces(self, objects: Mapping[str, Mapping[str, Any]]) -> None:
        """Wire Namespace objects by name (the cluster mirror's callback): only their labels are kept."""
        labels = {}
        for name, obj in objects.items():
            metadata = obj.get("metadata")
            raw = metadata.get("labels") if isinstance(metadata, Mapping) else None
            labels[name] = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
        self.replace_namespaces(labels)

    def replace_namespaces(self, labels: Mapping[str, Mapping[str, str]]) -> None:
        frozen = MappingProxyType({ns: MappingProxyType(dict(values)) for ns, values in labels.items()})
        with self._write_lock:
            self._snapshot = replace(self._snapshot, namespaces=frozen)

"""Tests for webhook.adapters.http.inventory: the snapshot a request judges with, and how writers swap it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.builders import aks_pool
from webhook.adapters.http import inventory as inventory_module
from webhook.adapters.http.inventory import InventorySnapshot, InventoryState
from webhook.core.config import Config
from webhook.core.placement import Inventory


def wire_node(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "spec": {}, "status": {"nodeInfo": {}}}


def test_a_snapshot_taken_before_an_update_is_unchanged_by_it() -> None:
    state = InventoryState(Config())
    state.replace_nodes(aks_pool("general", "Ubuntu", 2))
    state.replace_namespaces({"a": {"x": "1"}})
    before = state.snapshot
    state.replace_nodes(aks_pool("flatcar", "Flatcar", 3))
    state.replace_namespaces({"b": {"y": "2"}})
    assert before.node_count == 2 and dict(before.namespaces) == {"a": {"x": "1"}}
    assert state.snapshot.node_count == 3 and set(state.snapshot.namespaces) == {"b"}
    with pytest.raises(TypeError):
        before.namespaces["c"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        before.labels_of("a")["x"] = "2"  # type: ignore[index]


def test_a_node_update_does_not_lose_a_namespace_update_made_while_it_built_the_pools(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The node thread builds its pools off the lock (slow); the namespace thread swaps meanwhile. The
    node swap must combine with the labels current at swap time, not those of when it started."""
    state = InventoryState(Config())
    state.replace_namespaces({"old": {}})
    building, labels_swapped = threading.Event(), threading.Event()
    real_build = Inventory.build

    def slow_build(*args: Any, **kwargs: Any) -> Inventory:
        building.set()
        assert labels_swapped.wait(timeout=10)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(inventory_module.Inventory, "build", slow_build)
    writer = threading.Thread(target=state.replace_nodes, args=(aks_pool("general", "Ubuntu", 2),))
    writer.start()
    assert building.wait(timeout=10)
    state.replace_namespaces({"new": {"immutable-os.io/mode": "warn"}})
    labels_swapped.set()
    writer.join(timeout=10)
    assert not writer.is_alive()
    assert state.snapshot.node_count == 2
    assert dict(state.snapshot.namespaces) == {"new": {"immutable-os.io/mode": "warn"}}


def test_set_nodes_skips_a_malformed_node_and_counts_it() -> None:
    state = InventoryState(Config())
    good = wire_node("n1", {"kubernetes.azure.com/os-sku": "Ubuntu"})
    bad = {"metadata": {"name": "n2", "labels": "not-a-map"}}
    state.set_nodes({"n1": good, "n2": bad})
    assert state.snapshot.node_count == 1
    assert state.snapshot.skipped_nodes == 1
    assert state.snapshot.nodes_updated > 0


def test_set_namespaces_keeps_labels_only_and_tolerates_odd_metadata() -> None:
    state = InventoryState(Config())
    state.set_namespaces({
        "a": {"metadata": {"name": "a", "labels": {"k": "v", "n": 1}}},
        "b": {"metadata": []},
        "c": {},
    })  # fmt: skip
    assert state.snapshot.labels_of("a") == {"k": "v", "n": "1"}
    assert state.snapshot.labels_of("b") == {} and state.snapshot.labels_of("c") == {}
    assert state.snapshot.labels_of("missing") == {}


@pytest.mark.parametrize(
    ("nodes", "stale", "usable"),
    [(0, False, False), (2, True, False), (2, False, True)],
    ids=["empty", "stale", "current"],
)
def test_usable_is_none_when_empty_or_stale(nodes: int, stale: bool, usable: bool) -> None:
    snapshot = InventorySnapshot(Inventory.build(aks_pool("general", "Ubuntu", nodes), Config()))
    assert (snapshot.usable(stale) is not None) is usable
    assert InventorySnapshot().usable(False) is None

"""The golden node inventories (testdata/inventories, testdata/aks): what each pool is, and that steering
finds a label to keep a /usr-writing agent off every immutable pool in each cloud's own label scheme."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import aks
from tests.builders import host_path, set_field, tweak, wrap
from webhook.adapters.files import load_nodes
from webhook.core.admission import decide
from webhook.core.config import Config
from webhook.core.placement import Inventory, NodeClass
from webhook.core.report import request_for

ROOT = Path(__file__).resolve().parents[1]
INVENTORIES = ROOT / "testdata" / "inventories"
EXPECTED: dict[str, dict[str, str]] = yaml.safe_load((INVENTORIES / "expected.yaml").read_text())


def pools_of(inventory: Inventory) -> dict[str, str]:
    return {
        p.name: p.classification.profile_name if p.node_class is NodeClass.IMMUTABLE else "general"
        for p in inventory.pools
    }


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_inventory_is_classified_pool_by_pool(name: str) -> None:
    inventory = Inventory.build(load_nodes(str(INVENTORIES / name)), Config())
    assert pools_of(inventory) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_agent_writing_usr_is_steered_off_every_immutable_pool(name: str) -> None:
    inventory = Inventory.build(load_nodes(str(INVENTORIES / name)), Config())
    agent: dict[str, Any] = wrap(tweak(host_path("/usr/lib/agent"), set_field("tolerations", [{"operator": "Exists"}])),
                                 "DaemonSet")  # fmt: skip
    decision = decide(request_for(agent), config=Config(), inventory=inventory, namespace_labels={})
    assert decision.mutated.steered and decision.allowed, decision.validated.message
    after = decision.validated.assessment
    assert after is not None
    assert {p.name for p in after.pools} == {
        pool for pool, kind in EXPECTED[name].items() if kind == "general"
    }


def test_the_embedded_example_inventory_is_generated_from_the_aks_table() -> None:
    embedded = (ROOT / "webhook" / "data" / "example-nodes.yaml").read_text()
    assert embedded == aks.example_inventory_yaml(), (
        "run: python -m tests.aks > webhook/data/example-nodes.yaml"
    )

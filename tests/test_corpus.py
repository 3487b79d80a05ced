"""The workload corpus (testdata/workloads): node agents and apps modelled on real upstream manifests, each
with the outcome an AKS-shaped cluster (two general pools, ACL, OS Guard, Flatcar) must give, written
down from the host contract independently of this code. Every expectation is checked, through both
webhooks as the apiserver calls them, under each way AKS may label the immutable pools.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.aks import node_name
from tests.builders import aks_inventory
from webhook.core.admission import decide
from webhook.core.config import Config
from webhook.core.contracts import Effect
from webhook.core.placement import Inventory
from webhook.core.report import request_for, row

CORPUS = Path(__file__).resolve().parents[1] / "testdata" / "workloads"
EXPECTED: list[dict[str, Any]] = yaml.safe_load((CORPUS / "expected.yaml").read_text())
INVENTORIES = {scenario: aks_inventory(scenario) for scenario in ("name", "family", "osimage")}


AKS_NODE = re.compile(r"aks-([a-z0-9]+)-[0-9]{8}-vmss([0-9]{6})")


def find(entry: dict[str, Any]) -> dict[str, Any]:
    for doc in yaml.safe_load_all((CORPUS / entry["file"]).read_text()):
        meta = (doc or {}).get("metadata") or {}
        if doc.get("kind") == entry["kind"] and meta.get("name") == entry["name"]:
            assert meta.get("namespace", "default") == entry["namespace"]
            pinned = AKS_NODE.fullmatch(doc.get("spec", {}).get("nodeName", ""))
            if pinned:  # the same node of the same pool in the test inventory, whose VMSS id differs
                doc["spec"]["nodeName"] = node_name(pinned[1], int(pinned[2]))
            return dict(doc)
    raise AssertionError(f"{entry['file']} has no {entry['kind']} {entry['name']}")


def test_the_corpus_is_big_and_varied_enough() -> None:
    outcomes = [e["outcome"] for e in EXPECTED]
    assert len({e["file"] for e in EXPECTED}) >= 30 and len(EXPECTED) >= 40
    assert {o: outcomes.count(o) for o in set(outcomes)} == {
        "allowed": 19,
        "degraded": 21,
        "steered": 7,
        "denied": 1,
    }


@pytest.mark.parametrize("scenario", INVENTORIES)
@pytest.mark.parametrize("entry", EXPECTED, ids=[f"{e['kind']}/{e['name']}" for e in EXPECTED])
def test_corpus_outcome(entry: dict[str, Any], scenario: str) -> None:
    obj = find(entry)
    inventory: Inventory = INVENTORIES[scenario]
    decision = decide(request_for(obj), config=Config(), inventory=inventory, namespace_labels={})
    result = row(obj, decision)
    landing = {p.name for p in result.assessment.pools}
    assert result.verdict == entry["outcome"], f"{entry['reason']}\n{result.to_json()}"
    assert sorted(result.pools(Effect.BREAKS)) == sorted(set(entry["breaksOn"]) & landing)
    assert sorted(result.pools(Effect.DEGRADES)) == sorted(set(entry["degradedOn"]) & landing)
    if result.verdict == "steered":
        after = decision.validated.assessment
        assert after is not None and not after.breaks
        assert {p.name for p in after.pools} == landing - set(entry["breaksOn"])

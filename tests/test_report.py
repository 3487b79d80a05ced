"""Migration readiness report: owners reported once, what-if pools, table and PolicyReport output."""

from __future__ import annotations

from typing import Any

from tests.builders import OS_SKU, aks_pool, host_path, mixed_inventory, set_field, tweak, wrap
from webhook.core.config import Config
from webhook.core.placement import Inventory
from webhook.core.report import assume_immutable, policy_reports, scan, table


def rows_for(objects: list[dict[str, Any]], inventory: Inventory | None = None,
             labels: dict[str, dict[str, str]] | None = None) -> dict[str, str]:  # fmt: skip
    rows = scan(
        objects, config=Config(), inventory=inventory or mixed_inventory(), namespace_labels=labels or {}
    )
    return {f"{r.kind}/{r.name}": r.verdict for r in rows}


def named(obj: dict[str, Any], name: str) -> dict[str, Any]:
    obj["metadata"] = {**obj["metadata"], "name": name}
    return obj


def test_verdicts_for_each_kind_of_outcome() -> None:
    objects = [
        named(wrap(tweak(host_path("/usr/lib/modules")), "DaemonSet"), "agent"),
        named(tweak(host_path("/usr/lib/modules"), set_field("nodeSelector", {OS_SKU: "Flatcar"})), "pinned"),
        named(tweak(set_field("hostNetwork", True), set_field("nodeSelector", {OS_SKU: "Flatcar"})), "cni"),
        named(wrap(tweak(), "Deployment"), "web"),
        named(
            wrap(tweak(set_field("hostNetwork", True), set_field("nodeSelector", {OS_SKU: "Ubuntu"})), "Job"),
            "net",
        ),
    ]
    assert rows_for(objects) == {"DaemonSet/agent": "steered", "Pod/pinned": "denied", "Pod/cni": "degraded",
                                 "Deployment/web": "allowed", "Job/net": "allowed"}  # fmt: skip
    warn = {"default": {"immutable-os.io/mode": "warn"}}
    assert rows_for(objects, labels=warn)["Pod/pinned"] == "warned"


def test_objects_owned_by_judged_controllers_are_reported_at_the_owner() -> None:
    pod = named(tweak(host_path("/x")), "agent-abcde")
    pod["metadata"]["ownerReferences"] = [{"kind": "DaemonSet", "name": "agent", "controller": True}]
    job = named(wrap(tweak(host_path("/x")), "Job"), "nightly-123")
    job["metadata"]["ownerReferences"] = [{"kind": "CronJob", "name": "nightly", "controller": True}]
    assert rows_for([pod, job, {"kind": "ConfigMap", "metadata": {"name": "c"}}]) == {}


def test_assume_immutable_turns_a_general_pool_into_an_immutable_one() -> None:
    nodes = aks_pool("general", "Ubuntu") + aks_pool("batch", "Ubuntu")
    pinned = named(tweak(host_path("/usr/x"), set_field("nodeSelector", {"agentpool": "batch"})), "p")
    assert rows_for([pinned], Inventory.build(nodes, Config())) == {"Pod/p": "allowed"}
    what_if = Inventory.build(assume_immutable(nodes, {"batch": "flatcar"}), Config())
    assert rows_for([pinned], what_if) == {"Pod/p": "denied"}
    assert {p.name: p.classification.profile for p in what_if.pools} == {
        "general": "",
        "batch": "Flatcar Container Linux",
    }


def test_table_and_policy_reports() -> None:
    objects = [
        named(
            tweak(
                host_path("/usr/x"),
                set_field("hostPID", True),
                set_field("nodeSelector", {OS_SKU: "Flatcar"}),
            ),
            "pinned",
        ),
        named(wrap(tweak(), "Deployment"), "web"),
    ]
    rows = scan(objects, config=Config(), inventory=mixed_inventory(), namespace_labels={})
    lines = table(rows).splitlines()
    assert lines[0].split() == [
        "NAMESPACE",
        "KIND",
        "NAME",
        "VERDICT",
        "FINDINGS",
        "BREAKS",
        "ON",
        "DEGRADES",
        "ON",
    ]
    assert lines[2].split() == ["default", "Pod", "pinned", "denied", "host-path,host-pid", "flatcar", "-"]
    (report,) = policy_reports(rows, timestamp_seconds=1_700_000_000)
    assert report["apiVersion"] == "wgpolicyk8s.io/v1alpha2" and report["kind"] == "PolicyReport"
    assert report["metadata"]["namespace"] == "default"
    assert report["summary"] == {"pass": 1, "fail": 2, "warn": 0, "error": 0, "skip": 0}
    failed = [r for r in report["results"] if r["result"] == "fail"]
    assert [r["rule"] for r in failed] == ["host-path", "host-pid"] and failed[0]["resources"][0][
        "name"
    ] == "pinned"
    failed = failed[0]
    assert failed["timestamp"] == {"seconds": 1_700_000_000, "nanos": 0}

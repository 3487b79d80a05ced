"""Migration readiness report: owners reported once, what-if pools, table and PolicyReport output."""

from __future__ import annotations

from typing import Any

import pytest

from tests.builders import OS_SKU, aks_pool, host_path, mixed_inventory, set_field, tweak, wrap
from webhook.core.config import Config
from webhook.core.placement import Inventory
from webhook.core.report import (
    FAIL_ON,
    REPORT_APIS,
    VERDICTS,
    Summary,
    assume_immutable,
    fails,
    policy_reports,
    scan,
    table,
    what_if_config,
)
from webhook.core.scope import installed_scope


def rows_for(objects: list[dict[str, Any]], inventory: Inventory | None = None,
             labels: dict[str, dict[str, str]] | None = None) -> dict[str, str]:  # fmt: skip
    scanned = scan(
        objects, config=Config(), inventory=inventory or mixed_inventory(), namespace_labels=labels or {}
    )
    return {f"{r.kind}/{r.name}": r.verdict for r in scanned.rows}


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
    scanned = scan([pod, job], config=Config(), inventory=mixed_inventory(), namespace_labels={})
    assert scanned.owned == 2 and scanned.rows == [] and scanned.unseen == []


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
    rows = scan(objects, config=Config(), inventory=mixed_inventory(), namespace_labels={}).rows
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
        "NODES",
    ]
    assert lines[2].split() == [
        "default",
        "Pod",
        "pinned",
        "denied",
        "host-path,host-pid",
        "flatcar",
        "-",
        "-",
    ]
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


FAIL_TABLE = [
    ("denied", {"denied"}),
    ("steered", {"denied", "steered"}),
    ("warned", {"denied", "steered", "warned"}),
    ("audited", {"denied", "steered", "warned", "audited"}),
    ("degraded", {"denied", "steered", "warned", "audited", "degraded"}),
    ("never", set()),
]


@pytest.mark.parametrize(("fail_on", "failing"), FAIL_TABLE, ids=[f[0] for f in FAIL_TABLE])
def test_fail_on_fails_its_verdict_and_everything_more_serious(fail_on: str, failing: set[str]) -> None:
    assert set(FAIL_ON) == {f for f, _ in FAIL_TABLE} and set(VERDICTS) - {"allowed"} == set(FAIL_ON) - {
        "never"
    }
    assert {v for v in VERDICTS if fails(v, fail_on)} == failing


def test_scan_leaves_out_what_the_installed_webhook_never_sees_and_says_so() -> None:
    objects = [
        named(wrap(tweak(host_path("/usr/lib/modules")), "DaemonSet"), "agent"),
        {**named(wrap(tweak(host_path("/usr/lib/modules")), "DaemonSet"), "kube-proxy"), "metadata": {"name": "kube-proxy", "namespace": "kube-system"}},
        {**named(wrap(tweak(), "Deployment"), "webhook"), "metadata": {"name": "webhook", "namespace": "iow"}},
        {**named(wrap(tweak(), "Deployment"), "db"), "metadata": {"name": "db", "namespace": "legacy"}},
    ]  # fmt: skip
    scope = installed_scope("iow", {"namespaceSelector": {"matchExpressions": [
        {"key": "tier", "operator": "DoesNotExist"}]}})  # fmt: skip
    labels = {"legacy": {"tier": "old"}}
    scanned = scan(
        objects, config=Config(), inventory=mixed_inventory(), namespace_labels=labels, scope=scope
    )
    assert [r.name for r in scanned.rows] == ["agent"]
    assert [(u.namespace, u.reason) for u in scanned.unseen] == [
        ("kube-system", "kube-system"),
        ("iow", "iow"),
        ("legacy", "webhook.namespaceSelector"),
    ]
    summary = Summary(scanned.rows, "4 namespaces", unseen=scanned.unseen, owned=3)
    assert summary.line() == (
        "judged 1 workload in 4 namespaces: 1 steered; 3 objects made by judged controllers are reported at their "
        "owner; not judged, as the installed webhook never sees them: 1 in iow, 1 in kube-system, 1 "
        "webhook.namespaceSelector; --include-system-namespaces judges them"
    )
    assert summary.to_json()["notJudged"] == {"kube-system": 1, "iow": 1, "webhook.namespaceSelector": 1}
    everything = scan(objects, config=Config(), inventory=mixed_inventory(), namespace_labels=labels)
    assert len(everything.rows) == 4 and everything.unseen == []


def test_openreports_reports_and_what_their_results_carry() -> None:
    agent = named(wrap(tweak(host_path("/usr/lib/modules")), "DaemonSet"), "agent")
    pinned = named(tweak(host_path("/usr/x"), set_field("nodeSelector", {OS_SKU: "Flatcar"})), "pinned")
    audit = {"default": {"immutable-os.io/mode": "audit"}}
    rows = scan([agent, pinned], config=Config(), inventory=mixed_inventory(), namespace_labels=audit).rows
    assert [r.verdict for r in rows] == ["audited", "audited"]
    (report,) = policy_reports(rows, timestamp_seconds=1, api=REPORT_APIS["openreports"], name="iow")
    assert (report["apiVersion"], report["kind"], report["source"]) == ("openreports.io/v1alpha1", "Report",
                                                                        "immutable-os-webhook")  # fmt: skip
    assert report["metadata"] == {"name": "iow", "namespace": "default",
                                  "labels": {"app.kubernetes.io/managed-by": "immutable-os-webhook"}}  # fmt: skip
    by_name = {r["resources"][0]["name"]: r for r in report["results"]}
    assert by_name["agent"]["properties"] == {"verdict": "audited", "wouldInEnforce": "steer", "breaksOn": "flatcar",
                                              "nodes": "4", "nodesAfter": "4"}  # fmt: skip
    assert by_name["pinned"]["properties"] == {
        "verdict": "audited",
        "wouldInEnforce": "deny",
        "breaksOn": "flatcar",
    }
    assert report["summary"] == {"pass": 0, "fail": 0, "warn": 2, "error": 0, "skip": 0}
    (wg,) = policy_reports(rows, timestamp_seconds=1)
    assert (wg["apiVersion"], wg["kind"]) == (
        "wgpolicyk8s.io/v1alpha2",
        "PolicyReport",
    ) and "source" not in wg
    assert wg["results"] == report["results"]


def test_the_table_shows_a_daemon_set_s_nodes_after_steering() -> None:
    agent = named(wrap(tweak(host_path("/usr/lib/modules")), "DaemonSet"), "agent")
    rows = scan([agent], config=Config(), inventory=mixed_inventory(), namespace_labels={}).rows
    assert table(rows).splitlines()[1].split()[-1] == "2/4"


def test_assume_immutable_works_when_the_config_dropped_the_marker_selector() -> None:
    config = Config.from_dict({"immutableNodeSelectors": [{"matchLabels": {"example.com/os": "locked"}}]})
    nodes = aks_pool("general", "Ubuntu") + aks_pool("batch", "Ubuntu")
    assert all(
        p.node_class.value == "general"
        for p in Inventory.build(assume_immutable(nodes, {"batch": "flatcar"}), config).pools
    )
    what_if = Inventory.build(assume_immutable(nodes, {"batch": "flatcar"}), what_if_config(config))
    assert {p.name: p.node_class.value for p in what_if.pools} == {"general": "general", "batch": "immutable"}
    assert what_if_config(Config()) == Config()

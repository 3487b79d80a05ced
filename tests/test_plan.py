"""The migration plan: the smallest fix per failing workload, proven here by judging the changed manifest,
config or namespace label independently of the plan; the steering cost of steered workloads; the config
snippet that makes the same input pass."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.builders import OS_SKU, host_path, mixed_inventory, set_field, tweak, wrap
from webhook.core.admission import decide
from webhook.core.config import NAMESPACE_MODE_LABEL, Config, HostPathRule, Mode
from webhook.core.plan import FixKind, Plan, config_snippet, make_plan, read_only
from webhook.core.report import Row, fails, request_for, row

INVENTORY = mixed_inventory()  # general (Ubuntu) and flatcar, two nodes each
ON_FLATCAR = set_field("nodeSelector", {OS_SKU: "Flatcar"})


def judged(obj: dict[str, Any], config: Config | None = None, labels: dict[str, str] | None = None) -> Row:
    decision = decide(
        request_for(obj), config=config or Config(), inventory=INVENTORY, namespace_labels=labels or {}
    )
    return row(obj, decision)


def plan_for(objects: list[dict[str, Any]], fail_on: str = "denied", config: Config | None = None,
             labels: dict[str, dict[str, str]] | None = None) -> Plan:  # fmt: skip
    config = config or Config()
    rows = [judged(o, config, (labels or {}).get("default")) for o in objects]
    return make_plan(rows, config=config, inventory=INVENTORY, namespace_labels=labels or {}, fail_on=fail_on)


def named(obj: dict[str, Any], name: str) -> dict[str, Any]:
    obj["metadata"] = {**obj["metadata"], "name": name}
    return obj


WRITES_USR = named(tweak(host_path("/usr/lib/x"), ON_FLATCAR), "writes-usr")
INSTALLS = named(tweak(set_field("hostPID", True), ON_FLATCAR, set_field("containers", [
    {"name": "setup", "image": "busybox", "command": ["nsenter", "-t", "1", "-m", "--", "apt-get", "install", "-y", "nfs-common"]}])),
    "installs")  # fmt: skip
AGENT = named(wrap(tweak(host_path("/usr/local/bin")), "DaemonSet"), "agent")
ROOT_AGENT = named(wrap(tweak(host_path("/")), "DaemonSet"), "root-agent")


def test_a_denied_pod_that_writes_usr_is_fixed_by_mounting_read_only() -> None:
    (step,) = plan_for([WRITES_USR]).steps
    assert step.fails and step.row.verdict == "denied"
    assert step.fix is not None and step.fix.kind is FixKind.READ_ONLY
    assert (
        step.fix.text
        == 'mount /usr/lib/x (volume "host", spec.volumes[0]) read-only, if writes-usr only reads there'
    )
    assert step.fix.fixed_object is not None
    assert judged(dict(step.fix.fixed_object)).verdict == "allowed" == step.fix.verdict
    # the config alternative, proven by judging with it
    assert step.config_fix is not None and step.config_fix.kind is FixKind.ALLOWED_HOST_PATHS
    assert step.config_fix.host_paths == (HostPathRule("/usr/lib/x", read_only=False),)
    assert judged(WRITES_USR, Config(allowed_host_paths=step.config_fix.host_paths)).verdict == "allowed"
    assert "its pods may still break on flatcar" in step.config_fix.text


def test_installing_packages_through_nsenter_is_fixed_by_a_namespace_label_or_an_exemption() -> None:
    (step,) = plan_for([INSTALLS]).steps
    assert step.fix is not None and step.fix.kind is FixKind.NAMESPACE_MODE and step.fix.mode is Mode.WARN
    assert step.fix.text.startswith(
        f"kubectl label namespace default {NAMESPACE_MODE_LABEL}=warn --overwrite"
    )
    assert judged(INSTALLS, labels={NAMESPACE_MODE_LABEL: "warn"}).verdict == "warned"
    assert step.config_fix is not None and step.config_fix.kind is FixKind.EXEMPTION
    assert judged(INSTALLS, Config().exempting(["default"])).verdict == "allowed"
    # under --fail-on warned, warn is not enough: the strictest mode that passes is audit
    (strict,) = plan_for([INSTALLS], fail_on="warned").steps
    assert strict.fix is not None and strict.fix.mode is Mode.AUDIT and strict.fix.verdict == "audited"


def test_a_steered_daemon_set_passes_by_default_and_the_plan_says_what_steering_costs() -> None:
    (step,) = plan_for([AGENT]).steps
    assert not step.fails and step.fix is None
    assert (
        step.steering
        == "will not run on pool flatcar (Flatcar Container Linux, 2 nodes); covers 2 of 4 nodes"
    )
    assert step.keeps_every_pool is not None and step.keeps_every_pool.kind is FixKind.READ_ONLY
    kept = judged(dict(step.keeps_every_pool.fixed_object or {}))
    assert kept.verdict == "allowed" and kept.coverage() == {"daemonSet": "default/agent", "nodes": 4, "nodesAfter": 4,
                                                             "losesPools": []}  # fmt: skip


def test_fail_on_steered_makes_the_steered_daemon_set_fail_and_gives_its_fixes() -> None:
    (step,) = plan_for([AGENT], fail_on="steered").steps
    assert step.fails and step.fix is not None and step.fix.kind is FixKind.READ_ONLY
    assert step.config_fix is not None and step.config_fix.host_paths == (HostPathRule("/usr/local/bin"),)
    assert judged(AGENT, Config(allowed_host_paths=step.config_fix.host_paths)).verdict == "allowed"


def test_allowing_a_whole_top_level_tree_is_never_the_config_fix() -> None:
    (step,) = plan_for([ROOT_AGENT], fail_on="steered").steps
    assert step.config_fix is not None and step.config_fix.kind is FixKind.EXEMPTION


def test_fail_on_degraded_needs_mode_off_for_host_network() -> None:
    cni = named(tweak(set_field("hostNetwork", True), ON_FLATCAR), "cni")
    assert judged(cni).verdict == "degraded"
    assert plan_for([cni]).steps == ()
    (step,) = plan_for([cni], fail_on="degraded").steps
    assert step.fix is not None and step.fix.mode is Mode.OFF  # warn and audit still say "degraded"
    assert judged(cni, labels={NAMESPACE_MODE_LABEL: "audit"}).verdict == "degraded"


def test_fail_on_never_fails_nothing() -> None:
    plan = plan_for([WRITES_USR, INSTALLS, AGENT], fail_on="never")
    assert plan.failing == () and [s.row.name for s in plan.steps] == ["agent"]
    assert not fails("denied", "never")


@pytest.mark.parametrize("fail_on", ["denied", "steered", "warned"])
def test_the_config_snippet_makes_the_same_input_pass(fail_on: str) -> None:
    objects = [WRITES_USR, INSTALLS, AGENT, ROOT_AGENT]
    user = {"mode": "enforce", "allowedHostPaths": [{"pathPrefix": "/var/log", "readOnly": True}],
            "exemptions": {"groups": ["sre"]}}  # fmt: skip
    plan = plan_for(objects, fail_on=fail_on, config=Config.from_dict(user))
    assert plan.failing
    snippet = config_snippet(user, plan)
    assert snippet["apiVersion"] == "config.immutable-os.io/v1alpha1" and snippet["mode"] == "enforce"
    assert snippet["allowedHostPaths"][0] == {"pathPrefix": "/var/log", "readOnly": True}
    assert snippet["exemptions"]["groups"] == ["sre"] and snippet["exemptions"]["namespaces"] == ["default"]
    fixed = Config.from_dict(snippet)
    assert not [o["metadata"]["name"] for o in objects if fails(judged(o, fixed).verdict, fail_on)]
    assert user == {"mode": "enforce", "allowedHostPaths": [{"pathPrefix": "/var/log", "readOnly": True}],
                    "exemptions": {"groups": ["sre"]}}  # unchanged  # fmt: skip


def test_one_writable_entry_covers_a_read_only_one_for_the_same_path() -> None:
    reader = named(tweak(host_path("/usr/lib/x", read_only=True), set_field("volumes", [
        {"name": "host", "hostPath": {"path": "/usr/lib/x", "type": "DirectoryOrCreate"}}]), ON_FLATCAR), "creates")  # fmt: skip
    assert judged(reader).verdict == "denied"
    plan = plan_for([reader, WRITES_USR])
    rules = {(f.host_paths, s.row.name) for s, f in plan.config_fixes()}
    assert rules == {((HostPathRule("/usr/lib/x", read_only=True),), "creates"),
                     ((HostPathRule("/usr/lib/x", read_only=False),), "writes-usr")}  # fmt: skip
    assert config_snippet(None, plan)["allowedHostPaths"] == [{"pathPrefix": "/usr/lib/x", "readOnly": False}]


def test_read_only_changes_every_mount_of_the_volume_and_stops_creating_it() -> None:
    pod = tweak(host_path("/opt/x", name="v", container="initContainers"), host_path("/opt/x", name="v"),
                set_field("volumes", [{"name": "v", "hostPath": {"path": "/opt/x", "type": "DirectoryOrCreate"}},
                                      {"name": "other", "hostPath": {"path": "/opt/y"}}]))  # fmt: skip
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "other", "mountPath": "/y"})
    before = copy.deepcopy(pod)
    fixed = read_only(wrap(pod, "DaemonSet"), "DaemonSet", ["v"])
    spec = fixed["spec"]["template"]["spec"]
    assert (
        spec["volumes"][0]["hostPath"]["type"] == "Directory" and "type" not in spec["volumes"][1]["hostPath"]
    )
    mounts = [m for c in (*spec["initContainers"], *spec["containers"]) for m in c["volumeMounts"]]
    assert [(m["name"], m.get("readOnly")) for m in mounts] == [("v", True), ("v", True), ("other", None)]
    assert pod == before


def test_an_entry_an_earlier_one_already_allows_is_left_out() -> None:
    wide = named(tweak(host_path("/usr/local"), ON_FLATCAR), "wide")
    narrow = named(tweak(host_path("/usr/local/bin"), ON_FLATCAR), "narrow")
    plan = plan_for([wide, narrow])
    assert len(plan.config_fixes()) == 2
    assert config_snippet(None, plan)["allowedHostPaths"] == [{"pathPrefix": "/usr/local", "readOnly": False}]
    assert config_snippet({"allowedHostPaths": [{"pathPrefix": "/usr", "readOnly": True}]}, plan)["allowedHostPaths"] == [
        {"pathPrefix": "/usr", "readOnly": True}, {"pathPrefix": "/usr/local", "readOnly": False}]  # fmt: skip

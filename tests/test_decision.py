"""The decision: what breaks, degrades or works on each pool decides; only enforce changes an object.

Each case tweaks one minimal pod. The cluster is `mixed_inventory` (general Ubuntu + Flatcar) unless a
case needs the AKS-shaped one (system, azlinux, acl, osguard, flatcar) or another OS.
"""

from __future__ import annotations

import copy
import gc
import json
import weakref
from dataclasses import replace
from typing import Any
from unittest.mock import ANY

import jsonpatch
import pytest

from tests.builders import (
    OS_SKU,
    aks_inventory,
    aks_pool,
    host_path,
    minimal_pod,
    mixed_inventory,
    request_for,
    required_terms,
    set_field,
    tweak,
    wrap,
)
from webhook.core.admission import Decision, Endpoint, Outcome, Verdict, answer, decide, respond
from webhook.core.config import Config, Mode
from webhook.core.mutation import SteeringPlan
from webhook.core.placement import Inventory, Node

ON_FLATCAR = set_field("nodeSelector", {OS_SKU: "Flatcar"})
ON_UBUNTU = set_field("nodeSelector", {OS_SKU: "Ubuntu"})
WRITES_USR = host_path("/usr/local/bin")
READS_USR = host_path("/usr/local/bin", read_only=True)


def judge(endpoint: Endpoint, obj: dict[str, Any], config: Config | None = None,
          labels: dict[str, str] | None = None, inventory: Inventory | None = None, **request: Any) -> Verdict:  # fmt: skip
    return answer(request_for(obj, **request), endpoint=endpoint, config=config or Config(),
                  inventory=inventory or mixed_inventory(), namespace_labels=labels or {})  # fmt: skip


def validate(obj: dict[str, Any], config: Config | None = None, **kw: Any) -> Verdict:
    return judge(Endpoint.VALIDATE, obj, config, **kw)


def mutate(obj: dict[str, Any], config: Config | None = None, **kw: Any) -> Verdict:
    return judge(Endpoint.MUTATE, obj, config, **kw)


def both(obj: dict[str, Any], config: Config | None = None, inventory: Inventory | None = None,
         labels: dict[str, str] | None = None) -> Decision:  # fmt: skip
    return decide(request_for(obj), config=config or Config(), inventory=inventory or mixed_inventory(),
                  namespace_labels=labels or {})  # fmt: skip


def patch_of(verdict: Verdict) -> list[dict[str, Any]]:
    response = respond("u", verdict)["response"]
    return json.loads(__import__("base64").b64decode(response["patch"])) if "patch" in response else []


# --- what works, degrades, breaks --------------------------------------------------------------------


def test_clean_pod_is_untouched_on_any_pool() -> None:
    for pod in (tweak(), tweak(ON_FLATCAR), tweak(ON_UBUNTU)):
        for verdict in (validate(pod), mutate(pod)):
            assert verdict.outcome is Outcome.CLEAN
            assert respond("u", verdict)["response"] == {"uid": "u", "allowed": True}


@pytest.mark.parametrize("pod", [tweak(host_path("/var/log")), tweak(READS_USR), tweak(host_path("/", read_only=True)),
                                 tweak(host_path("/opt/cni/bin"), ON_FLATCAR), tweak(host_path("/etc/cni/net.d"))],
                         ids=["var-log", "reads-usr", "reads-root", "cni-bin-on-flatcar", "cni-conf"])  # fmt: skip
def test_host_access_that_works_on_flatcar_is_admitted_untouched(pod: dict[str, Any]) -> None:
    decision = both(pod)
    assert decision.mutated.outcome is Outcome.UNCHANGED and decision.mutated.patch == ()
    assert decision.validated.outcome is Outcome.WORKS and decision.allowed and not decision.warnings
    assert decision.validated.audit["decision"] == "works"
    assert decision.validated.audit["findings"] == "host-path:spec.volumes[0].hostPath.path"


def test_writing_usr_is_steered_off_exactly_the_pools_it_breaks_on() -> None:
    decision = both(tweak(WRITES_USR), inventory=aks_inventory())
    assert decision.mutated.outcome is Outcome.STEERED and decision.allowed
    assert decision.validated.outcome is Outcome.WORKS
    assert [p.name for p in decision.validated.assessment.pools] == ["azlinux", "system"]  # type: ignore[union-attr]
    steered = jsonpatch.apply_patch(tweak(WRITES_USR), patch_of(decision.mutated))
    terms = steered["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [{"matchExpressions": [{
        "key": "kubernetes.azure.com/os-sku-requested", "operator": "NotIn",
        "values": ["AzureContainerLinux", "AzureLinuxOSGuard", "Flatcar"]}]}]  # fmt: skip
    assert steered["metadata"]["annotations"]["immutable-os.io/steered"] == (
        "Azure Container Linux,Azure Linux OS Guard,Flatcar Container Linux"
    )
    assert decision.warnings[0].startswith(
        "steered away from pool acl (Azure Container Linux, 3 nodes), pool flatcar"
    )
    assert (
        "writes /usr/local/bin; /usr is read-only (dm-verity) on Azure Container Linux"
        in decision.warnings[1]
    )


def test_a_pod_that_breaks_only_some_immutable_oses_keeps_the_others() -> None:
    # /etc is read-only on Talos, writable on Flatcar, tmpfs on Bottlerocket (writes lost: degrades).
    nodes = [*aks_pool("general", "Ubuntu"), *aks_pool("flatcar", "Flatcar"),
             *(Node(f"t{i}", {"kubernetes.io/hostname": f"t{i}", "agentpool": "talos"}, (), "Talos (v1.11.2)") for i in range(2)),
             *(Node(f"b{i}", {"kubernetes.io/hostname": f"b{i}", "agentpool": "br", "immutable-os.io/profile": "bottlerocket"},
                    (), "Bottlerocket OS 1.50.0 (aws-k8s-1.34)") for i in range(2))]  # fmt: skip
    inventory = Inventory.build(nodes, Config())
    decision = both(tweak(host_path("/etc/myagent")), inventory=inventory)
    assessment = decision.mutated.assessment
    assert assessment is not None
    assert {p.name: p.effect.value for p in assessment.pools} == {
        "general": "works", "flatcar": "works", "talos": "breaks", "br": "degrades"}  # fmt: skip
    assert decision.mutated.outcome is Outcome.STEERED
    assert decision.validated.outcome is Outcome.DEGRADED and decision.allowed
    after = decision.validated.assessment
    assert after is not None and {p.name for p in after.pools} == {"general", "flatcar", "br"}
    assert any("/etc is volatile (tmpfs, rebuilt at boot) on Bottlerocket" in w for w in decision.warnings)


def test_degrades_warns_and_never_steers_or_denies() -> None:
    pod = tweak(set_field("hostNetwork", True), ON_FLATCAR)
    for mode in Mode.ENFORCE, Mode.WARN:
        decision = both(pod, Config(mode=mode))
        assert decision.mutated.patch == () and decision.allowed
        assert decision.validated.outcome is Outcome.DEGRADED
        assert decision.warnings[0] == "degrades on pool flatcar (Flatcar Container Linux, 2 nodes)"
        assert "host network namespace of Flatcar Container Linux is locked down" in decision.warnings[1]
    audited = both(pod, Config(mode=Mode.AUDIT))
    assert audited.allowed and not audited.warnings
    assert audited.validated.audit["degrades-on"] == "immutable:flatcar"


def test_enforce_denies_a_pod_that_only_lands_where_it_breaks() -> None:
    verdict = validate(tweak(WRITES_USR, ON_FLATCAR))
    assert not verdict.allowed and verdict.outcome is Outcome.DENIED
    assert verdict.message == (
        "Pod default/app breaks on every pool it can land on: pool flatcar (Flatcar Container Linux, 2 nodes). "
        "host-path spec.volumes[0].hostPath.path: writes /usr/local/bin; /usr is read-only (the /usr partition) "
        "on Flatcar Container Linux. Fix: mount it read-only, or write only where the OS allows it and runs what "
        "is written (docs/profiles.md); or schedule it on a general-purpose pool (nodeSelector "
        "kubernetes.azure.com/os-sku: Ubuntu) or ask for an exemption."
    )
    response = respond("uid-9", verdict)["response"]
    assert response["status"]["code"] == 403 and "warnings" not in response
    assert response["auditAnnotations"]["breaks-on"] == "immutable:flatcar"


def test_the_suggested_general_selector_never_matches_an_immutable_node() -> None:
    # os-sku=AzureLinux is carried by general Azure Linux and by OS Guard/ACL (family scenario): not it.
    for scenario in ("name", "family", "osimage"):
        pod = tweak(WRITES_USR, set_field("nodeSelector", {"agentpool": "acl"}))
        verdict = validate(pod, inventory=aks_inventory(scenario))
        assert "nodeSelector kubernetes.azure.com/os-sku: Ubuntu" in verdict.message, scenario


# --- modes: only enforce changes anything ------------------------------------------------------------


@pytest.mark.parametrize("mode", [Mode.WARN, Mode.AUDIT])
def test_warn_and_audit_never_change_an_object(mode: Mode) -> None:
    decision = both(tweak(WRITES_USR), Config(mode=mode))
    assert decision.mutated.patch == () and decision.allowed
    assert "patch" not in respond("u", decision.mutated)["response"]
    if mode is Mode.WARN:
        assert decision.validated.outcome is Outcome.WARNED
        assert (
            decision.warnings[0]
            == "would steer away from pool flatcar (Flatcar Container Linux, 2 nodes) in enforce mode"
        )
        assert decision.warnings[1].startswith(
            "host-path spec.volumes[0].hostPath.path: writes /usr/local/bin"
        )
        assert decision.validated.audit["would"] == "steer"
    else:
        assert decision.validated.outcome is Outcome.AUDITED and not decision.warnings
        assert decision.validated.audit == {
            "decision": "audited", "mode": "audit", "findings": "host-path:spec.volumes[0].hostPath.path",
            "lands-on": "immutable:flatcar,general:general", "breaks-on": "immutable:flatcar", "would": "steer"}  # fmt: skip


def test_warn_mode_says_what_enforce_would_deny_without_suggesting_warn() -> None:
    verdict = validate(tweak(WRITES_USR, ON_FLATCAR), Config(mode=Mode.WARN))
    assert verdict.allowed and verdict.outcome is Outcome.WARNED and verdict.audit["would"] == "deny"
    assert verdict.warnings[0].startswith(
        "would be denied in enforce mode: breaks on every pool it can land on"
    )
    assert not any("warn" in w.split(":", 1)[-1] for w in verdict.warnings[1:])
    assert not any("exemption" in w for w in verdict.warnings)


def test_off_mode_does_nothing() -> None:
    verdict = validate(tweak(WRITES_USR, ON_FLATCAR), Config(mode=Mode.OFF))
    assert verdict.outcome is Outcome.OFF and verdict.allowed and not verdict.audit


@pytest.mark.parametrize(
    ("label", "outcome"),
    [("warn", Outcome.WARNED), ("audit", Outcome.AUDITED), ("off", Outcome.OFF), ("enforce", Outcome.DENIED)],
)
def test_namespace_label_overrides_the_mode(label: str, outcome: Outcome) -> None:
    verdict = validate(
        tweak(WRITES_USR, ON_FLATCAR), Config(mode=Mode.AUDIT), labels={"immutable-os.io/mode": label}
    )
    assert verdict.outcome is outcome


def test_invalid_namespace_label_fails_safe_to_enforce_and_says_so() -> None:
    labels = {"immutable-os.io/mode": "strict"}
    assert (
        validate(tweak(WRITES_USR, ON_FLATCAR), Config(mode=Mode.WARN), labels=labels).outcome
        is Outcome.DENIED
    )
    works = validate(tweak(host_path("/var/log")), Config(mode=Mode.WARN), labels=labels)
    assert works.outcome is Outcome.WORKS
    assert "namespace label immutable-os.io/mode=strict is invalid" in works.warnings[0]


def test_warning_severity_caps_a_check_at_degrades() -> None:
    config = Config.from_dict({"checks": {"host-path": {"severity": "warning"}}})
    decision = both(tweak(WRITES_USR), config)
    assert decision.mutated.patch == () and decision.validated.outcome is Outcome.DEGRADED
    assert "(check severity: warning)" in decision.warnings[1]
    assert validate(tweak(WRITES_USR, ON_FLATCAR), config).allowed


@pytest.mark.parametrize(
    ("exemptions", "request_args", "reason"),
    [({"namespaces": ["tools"]}, {"namespace": "tools"}, "namespace"), ({"usernames": ["bob"]}, {"username": "bob"}, "user"),
     ({"groups": ["sre"]}, {"groups": ("system:authenticated", "sre")}, "group")],
    ids=["namespace", "user", "group"],
)  # fmt: skip
def test_exemptions(exemptions: dict[str, Any], request_args: dict[str, Any], reason: str) -> None:
    config = Config.from_dict({"exemptions": exemptions})
    pod = tweak(WRITES_USR, ON_FLATCAR)
    verdict = validate(pod, config, **request_args)
    assert verdict.outcome is Outcome.EXEMPT and verdict.allowed and verdict.audit == {"exempt": reason}
    assert mutate(pod, config, **request_args).audit == {}
    assert validate(pod, config).outcome is Outcome.DENIED


def test_runtime_class_exemption() -> None:
    config = Config.from_dict({"exemptions": {"runtimeClasses": ["kata"]}})
    assert (
        validate(tweak(WRITES_USR, ON_FLATCAR, set_field("runtimeClassName", "kata")), config).outcome
        is Outcome.EXEMPT
    )


# --- steering ----------------------------------------------------------------------------------------


def test_validate_denies_an_unsteered_pod_in_enforce() -> None:
    verdict = validate(tweak(WRITES_USR))
    assert verdict.outcome is Outcome.DENIED and "was not steered away" in verdict.message


def test_steering_disabled_judges_as_unsteerable() -> None:
    config = Config.from_dict({"steering": {"enabled": False}})
    assert mutate(tweak(WRITES_USR), config).patch == ()
    assert "cannot be steered away (steering is disabled)" in validate(tweak(WRITES_USR), config).message


def test_steering_that_would_leave_no_node_is_refused() -> None:
    config = Config.from_dict(
        {"steering": {"strategy": "nodeSelector", "nodeSelector": {"agentpool": "gpu"}}}
    )
    assert mutate(tweak(WRITES_USR), config).patch == ()
    assert "steering would leave no node it can land on" in validate(tweak(WRITES_USR), config).message


def test_node_selector_strategy_pins_steered_pods_to_the_named_pool() -> None:
    config = Config.from_dict(
        {"steering": {"strategy": "nodeSelector", "nodeSelector": {"agentpool": "general"}}}
    )
    decision = both(tweak(WRITES_USR), config)
    assert decision.mutated.outcome is Outcome.STEERED and decision.allowed
    assert {
        "op": "add",
        "path": "/spec/nodeSelector",
        "value": {"agentpool": "general"},
    } in decision.mutated.patch


def test_unlabelled_immutable_pool_cannot_be_steered_and_the_fix_says_label_it() -> None:
    bare = [
        Node(f"fc{i}", {"kubernetes.io/hostname": f"fc{i}"}, (), "Flatcar Container Linux 1")
        for i in range(2)
    ]
    inventory = Inventory.build([*aks_pool("general", "Ubuntu"), *bare], Config())
    assert mutate(tweak(WRITES_USR), inventory=inventory).patch == ()
    verdict = validate(tweak(WRITES_USR), inventory=inventory)
    assert verdict.outcome is Outcome.DENIED
    assert (
        "pool like-fc0 (Flatcar Container Linux) carries no node label that only pools it breaks on carry"
        in verdict.message
    )
    assert "label those nodes immutable-os.io/profile=<profile>" in verdict.message


def test_a_marked_pool_is_steered_with_the_marker() -> None:
    marked = [Node("k1", {"kubernetes.io/hostname": "k1", "immutable-os.io/profile": "flatcar"})]
    inventory = Inventory.build([Node("k0", {"kubernetes.io/hostname": "k0"}), *marked], Config())
    verdict = mutate(tweak(WRITES_USR), inventory=inventory)
    assert verdict.outcome is Outcome.STEERED
    terms = verdict.patch[0]["value"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "immutable-os.io/profile", "operator": "NotIn", "values": ["flatcar"]}
    ]


@pytest.mark.parametrize(("policy", "mutated", "validated"), [("steer", Outcome.STEERED, Outcome.WORKS),
                         ("deny", Outcome.UNCHANGED, Outcome.DENIED), ("warn", Outcome.UNCHANGED, Outcome.WARNED)])  # fmt: skip
def test_daemon_set_policy(policy: str, mutated: Outcome, validated: Outcome) -> None:
    agent = wrap(tweak(WRITES_USR, set_field("tolerations", [{"operator": "Exists"}])), "DaemonSet")
    agent["metadata"] = {"name": "agent", "namespace": "monitoring"}
    decision = both(agent, Config.from_dict({"steering": {"daemonSets": policy}}), inventory=aks_inventory())
    assert (decision.mutated.outcome, decision.validated.outcome) == (mutated, validated)
    coverage = "DaemonSet monitoring/agent will {} on pool acl (3 nodes), pool flatcar (2 nodes), pool osguard (2 nodes)"
    if policy == "steer":
        assert decision.warnings[2] == coverage.format("not run")
    elif policy == "warn":
        assert decision.warnings[0] == coverage.format("fail")
    else:
        assert "steering.daemonSets: deny" in decision.validated.message


def test_a_pod_owned_by_a_daemon_set_reports_lost_coverage() -> None:
    pod = tweak(WRITES_USR)
    pod["metadata"]["ownerReferences"] = [
        {"kind": "DaemonSet", "name": "agent", "controller": True, "uid": "1"}
    ]
    warnings = both(pod).warnings
    assert warnings[2] == "DaemonSet default/agent will not run on pool flatcar (2 nodes)"


def test_a_pod_for_a_pool_with_no_node_yet_is_judged_by_the_nodes_that_could_come() -> None:
    # A pool scaled to zero (autoscaler, node auto-provisioning) or one not created yet: judged by label
    # evidence, like a stale inventory, never admitted as "not judged".
    unknown_pool = tweak(WRITES_USR, set_field("nodeSelector", {"agentpool": "later"}))
    decision = both(unknown_pool)
    assert decision.mutated.outcome is Outcome.STEERED and decision.allowed
    assert any("matches none of the 4 known nodes" in w for w in decision.mutated.warnings)
    assert {"op": "add", "path": "/spec/affinity", "value": ANY} in patch_of(decision.mutated)
    # Unsteered (warn mode, or a pod that exists), it is not "not judged" either.
    assert validate(unknown_pool).outcome is not Outcome.NOWHERE

    acl_pool = tweak(
        WRITES_USR, set_field("nodeSelector", {"kubernetes.azure.com/os-sku": "AzureContainerLinux"})
    )
    denied = both(acl_pool)  # no ACL node in this cluster yet: it can only land on one
    assert not denied.allowed and "Azure Container Linux" in denied.validated.message

    unregistered = tweak(WRITES_USR, set_field("nodeName", "aks-acl-00000001"))
    assert validate(unregistered).outcome is not Outcome.NOWHERE


def test_a_spec_no_node_could_ever_match_is_allowed_with_a_warning() -> None:
    empty_term = tweak(WRITES_USR, required_terms({}))  # an empty term matches no node, known or to come
    verdict = validate(empty_term)
    assert verdict.outcome is Outcome.NOWHERE and verdict.allowed
    assert "matches no node of the 4 known" in verdict.warnings[0]


def test_kubectl_debug_node_pod_is_denied_unless_the_group_is_exempt() -> None:
    # The shape of `kubectl debug node/<node> --profile=sysadmin`: nodeName pinned, host namespaces, / at /host.
    debug = minimal_pod("node-debugger-aks-flatcar-abcde")
    node = next(p for p in mixed_inventory().pools if p.name == "flatcar").members[0]
    debug["spec"] = {
        "nodeName": node, "hostPID": True, "hostIPC": True, "hostNetwork": True, "restartPolicy": "Never",
        "containers": [{"name": "debugger", "image": "busybox", "stdin": True, "tty": True,
                        "volumeMounts": [{"name": "host-root", "mountPath": "/host"}]}],
        "volumes": [{"name": "host-root", "hostPath": {"path": "/"}}],
        "tolerations": [{"operator": "Exists"}],
    }  # fmt: skip
    denied = validate(debug)
    assert denied.outcome is Outcome.DENIED and "pin it to a general-purpose node" in denied.message
    assert "mounts / writable, which holds /usr" in denied.message
    config = Config.from_dict({"exemptions": {"groups": ["sre-breakglass"]}})
    assert validate(debug, config, groups=("sre-breakglass",)).outcome is Outcome.EXEMPT


def test_nsenter_into_the_host_to_install_packages_breaks() -> None:
    setup = tweak(set_field("hostPID", True))
    setup["spec"]["containers"][0]["command"] = [
        "/bin/sh",
        "-c",
        "nsenter -t 1 -m -u -i -n -- apt-get install -y nfs-common",
    ]
    decision = both(setup)
    assert decision.mutated.outcome is Outcome.STEERED
    assert "Flatcar Container Linux has no package manager and its /usr is read-only" in decision.warnings[1]
    reboot = tweak(set_field("hostPID", True))
    reboot["spec"]["containers"][0]["command"] = [
        "/usr/bin/nsenter",
        "-m/proc/1/ns/mnt",
        "--",
        "/bin/systemctl",
        "reboot",
    ]
    assert both(reboot).validated.outcome is Outcome.DEGRADED


# --- what is judged ------------------------------------------------------------------------------------


def test_operations_and_subresources_that_are_not_judged() -> None:
    pod = tweak(WRITES_USR, ON_FLATCAR)
    assert validate(pod, operation="DELETE").outcome is Outcome.SKIPPED
    assert validate(pod, operation="UPDATE", sub_resource="status").outcome is Outcome.SKIPPED
    assert validate(wrap(pod, "Deployment"), operation="UPDATE").outcome is Outcome.DENIED
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}}
    assert validate(config_map).outcome is Outcome.SKIPPED


def test_a_pod_update_is_judged_when_it_changes_where_the_pod_can_land() -> None:
    # The gated-pod bypass: created where it works, then retargeted while gated.
    taint = (
        __import__("webhook.core.placement.selectors", fromlist=["Taint"]).Taint(
            "dedicated", "fc", "NoSchedule"
        ),
    )
    inventory = Inventory.build(
        [*aks_pool("general", "Ubuntu"), *aks_pool("flatcar", "Flatcar", taints=taint)], Config()
    )
    gated = tweak(WRITES_USR, set_field("schedulingGates", [{"name": "example.com/wait"}]))
    assert validate(gated, inventory=inventory).outcome is Outcome.WORKS
    retargeted = tweak(
        WRITES_USR, ON_FLATCAR, set_field("tolerations", [{"key": "dedicated", "operator": "Exists"}])
    )
    request = replace(request_for(retargeted, operation="UPDATE"), old_object=gated)
    verdict = answer(
        request, endpoint=Endpoint.VALIDATE, config=Config(), inventory=inventory, namespace_labels={}
    )
    assert verdict.outcome is Outcome.DENIED
    assert (
        answer(
            request, endpoint=Endpoint.MUTATE, config=Config(), inventory=inventory, namespace_labels={}
        ).patch
        == ()
    )
    relabelled = copy.deepcopy(gated)
    relabelled["metadata"]["labels"] = {"x": "y"}
    same_place = replace(request_for(relabelled, operation="UPDATE"), old_object=gated)
    assert answer(same_place, endpoint=Endpoint.VALIDATE, config=Config(), inventory=inventory,
                  namespace_labels={}).outcome is Outcome.SKIPPED  # fmt: skip


def test_unknown_toleration_operators_are_judged_conservatively() -> None:
    taint = (
        __import__("webhook.core.placement.selectors", fromlist=["Taint"]).Taint("gpu", "4", "NoSchedule"),
    )
    inventory = Inventory.build(
        [*aks_pool("general", "Ubuntu"), *aks_pool("flatcar", "Flatcar", taints=taint)], Config()
    )
    pod = tweak(
        WRITES_USR, ON_FLATCAR, set_field("tolerations", [{"key": "gpu", "operator": "Lt", "value": "8"}])
    )
    verdict = validate(pod, inventory=inventory)
    assert verdict.outcome is Outcome.DENIED, "a toleration we cannot read may tolerate: judged as if it does"


def test_workload_update_that_keeps_the_template_is_not_judged_again() -> None:
    rs = wrap(tweak(WRITES_USR, ON_FLATCAR), "ReplicaSet")
    scaled = {**rs, "spec": {**rs["spec"], "replicas": 0}}
    context: dict[str, Any] = {"config": Config(), "inventory": mixed_inventory(), "namespace_labels": {}}
    request = replace(request_for(scaled, operation="UPDATE"), old_object=rs)
    assert answer(request, endpoint=Endpoint.VALIDATE, **context).outcome is Outcome.SKIPPED
    fixed = wrap(tweak(ON_UBUNTU), "ReplicaSet")
    changed = replace(request_for(rs, operation="UPDATE"), old_object=fixed)
    assert answer(changed, endpoint=Endpoint.VALIDATE, **context).outcome is Outcome.DENIED


def test_ephemeral_container_is_judged_on_what_it_adds_where_the_pod_runs() -> None:
    node = next(p for p in mixed_inventory().pools if p.name == "flatcar").members[0]
    running = tweak(host_path("/usr/local", read_only=True), set_field("nodeName", node))
    harmless = copy.deepcopy(running)
    harmless["spec"]["ephemeralContainers"] = [{"name": "dbg", "image": "busybox"}]
    request = replace(
        request_for(harmless, operation="UPDATE", sub_resource="ephemeralcontainers"), old_object=running
    )
    context: dict[str, Any] = {"config": Config(), "inventory": mixed_inventory(), "namespace_labels": {}}
    assert answer(request, endpoint=Endpoint.VALIDATE, **context).outcome is Outcome.CLEAN
    writer = copy.deepcopy(running)
    writer["spec"]["ephemeralContainers"] = [{"name": "dbg", "image": "busybox",
                                              "volumeMounts": [{"name": "host", "mountPath": "/d"}]}]  # fmt: skip
    verdict = answer(replace(request, object=writer), endpoint=Endpoint.VALIDATE, **context)
    assert verdict.outcome is Outcome.DENIED and "writable in dbg" not in verdict.message
    assert "writes /usr/local" in verdict.message
    assert answer(replace(request, object=writer), endpoint=Endpoint.MUTATE, **context).patch == ()


def test_evidence_only_placement_steers_by_labels_and_says_so() -> None:
    decision = decide(request_for(tweak(WRITES_USR)), config=Config(), inventory=None, namespace_labels={})
    assert decision.mutated.outcome is Outcome.STEERED and decision.allowed
    assert any("no current node inventory" in w for w in decision.warnings)
    steered = jsonpatch.apply_patch(tweak(WRITES_USR), patch_of(decision.mutated))
    terms = steered["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    keys = {e["key"] for e in terms["nodeSelectorTerms"][0]["matchExpressions"]}
    assert "immutable-os.io/profile" in keys and "kubernetes.azure.com/os-sku-requested" in keys


def test_daemon_set_warn_admits_the_pods_its_controller_pins_to_each_node() -> None:
    node = next(p for p in mixed_inventory().pools if p.name == "flatcar").members[0]
    pinned = tweak(WRITES_USR, set_field("affinity", {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}))  # fmt: skip
    pinned["metadata"]["ownerReferences"] = [
        {"kind": "DaemonSet", "name": "agent", "controller": True, "uid": "1"}
    ]
    assert validate(pinned).outcome is Outcome.DENIED
    warned = validate(pinned, Config.from_dict({"steering": {"daemonSets": "warn"}}))
    assert warned.allowed and warned.outcome is Outcome.WARNED
    assert warned.warnings[0] == "DaemonSet default/agent will fail on pool flatcar (2 nodes)"


def test_unquoted_off_in_yaml_is_read_as_off() -> None:
    config = Config.from_dict(
        {"mode": False, "profiles": {"azure-linux-osguard": {"hostContract": {"codeIntegrity": False}}}}
    )
    assert config.mode is Mode.OFF
    profile = config.profile("azure-linux-osguard")
    assert profile is not None and profile.contract.code_integrity.value == "off"


# --- answers remembered across reviews ----------------------------------------------------------------


def with_read_only(value: Any) -> dict[str, Any]:
    pod = tweak(WRITES_USR)
    pod["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] = value
    return pod


def test_remembered_answers_follow_every_field_they_read() -> None:
    """Findings and placements are remembered across reviews by the pod spec fields they read. Values
    that JSON writes alike (1e400 read as infinity, and null; 1 and true) must not share an answer: the
    first judged must not decide for the second, in either order."""
    config, inventory = Config(), mixed_inventory()
    for first, second in ((float("inf"), None), (None, float("inf")), (1, True), (True, 1), (0, False)):
        expected = validate(with_read_only(second), Config(), inventory=mixed_inventory()).outcome
        validate(with_read_only(first), config, inventory=inventory)
        assert validate(with_read_only(second), config, inventory=inventory).outcome is expected
    assert validate(with_read_only(None), config, inventory=inventory).outcome is Outcome.DENIED
    # A readOnly that is no boolean is no read: the pod cannot be judged (tests/test_server.py, MALFORMED).
    assert validate(with_read_only(float("inf")), config, inventory=inventory).outcome is Outcome.INVALID


def test_a_remembered_steering_plan_fits_each_pod_it_is_given_to() -> None:
    """The judgement (placement, effects, steering plan) is remembered for the pods of one workload. The
    patch must still fit each pod's own metadata, a pod that exists must still not be moved, and the
    steered object must be the pod under review, whichever pod came first."""
    annotated = tweak(WRITES_USR)
    annotated["metadata"]["annotations"] = {"team": "a"}
    bare = tweak(WRITES_USR)
    bare["metadata"].pop("annotations", None)
    bare["metadata"]["name"] = "other"
    twin = copy.deepcopy(annotated)
    twin["metadata"]["name"] = "twin"
    # As the service decodes them: equal specs then make equal memo keys (decoding shares no strings).
    annotated, bare, twin = (json.loads(json.dumps(pod)) for pod in (annotated, bare, twin))
    for order in ((annotated, bare, twin), (bare, annotated, twin)):
        config, inventory = Config(), mixed_inventory()
        for pod in order:
            request = request_for(pod)
            verdict = answer(request, endpoint=Endpoint.MUTATE, config=config, inventory=inventory,
                             namespace_labels={})  # fmt: skip
            steered = jsonpatch.apply_patch(pod, patch_of(verdict))  # fails if the patch does not fit
            assert (
                steered["metadata"]["annotations"].items() >= pod["metadata"].get("annotations", {}).items()
            )
            assert verdict.assessment is not None and isinstance(verdict.assessment.plan, SteeringPlan)
            assert verdict.assessment.plan.steered_object == steered
        update = replace(
            request_for(tweak(WRITES_USR), operation="UPDATE"), old_object=tweak(WRITES_USR, ON_UBUNTU)
        )
        verdict = answer(
            update, endpoint=Endpoint.VALIDATE, config=config, inventory=inventory, namespace_labels={}
        )
        assert verdict.outcome is Outcome.DENIED and "cannot be moved" in verdict.message


def test_a_remembered_judgement_keeps_no_pod_alive() -> None:
    """The memos outlive every review: what they keep must not hold a request's object (its annotations
    alone may be megabytes), though the steering plan was made from one."""

    class Tracked(dict[str, Any]):  # a dict that can be weakly referenced
        pass

    config, inventory = Config(), mixed_inventory()
    pod = Tracked(json.loads(json.dumps(tweak(WRITES_USR))))
    pod["metadata"]["annotations"] = {"big": "x" * 100_000}
    gone = weakref.ref(pod)
    verdict = answer(request_for(pod), endpoint=Endpoint.MUTATE, config=config, inventory=inventory,
                     namespace_labels={})  # fmt: skip
    assert verdict.outcome is Outcome.STEERED
    assert verdict.assessment is not None and isinstance(verdict.assessment.plan, SteeringPlan)
    assert verdict.assessment.plan.steered_object["metadata"]["annotations"]["big"] == "x" * 100_000
    del pod, verdict
    gc.collect()
    assert gone() is None


def test_a_pod_placed_again_with_other_constraints_is_placed_anew() -> None:
    config, inventory = Config(), mixed_inventory()
    assert validate(tweak(WRITES_USR), config, inventory=inventory).outcome is Outcome.DENIED
    assert validate(tweak(WRITES_USR, ON_UBUNTU), config, inventory=inventory).outcome is Outcome.WORKS
    assert validate(tweak(WRITES_USR, ON_FLATCAR), config, inventory=inventory).outcome is Outcome.DENIED
